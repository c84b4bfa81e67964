"""The worker's runtime on the host: the staged worker code, default runtime binds, run directories.

The sandbox user cannot read the service's own files (Bazel runfiles under /root, an image's
/app owned by another user), so the worker package (`worker/inside`) is copied once per content
hash into `<work_dir>/runtime/<hash>/validator_worker`, readable by the sandbox group only, and
bound read-only at /opt/validator. The shared architecture registry (libs/architectures/registry.py,
the same code the runner serves with) is staged into that package as `architectures.py`. Inputs of
a run are staged the same way in a per-run directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import shutil
import sys
import sysconfig
from pathlib import Path

# Not resolve()d: under Bazel the runfiles tree (what was built) is what must be staged.
INSIDE = Path(__file__).parent / "inside"
PACKAGE = "validator_worker"
MOUNT = "/opt/validator"
SHARED_MODULES = {"architectures.py": "libs.architectures.registry"}  # staged name -> module (not imported here)


def worker_files() -> dict[str, Path]:
    """What the staged package holds: the worker's own modules and the shared ones, by file name."""
    files = {f.name: f for f in sorted(INSIDE.glob("*.py"))}
    for name, module in SHARED_MODULES.items():
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{module} is not available to stage into the validator's sandbox")
        files[name] = Path(spec.origin)
    return files


def default_python() -> str:
    """The interpreter the service runs on (in Bazel and the dev stack: the locked venv's)."""
    return sys.executable


def default_runtime_paths(python: str) -> tuple[str, ...]:
    """What the worker's interpreter needs: itself, its stdlib, the system libraries and the venv."""
    real = os.path.realpath(python)
    stdlib = sysconfig.get_path("stdlib")
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    paths = [real, stdlib]
    for candidate in (f"/usr/lib/{multiarch}" if multiarch else "", "/usr/lib64"):
        if candidate and os.path.isdir(candidate) and not os.path.islink(candidate):
            paths.append(candidate)
    if sys.prefix != sys.base_prefix:
        paths.append(sys.prefix)
    # Deduplicate while keeping order, and drop paths inside another bound path.
    out: list[str] = []
    for path in paths:
        if path not in out and not any(path.startswith(p.rstrip("/") + "/") for p in paths if p != path):
            out.append(path)
    return tuple(out)


def _secure(path: Path, gid: int, mode: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, gid)
    os.chmod(path, mode)


def make_private_dir(path: Path, gid: int) -> Path:
    """A directory the service owns and the sandbox group may only read (0750 root:<gid>)."""
    path.mkdir(parents=True, exist_ok=True)
    _secure(path, gid, 0o750)
    return path


def seal_file(path: Path, gid: int) -> None:
    """Make a staged input read-only for the service and the sandbox group (0440 root:<gid>)."""
    _secure(path, gid, 0o440)


def code_hash() -> str:
    digest = hashlib.sha256()
    for name, file in sorted(worker_files().items()):
        digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_worker_code(work_dir: Path, gid: int) -> Path:
    """Copy the worker package into the work dir (idempotent); returns the directory to bind."""
    runtime = make_private_dir(work_dir / "runtime", gid)
    target = runtime / code_hash()
    if (target / PACKAGE / "main.py").exists():
        return target
    staging = runtime / f".staging-{secrets.token_hex(6)}"
    package = make_private_dir(staging / PACKAGE, gid)
    _secure(staging, gid, 0o750)
    for name, file in sorted(worker_files().items()):
        dest = package / name
        dest.write_bytes(file.read_bytes())
        seal_file(dest, gid)
    try:
        staging.rename(target)
    except OSError:  # another process staged the same hash first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def new_run_dir(work_dir: Path, run_id: str, gid: int) -> Path:
    runs = make_private_dir(work_dir / "runs", gid)
    return make_private_dir(runs / f"{run_id}-{secrets.token_hex(8)}", gid)


def clean_runs(work_dir: Path) -> int:
    """Remove every run directory (at start: nothing can be running yet); returns how many."""
    runs = work_dir / "runs"
    if not runs.is_dir():
        return 0
    count = 0
    for entry in runs.iterdir():
        shutil.rmtree(entry, ignore_errors=True)
        count += 1
    return count


def boot_code(python_paths: tuple[str, ...] = ()) -> str:
    """The -c program that starts the worker (python -I ignores PYTHONPATH, so paths go here)."""
    paths = [MOUNT, *python_paths]
    return f"import sys\nsys.path[:0] = {paths!r}\nfrom {PACKAGE}.main import main\nsys.exit(main())\n"
