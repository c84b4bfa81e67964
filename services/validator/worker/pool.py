"""The domain's WorkerPort on top of the bwrap sandbox: run dirs, staged code, sessions."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from services.validator.domain.policy_model import SandboxLimits
from services.validator.domain.ports import SandboxUnavailable
from services.validator.worker import runtime
from services.validator.worker.launcher import Bind, Limits, Sandbox
from services.validator.worker.session import WorkerSession

# A successful smoke test is trusted this long before preflight runs another one.
SMOKE_TTL_SECONDS = 600.0


class SandboxWorkers:
    """Starts worker sessions in the sandbox; every run's inputs live in their own directory."""

    def __init__(self, sandbox: Sandbox, work_dir: Path) -> None:
        self.sandbox = sandbox
        self.work_dir = Path(work_dir)
        self._code_dir: Path | None = None
        self._smoke_ok_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def gid(self) -> int:
        return self.sandbox.settings.gid

    def prepare(self) -> int:
        """At start: create the work dir, stage the worker code, drop leftovers of a crash."""
        runtime.make_private_dir(self.work_dir, self.gid)
        removed = runtime.clean_runs(self.work_dir)
        try:
            self._code_dir = runtime.stage_worker_code(self.work_dir, self.gid)
        except OSError:
            self._code_dir = None  # preflight reports it when a run needs the sandbox
        return removed

    def code_dir(self) -> Path:
        if self._code_dir is None or not self._code_dir.exists():
            try:
                self._code_dir = runtime.stage_worker_code(self.work_dir, self.gid)
            except OSError as err:
                raise SandboxUnavailable(f"sandbox unavailable: cannot stage the worker code: {err}") from err
        return self._code_dir

    def describe(self) -> str:
        return self.sandbox.describe()

    def threads(self) -> int:
        return self.sandbox.settings.threads

    def preflight(self) -> None:
        """Static checks every time, and a tiny sandboxed smoke run now and then (fail closed)."""
        code = self.code_dir()
        self.sandbox.preflight([str(self.work_dir), str(code)])
        with self._lock:
            if time.monotonic() - self._smoke_ok_at < SMOKE_TTL_SECONDS:
                return
            limits = Limits(memory_bytes=1 << 30, cpu_seconds=10, max_file_bytes=1 << 20, wall_seconds=30)
            proc = self.sandbox.start([], [self.sandbox.settings.python, "-I", "-S", "-c", "print('ok')"], limits, b"")
            assert proc.stdout is not None
            output = proc.stdout.read(64)
            exit_info = proc.wait(timeout=60)
            if exit_info.returncode != 0 or output.strip() != b"ok":
                raise SandboxUnavailable(
                    f"sandbox unavailable: a smoke run exited with status {exit_info.returncode}: "
                    f"{exit_info.stderr_tail.strip()[-600:] or output!r}"
                )
            self._smoke_ok_at = time.monotonic()

    def new_run_dir(self, run_id: str) -> Path:
        return runtime.new_run_dir(self.work_dir, run_id, self.gid)

    def seal(self, path: Path) -> None:
        runtime.seal_file(path, self.gid)

    def remove_run_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def start(self, job: dict[str, Any], files: list[tuple[Path, str]], limits: SandboxLimits) -> WorkerSession:
        binds = [Bind(str(host), dest) for host, dest in files]
        sandbox_limits = Limits(
            memory_bytes=limits.memory_bytes,
            cpu_seconds=limits.cpu_seconds,
            max_file_bytes=limits.max_file_bytes,
            wall_seconds=limits.wall_seconds,
        )
        job = {**job, "threads": self.threads()}
        return WorkerSession(self.sandbox, self.code_dir(), job, binds, sandbox_limits).start()
