"""make_venv installs exactly the lock: no resolver, every wheel hash-checked, the closure checked.

Each test builds a real venv (Debian's python3.11 and its bundled pip) from a small lock fixture
whose wheels are served from a local folder, with pip's own configuration and the index switched
off, so the folder is all pip can see.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3.11"
MAKE_VENV = Path(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"], "tools/bazel/python/make_venv.py")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(
    folder: Path, name: str, version: str, requires: tuple[str, ...] = (), extras: dict[str, str] | None = None
) -> Path:
    """Write a minimal, valid pure-Python wheel; returns its path."""
    dist = f"{name}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    for extra, requirement in (extras or {}).items():
        metadata += [f"Provides-Extra: {extra}", f'Requires-Dist: {requirement} ; extra == "{extra}"']
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: causeway-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def lock_line(path: Path, name: str, version: str) -> str:
    return f"{name}=={version} \\\n    --hash=sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}\n"


@pytest.fixture()
def wheels(tmp_path: Path) -> dict[str, Path]:
    """cwfix_beta needs cwfix_alpha[fast] (an extra, like kserve's uvicorn[standard]); the folder
    also holds a newer cwfix_alpha than the one the lock pins."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    return {
        "alpha-1.0": wheel(folder, "cwfix_alpha", "1.0", extras={"fast": "cwfix_gamma"}),
        "alpha-1.1": wheel(folder, "cwfix_alpha", "1.1", extras={"fast": "cwfix_gamma"}),
        "beta-1.0": wheel(folder, "cwfix_beta", "1.0", requires=("cwfix_alpha[fast]>=1.0",)),
        "gamma-1.0": wheel(folder, "cwfix_gamma", "1.0"),
    }


def make_venv(tmp_path: Path, lock_text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "requirements_lock.txt"
    lock.write_text(lock_text)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,  # the machine's pip config (find-links, indexes) is not ours
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(folder),
    }
    return subprocess.run(
        [PYTHON, str(MAKE_VENV), "--lock", str(lock), "--python", PYTHON, "--root", str(tmp_path / "venvs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def installed(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin" / "python3"), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
        env={"PIP_CONFIG_FILE": os.devnull, "PATH": "/usr/bin:/bin"},
    ).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def test_installs_the_locked_version_when_a_newer_one_is_available(tmp_path, wheels):
    lock = (
        lock_line(wheels["alpha-1.0"], "cwfix_alpha", "1.0")
        + lock_line(wheels["beta-1.0"], "cwfix_beta", "1.0")
        + lock_line(wheels["gamma-1.0"], "cwfix_gamma", "1.0")
    )
    result = make_venv(tmp_path, lock, wheels["alpha-1.0"].parent)
    assert result.returncode == 0, result.stderr
    venv = Path(result.stdout.strip().splitlines()[-1])
    assert (venv / ".causeway-complete").read_text() == lock
    versions = installed(venv)
    assert versions["cwfix_alpha"] == "1.0", "the newer wheel in the folder must not win over the lock"
    assert versions["cwfix_beta"] == "1.0"
    assert versions["cwfix_gamma"] == "1.0"

    # A second call reuses the complete venv instead of rebuilding it.
    marker = venv / ".causeway-complete"
    before = marker.stat().st_mtime_ns
    again = make_venv(tmp_path, lock, wheels["alpha-1.0"].parent)
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip().splitlines()[-1]) == venv
    assert marker.stat().st_mtime_ns == before


def test_a_lock_missing_a_dependency_fails_naming_it(tmp_path, wheels):
    # cwfix_gamma is needed (through cwfix_beta -> cwfix_alpha[fast]) but not locked.
    lock = lock_line(wheels["alpha-1.0"], "cwfix_alpha", "1.0") + lock_line(wheels["beta-1.0"], "cwfix_beta", "1.0")
    result = make_venv(tmp_path, lock, wheels["alpha-1.0"].parent)
    assert result.returncode == 1
    assert "is not closed" in result.stderr
    # pip check alone misses this (it ignores the extras one package asks of another).
    assert "cwfix-alpha[fast] 1.0 requires cwfix-gamma, which the lock does not pin" in result.stderr
    assert result.stdout.strip() == "", "no venv path may be printed for a failed build"
    # Nothing half-built is left that a later call could take for a usable venv.
    assert not any((tmp_path / "venvs").glob("*/.causeway-complete"))


def test_a_wheel_that_does_not_match_its_locked_hash_fails(tmp_path, wheels):
    lock = (
        lock_line(wheels["alpha-1.0"], "cwfix_alpha", "1.0")
        + lock_line(wheels["beta-1.0"], "cwfix_beta", "1.0")
        + lock_line(wheels["gamma-1.0"], "cwfix_gamma", "1.0")
    )
    # Same name and version, other content: what a tampered mirror would serve.
    wheel(wheels["gamma-1.0"].parent, "cwfix_gamma", "1.0", requires=("cwfix_alpha",))
    result = make_venv(tmp_path, lock, wheels["alpha-1.0"].parent)
    assert result.returncode == 1
    assert "could not install" in result.stderr
    assert "do not match the hashes" in result.stderr.lower()
    assert not any((tmp_path / "venvs").glob("*/.causeway-complete"))


def test_a_requirement_without_a_hash_fails(tmp_path, wheels):
    lock = "cwfix_alpha==1.0\n"
    result = make_venv(tmp_path, lock, wheels["alpha-1.0"].parent)
    assert result.returncode == 1
    assert "hashes are required" in result.stderr.lower()
