"""A thin wrapper around the git command line (real git; no library re-implements its locking).

Every call names the repository explicitly (--git-dir) and runs with a fixed, minimal environment
so that a developer's global git config (hooks, signing, aliases) never changes what the deployer
writes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from libs.errors.domain_errors import Unavailable


class GitError(Unavailable):
    """git failed; `stderr` has its words. Callers catch it where a failure has a meaning."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args[:2])} failed ({returncode}): {stderr.strip()[:500]}")
        self.returncode = returncode
        self.stderr = stderr


class Git:
    def __init__(self, git_dir: Path, *, extra_env: Mapping[str, str] | None = None, timeout: float = 120.0) -> None:
        self.git_dir = Path(git_dir)
        self.timeout = timeout
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.git_dir),  # no ~/.gitconfig
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "TZ": "UTC",
        }
        self._env.update(extra_env or {})

    def run(
        self,
        *args: str,
        input: bytes | None = None,  # noqa: A002 - mirrors subprocess
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        full = ["git", f"--git-dir={self.git_dir}", *args]
        proc = subprocess.run(
            full,
            input=input,
            capture_output=True,
            env={**self._env, **(env or {})},
            timeout=self.timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(list(args), proc.returncode, proc.stderr.decode(errors="replace"))
        return proc

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.decode().strip()
