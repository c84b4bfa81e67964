"""What the domain needs from the outside, as interfaces; storage/ and clients/ implement them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from libs.errors.domain_errors import FailedPrecondition
from services.deployer.domain.records import Actor, CanaryAnalysis, Deployment, GateCheck, ModelRef, State


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    """One event for the audit chain (causeway.audit.v1.AppendEventRequest), sent via the outbox."""

    event_id: str
    action: str  # "<resource>.<verb>", e.g. "deployment.commit"
    subject: str  # "deployments/<id>"
    outcome: str  # "SUCCESS", "FAILURE", "DENIED"
    occur_time: dt.datetime
    actor: Actor | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    payload_digest: str = ""  # sha256:<hex>
    request_id: str = ""
    trace_id: str = ""


@dataclasses.dataclass(frozen=True)
class ListFilter:
    model_name: str = ""
    environment: str = ""
    cloud: str = ""
    state: State | None = None
    kind: str = ""


class DeploymentStore(Protocol):
    def create(self, deployment: Deployment, events: Sequence[AuditEvent]) -> Deployment:
        """Insert; returns the existing one for a known request_id; Aborted if the target is busy."""

    def update(self, deployment: Deployment, events: Sequence[AuditEvent] = ()) -> None:
        """Replace the stored record and queue `events`, in one transaction."""

    def record_events(self, events: Sequence[AuditEvent]) -> None: ...

    def get(self, deployment_id: str) -> Deployment | None: ...

    def by_request_id(self, request_id: str) -> Deployment | None: ...

    def active(self, model_name: str, environment: str, cloud: str) -> Deployment | None: ...

    def unfinished(self) -> list[Deployment]: ...

    def list(self, flt: ListFilter, offset: int, limit: int) -> list[Deployment]: ...


class GateChecker(Protocol):
    def check(self, model: ModelRef, environment: str) -> GateCheck:
        """The registry's CheckGates answer; NotFound if there is no such version."""


class AliasMover(Protocol):
    def move(self, model: ModelRef, environment: str, reason: str) -> int:
        """Point the environment alias at the version; returns the previous version (0: none)."""


class PullRequests(Protocol):
    """A git host's pull-request API (GitHub, GitLab)."""

    def open(self, branch: str, base: str, title: str, body: str) -> str:
        """Open a pull request; returns its URL."""

    def close(self, url: str, comment: str) -> None: ...


class Runtime(Protocol):
    """Applies committed deployments where no Argo CD runs (the single-machine runtime)."""

    def apply(self, deployment: Deployment, progress: Callable[[State, str, CanaryAnalysis | None], None]) -> None:
        """Make the deployment's version live; report progress; raise to fail it."""

    def abort(self, deployment_id: str) -> bool:
        """Ask a running canary to stop and return traffic to stable; False if none runs."""

    def status(self, model_name: str, environment: str) -> dict[str, Any]:
        """{"version": int, "healthy": bool, "traffic": [(version, percent)]} of what runs now."""


class GatesBlocked(FailedPrecondition):
    """A version does not pass an environment's gates; the servicer sends a GateFailure detail."""

    def __init__(self, check: GateCheck, what: str) -> None:
        missing = "; ".join(f"{g.gate}: {g.message}" for g in check.failed()) or "blocked"
        super().__init__(f"{what}: {check.model} does not pass the {check.environment} gates ({missing})")
        self.check = check
