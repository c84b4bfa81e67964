"""One job in one sandboxed worker, seen from the service: start, wait for step results, stop.

Everything the worker writes is untrusted (a malicious pickle runs in that process), so lines and
the total output are capped, every message is parsed defensively, and why the worker ended is
decided from its exit status and our own watchdog, not from what it claims.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

from services.validator.domain.ports import StepResult, WorkerStopped
from services.validator.worker import runtime
from services.validator.worker.inside import protocol
from services.validator.worker.launcher import Bind, Exit, Limits, Sandbox, SandboxProcess

MAX_LINE_BYTES = 256 * 1024 * 1024
MAX_OUTPUT_BYTES = 512 * 1024 * 1024


def _signalled(code: int, sig: int) -> bool:
    return code in (128 + sig, -sig)


def classify_exit(ended: Exit, ready: bool, fatal: dict[str, Any] | None, limits: Limits) -> WorkerStopped:
    """Why a worker ended, from its exit status, our watchdog and (for memory) its last message."""
    code = ended.returncode
    tail = ended.stderr_tail.strip()[-2000:]
    if ended.killed_by == "cancelled":
        return WorkerStopped("the run was cancelled; the worker was killed", cancelled=True)
    if not ready:
        detail = f"{fatal.get('kind')}: {fatal.get('error')}" if fatal else (tail or f"exit status {code}")
        if ended.killed_by == "wall_time":
            detail = f"no ready signal within {limits.wall_seconds:g} s; {detail}"
        return WorkerStopped(f"sandbox setup failed before the artifact was opened: {detail}", infrastructure=True)
    if ended.killed_by == "wall_time":
        return WorkerStopped(
            f"killed: wall-time limit of {limits.wall_seconds:g} s exceeded (the model never returned)",
            violation="wall_time",
        )
    if ended.killed_by == "protocol":
        return WorkerStopped("killed: the worker's output exceeded the protocol limits", violation="protocol")
    if code == protocol.EXIT_MEMORY or (fatal and fatal.get("kind") == "memory_limit"):
        what = str(fatal.get("error", "")) if fatal else ""
        return WorkerStopped(
            f"stopped: the model exceeded the sandbox memory limit (RLIMIT_AS {limits.memory_bytes} bytes)"
            + (f": {what[:300]}" if what else ""),
            violation="memory_limit",
        )
    if _signalled(code, signal.SIGSYS):
        return WorkerStopped(
            "killed by seccomp (SIGSYS): the model attempted a forbidden system call "
            "(a network socket, running a program, or tracing a process)",
            violation="forbidden_syscall",
        )
    if _signalled(code, signal.SIGXCPU):
        return WorkerStopped(f"killed: CPU-time limit of {limits.cpu_seconds} s exceeded", violation="cpu_time")
    if _signalled(code, signal.SIGXFSZ):
        return WorkerStopped(
            f"killed: tried to write a file larger than {limits.max_file_bytes} bytes", violation="file_size"
        )
    if _signalled(code, signal.SIGKILL):
        return WorkerStopped("killed by SIGKILL (kernel out-of-memory killer or a hard limit)", violation="killed")
    return WorkerStopped(f"the worker crashed (exit status {code}): {tail[-800:]}")


class WorkerSession:
    """Runs `job` in the sandbox; `result(step)` blocks until that step's message or the end."""

    def __init__(self, sandbox: Sandbox, code_dir: Path, job: dict[str, Any], binds: list[Bind], limits: Limits):
        self.sandbox = sandbox
        self.code_dir = code_dir
        self.job = {"protocol": protocol.PROTOCOL_VERSION, **job}
        self.binds = [Bind(str(code_dir), runtime.MOUNT), *binds]
        self.limits = limits
        self.ready_info: dict[str, Any] | None = None
        self._results: dict[str, StepResult] = {}
        self._fatal: dict[str, Any] | None = None
        self._stopped: WorkerStopped | None = None
        self._finished = False
        self._cond = threading.Condition()
        self._proc: SandboxProcess | None = None
        self.exit: Exit | None = None

    def start(self) -> WorkerSession:
        """Start the worker (SandboxUnavailable if the sandbox cannot be set up at all)."""
        argv = [self.sandbox.settings.python, "-I", "-B", "-c", runtime.boot_code(self.sandbox.settings.python_paths)]
        data = json.dumps(self.job).encode()
        self._proc = self.sandbox.start(self.binds, argv, self.limits, data)
        threading.Thread(target=self._read, daemon=True, name="worker-reader").start()
        return self

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        total = 0
        while True:
            line = proc.stdout.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            total += len(line)
            if len(line) > MAX_LINE_BYTES or total > MAX_OUTPUT_BYTES:
                proc.kill("protocol")
                break
            self._handle(line)
        exit_info = proc.wait()
        with self._cond:
            self.exit = exit_info
            clean = exit_info.returncode == 0 and self._finished and not exit_info.killed_by
            if not clean:
                self._stopped = classify_exit(exit_info, self.ready_info is not None, self._fatal, self.limits)
            elif self._stopped is None:
                self._stopped = WorkerStopped("the worker finished without reporting this step")
            self._cond.notify_all()

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # not ours: ignore, the exit status decides
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        with self._cond:
            if kind == "ready" and self.ready_info is None:
                self.ready_info = {
                    "runtime": message.get("runtime") if isinstance(message.get("runtime"), dict) else {},
                    "sandbox": message.get("sandbox") if isinstance(message.get("sandbox"), dict) else {},
                }
            elif kind == "step" and isinstance(message.get("name"), str) and self.ready_info is not None:
                name = message["name"]
                if name not in self._results:
                    result = message.get("result")
                    self._results[name] = StepResult(
                        name=name,
                        ok=bool(message.get("ok")),
                        result=result if isinstance(result, dict) else {},
                        error=str(message.get("error", ""))[:8000],
                        kind=str(message.get("kind", "")),
                        seconds=float(message.get("seconds", 0.0) or 0.0),
                    )
            elif kind == "fatal":
                self._fatal = {"kind": str(message.get("kind", "")), "error": str(message.get("error", ""))[:2000]}
            elif kind == "done":
                self._finished = True
            self._cond.notify_all()

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: self.ready_info is not None or self._stopped is not None, timeout)
            if self.ready_info is not None:
                return self.ready_info
            if self._stopped is not None:
                raise self._stopped
        self.close("wall_time")
        raise WorkerStopped(f"the worker did not start within {timeout:g} s", infrastructure=True)

    def result(self, step: str, timeout: float) -> StepResult:
        """The step's result; WorkerStopped if the worker ended (or `timeout` passed) first."""
        with self._cond:
            self._cond.wait_for(lambda: step in self._results or self._stopped is not None, timeout)
            if step in self._results:
                return self._results[step]
            if self._stopped is not None:
                raise self._stopped
        self.close("wall_time")
        with self._cond:
            self._cond.wait_for(lambda: self._stopped is not None, 10)
            raise self._stopped or WorkerStopped("the run's time ran out", violation="wall_time")

    def close(self, reason: str = "closed") -> None:
        """Kill the worker if it is still running (idempotent)."""
        if self._proc is not None:
            self._proc.kill(reason)
