"""Create (once) the platform venv for a lock file; print its path on the last line of stdout.

The venv directory is named by sha256(lock bytes + interpreter version), built in place under a
file lock, and marked complete only after pip succeeds, so concurrent or interrupted builds never
leave a half-built venv that looks usable.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = ".causeway-complete"


def venv_key(lock: Path, python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    return hashlib.sha256(lock.read_bytes() + version.encode()).hexdigest()[:24]


def build(lock: Path, python: str, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run([python, "-m", "venv", str(dest)], check=True)
    pip = [str(dest / "bin" / "python3"), "-m", "pip"]
    subprocess.run(
        [
            *pip,
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--progress-bar=off",
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            str(lock),
        ],
        check=True,
        stdout=sys.stderr,
    )
    # World-readable: the sandboxed validator worker runs as an unprivileged user.
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))
    (dest / MARKER).write_text(lock.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()

    args.root.mkdir(parents=True, exist_ok=True)
    key = venv_key(args.lock, args.python)
    dest = args.root / key
    with open(args.root / f".{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not (dest / MARKER).exists():
            print(f"building venv {dest} from {args.lock}", file=sys.stderr)
            build(args.lock, args.python, dest)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
