"""Finding a test's own sandboxed workers (other tests on the machine run workers too)."""

from __future__ import annotations

import os
from pathlib import Path

# A root service drops its workers to the sandbox user (65534, the config default); an unprivileged
# service (uid 65532 in its pod, and the *_nonroot test targets) runs them as itself in a new user
# namespace. The same test files run both ways (BUILD.bazel).
SANDBOX_UID = 65534 if os.geteuid() == 0 else os.geteuid()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def is_worker(pid: int) -> bool:
    """A live process of the sandbox user running the validator's worker."""
    try:
        return (
            os.stat(f"/proc/{pid}").st_uid == SANDBOX_UID
            and b"validator_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    except OSError:
        return False


def worker_pids(ancestor: int) -> list[int]:
    """Sandboxed worker processes that descend from `ancestor` (the validator that started them)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        pid = int(entry)
        try:
            if is_worker(pid) and _descends_from(pid, ancestor):
                found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found
