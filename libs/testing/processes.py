"""Run a service as a real subprocess for tests that need signals or kill -9.

The child prints JSON log lines; `ServerProcess` waits for the `"msg": "serving"` line and reads
the bound port from it. Children are killed by PID when the context exits or the interpreter ends,
so a failing test never leaves a server running.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

_live: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_live):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


class ServerProcess:
    """A child process running a Causeway server; use as a context manager."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.lines: list[dict[str, Any] | str] = []
        self._queue: queue.Queue[dict[str, Any] | str | None] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        _live.add(self.proc.pid)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            if isinstance(line, dict) and line.get("msg") == "serving":
                self.port = int(line["port"])
                return
        self.kill()
        raise RuntimeError(f"server {self.argv} did not start; output:\n{self.output()}")

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            raw = raw.rstrip("\n")
            try:
                line: dict[str, Any] | str = json.loads(raw)
            except ValueError:
                line = raw
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in self.lines)

    def log_entries(self, msg: str | None = None) -> list[dict[str, Any]]:
        return [x for x in self.lines if isinstance(x, dict) and (msg is None or x.get("msg") == msg)]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        _live.discard(self.proc.pid)
        return code

    def kill(self) -> None:
        """SIGKILL by PID if still running (kill -9 semantics), and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        _live.discard(self.proc.pid)
