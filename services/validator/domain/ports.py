"""What the domain needs from the outside: the registry and sandboxed workers (interfaces only).

The gRPC registry client (clients/registry_client.py) and the bwrap worker pool (worker/pool.py)
implement these; tests may hand in other implementations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Protocol

from libs.errors.domain_errors import DomainError
from services.validator.domain.policy_model import SandboxLimits
from services.validator.domain.versions import VersionInfo


class SandboxUnavailable(DomainError):
    """The sandbox cannot be set up on this host: nothing untrusted may be opened (fail closed)."""

    status = "FAILED_PRECONDITION"


class WorkerStopped(Exception):
    """The worker ended before delivering a result.

    `violation` names the sandbox limit the model broke ("memory_limit", "wall_time", "cpu_time",
    "file_size", "forbidden_syscall", "killed", "protocol"); `infrastructure` is True when the
    sandbox could not be set up (the artifact was never opened); `cancelled` when we stopped it.
    """

    def __init__(
        self, message: str, *, violation: str = "", infrastructure: bool = False, cancelled: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violation = violation
        self.infrastructure = infrastructure
        self.cancelled = cancelled


@dataclasses.dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    result: dict[str, Any]
    error: str
    kind: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Download:
    """Bytes fetched by digest into `path`; `digest` is what they actually hash to."""

    path: Path
    digest: str
    size: int


class WorkerSessionPort(Protocol):
    ready_info: dict[str, Any] | None

    def wait_ready(self, timeout: float) -> dict[str, Any]: ...

    def result(self, step: str, timeout: float) -> StepResult: ...

    def close(self, reason: str = "closed") -> None: ...


class WorkerPort(Protocol):
    def preflight(self) -> None:
        """Raise SandboxUnavailable if no sandbox can be started on this host."""

    def describe(self) -> str: ...

    def threads(self) -> int: ...

    def new_run_dir(self, run_id: str) -> Path: ...

    def seal(self, path: Path) -> None:
        """Make a staged input readable by the sandbox and read-only."""

    def remove_run_dir(self, path: Path) -> None: ...

    def start(self, job: dict[str, Any], files: list[tuple[Path, str]], limits: SandboxLimits) -> WorkerSessionPort:
        """Start `job` with each (host file, sandbox path) bound read-only."""


class RegistryPort(Protocol):
    def get_version(self, name: str, version: int) -> VersionInfo:
        """NotFound / InvalidArgument / Unavailable as domain errors."""

    def get_champion(self, name: str) -> VersionInfo | None:
        """The version the CHAMPION alias points to, or None."""

    def owner_team(self, name: str) -> str: ...

    def environment_policy(self, environment: str) -> str:
        """The validator policy name the environment requires; NotFound if none."""

    def download(self, digest: str, dest: Path) -> Download:
        """Stream the artifact into `dest`, hashing it; DataLoss/NotFound/Unavailable as domain errors."""

    def record_report(
        self,
        *,
        model: tuple[str, int],
        artifact_digest: str,
        policy_name: str,
        policy_digest: str,
        environment: str,
        run_id: str,
        verdict: str,
        report_json: bytes,
        report_digest: str,
    ) -> dt.datetime:
        """Record the finished report; returns the registry's record time."""
