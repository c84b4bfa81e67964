"""Create (once) the platform venv for a lock file; print its path on the last line of stdout.

The lock decides, nothing else: pip installs its lines with `--no-deps --require-hashes
--only-binary=:all:`, so no resolver runs and no version can come from the index that the lock does
not pin (pip's resolver would otherwise still resolve extras such as `uvicorn[standard]` against the
index). Then the closure is checked twice: `pip check`, and our own walk that also follows the extras
a locked package asks of another (`pip check` does not: a lock missing uvicorn[standard]'s packages
passes it). A dependency the lock lacks fails the build by name.

The venv directory is named by sha256(lock bytes + interpreter version + this script), built in
place under a file lock, and marked complete only after pip and the check succeed, so concurrent or
interrupted builds never leave a half-built venv that looks usable.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = ".causeway-complete"


class LockError(Exception):
    """The lock cannot be installed as it is (a hash, a pin or a missing dependency)."""


def venv_key(lock: Path, python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    # This script is part of the key: a venv built by an older recipe is never reused.
    recipe = Path(__file__).read_bytes()
    return hashlib.sha256(lock.read_bytes() + version.encode() + recipe).hexdigest()[:24]


def _make_readable(dest: Path) -> None:
    """World-readable: the sandboxed validator worker runs as another unprivileged user."""
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))


def build(lock: Path, python: str, dest: Path) -> None:
    """Install exactly `lock` into a new venv at `dest`; raise LockError naming what is wrong."""
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run([python, "-m", "venv", str(dest)], check=True)
    pip = [str(dest / "bin" / "python3"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    install = subprocess.run(
        [
            *pip,
            "install",
            "--quiet",
            "--progress-bar=off",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            str(lock),
        ],
        stdout=sys.stderr,
        stderr=subprocess.PIPE,
        text=True,
    )
    if install.returncode != 0:
        raise LockError(f"pip could not install {lock} as locked:\n{install.stderr.strip()}")
    python3 = str(dest / "bin" / "python3")
    checks = [[*pip, "check"], [python3, "-I", str(Path(__file__).resolve()), "--check-closure"]]
    problems = []
    for command in checks:
        check = subprocess.run(command, capture_output=True, text=True)
        if check.returncode != 0:
            problems.append((check.stdout + check.stderr).strip())
    if problems:
        raise LockError(
            f"{lock} is not closed: a locked package needs something the lock does not pin.\n"
            + "\n".join(problems)
            + "\nAdd the missing package to third_party/python/requirements.in and re-lock (./dev lock)."
        )
    _make_readable(dest)
    (dest / MARKER).write_text(lock.read_text())


def closure_problems() -> list[str]:
    """Requirements of the installed distributions (extras they ask for included) that nothing
    installed satisfies. Runs inside the new venv, with the packaging library pip vendors."""
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    dists = {canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()

    def visit(owner: str, text: str, extra: str) -> None:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            return
        name = canonicalize_name(req.name)
        wants = name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "") + str(req.specifier)
        dist = dists.get(name)
        if dist is None:
            problems.append(f"{owner} requires {wants}, which the lock does not pin")
            return
        if not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{owner} requires {wants}, but the lock pins {name}=={dist.version}")
        for wanted in sorted(req.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            for sub in dist.requires or []:
                visit(f"{name}[{wanted}] {dist.version}", sub, wanted)

    for name, dist in sorted(dists.items()):
        for text in dist.requires or []:
            visit(f"{name} {dist.version}", text, "")
    return problems


def ensure(lock: Path, python: str, root: Path) -> Path:
    """The complete venv for `lock` under `root`, built first if needed (one builder at a time)."""
    root.mkdir(parents=True, exist_ok=True)
    # The sandbox user must be able to reach the venv (a fresh `mktemp -d` root is 0700).
    if root.stat().st_mode & 0o555 != 0o555:
        root.chmod(root.stat().st_mode | 0o555)
    key = venv_key(lock, python)
    dest = root / key
    with open(root / f".{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not (dest / MARKER).exists():
            print(f"building venv {dest} from {lock}", file=sys.stderr)
            try:
                build(lock, python, dest)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    return dest


def main() -> int:
    if sys.argv[1:] == ["--check-closure"]:
        problems = closure_problems()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    try:
        dest = ensure(args.lock, args.python, args.root)
    except LockError as err:
        print(f"make_venv: {err}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
