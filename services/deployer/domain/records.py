"""The deployer's records: deployments, strategies, gate checks, git changes. Plain data, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re

from libs.errors.domain_errors import InvalidArgument

ENVIRONMENTS = ("dev", "test", "prod")
CLOUDS = ("aws", "gcp", "local")
# Model names become paths, Kubernetes names and OIP model names (causeway.common.v1.ModelRef).
_MODEL_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


class Kind(enum.Enum):
    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class State(enum.Enum):
    PENDING = "pending"
    AWAITING_MERGE = "awaiting_merge"
    SYNCING = "syncing"
    CANARY = "canary"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.ABORTED, State.SUPERSEDED)


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name or ""):
        raise InvalidArgument(
            f"model name {name!r} must be a DNS-1123 label: 1-63 of [a-z0-9-], starting with a letter"
        )
    return name


def check_environment(env: str, field: str = "environment") -> str:
    if env not in ENVIRONMENTS:
        raise InvalidArgument(f"{field} is required: one of {', '.join(ENVIRONMENTS)}")
    return env


def check_cloud(cloud: str) -> str:
    if cloud not in CLOUDS:
        raise InvalidArgument(f"cloud is required: one of {', '.join(CLOUDS)}")
    return cloud


def check_digest(digest: str) -> str:
    if not _SHA256.match(digest or ""):
        raise InvalidArgument(f"digest {digest!r} must be sha256:<64 lowercase hex>")
    return digest


@dataclasses.dataclass(frozen=True)
class ModelRef:
    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who asked, from the verified token (never from request fields)."""

    subject: str
    display_name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()
    kind: str = "human"  # or "service"
    issuer: str = ""

    def describe(self) -> str:
        return f"{self.subject} ({self.display_name})" if self.display_name else self.subject


@dataclasses.dataclass(frozen=True)
class CanaryStep:
    traffic_percent: int
    pause_seconds: float


@dataclasses.dataclass(frozen=True)
class CanaryCriterion:
    """A bound on a canary metric: absolute (max_value) or relative to stable (max_relative_increase)."""

    metric: str
    max_value: float | None = None
    max_relative_increase: float | None = None


CANARY_METRICS = ("error_rate", "latency_p99_seconds", "latency_p95_seconds")
DEFAULT_STEPS = (CanaryStep(10, 300.0), CanaryStep(50, 300.0), CanaryStep(100, 0.0))
DEFAULT_CRITERIA = (
    CanaryCriterion("error_rate", max_relative_increase=0.1),
    CanaryCriterion("latency_p99_seconds", max_relative_increase=0.2),
)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """direct, or canary with steps and criteria (defaults filled in by `canary()`)."""

    kind: str = "direct"
    steps: tuple[CanaryStep, ...] = ()
    criteria: tuple[CanaryCriterion, ...] = ()

    @staticmethod
    def canary(steps: tuple[CanaryStep, ...] = (), criteria: tuple[CanaryCriterion, ...] = ()) -> Strategy:
        """A validated canary strategy: steps strictly increasing within 1-100 and ending at 100."""
        steps = tuple(steps) or DEFAULT_STEPS
        last = 0
        for step in steps:
            if not 1 <= step.traffic_percent <= 100 or step.traffic_percent <= last:
                raise InvalidArgument("canary steps need strictly increasing traffic_percent within 1-100")
            if step.pause_seconds < 0:
                raise InvalidArgument("canary step pause must not be negative")
            last = step.traffic_percent
        if last != 100:
            steps = (*steps, CanaryStep(100, 0.0))
        for criterion in criteria:
            if criterion.metric not in CANARY_METRICS:
                raise InvalidArgument(f"canary metric {criterion.metric!r} must be one of {', '.join(CANARY_METRICS)}")
            if (criterion.max_value is None) == (criterion.max_relative_increase is None):
                raise InvalidArgument(f"canary criterion {criterion.metric}: set exactly one bound")
        return Strategy("canary", steps, tuple(criteria) or DEFAULT_CRITERIA)


@dataclasses.dataclass(frozen=True)
class GateResult:
    gate: str  # e.g. "VALIDATION", "APPROVALS"
    status: str  # "PASSED", "FAILED", "NOT_REQUIRED"
    message: str = ""
    evidence: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GateCheck:
    """The registry's CheckGates answer for one version and environment."""

    model: ModelRef
    environment: str
    allowed: bool
    gates: tuple[GateResult, ...]
    artifact_digest: str  # sha256:<hex>
    validation_report_digest: str = ""  # sha256:<hex> or ""
    approval_ids: tuple[str, ...] = ()
    policy_digest: str = ""

    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.status == "FAILED")


@dataclasses.dataclass(frozen=True)
class GitChange:
    repository: str
    branch: str
    commit_sha: str
    base_commit_sha: str
    mode: str  # "direct" or "pull_request"
    pull_request_url: str = ""
    paths: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MetricResult:
    criterion: CanaryCriterion
    baseline_value: float | None
    canary_value: float | None
    passed: bool | None  # None: no data


@dataclasses.dataclass(frozen=True)
class CanaryAnalysis:
    decision: str  # "pending", "promote", "abort"
    current_step: int
    traffic_percent: int
    metrics: tuple[MetricResult, ...] = ()
    message: str = ""
    analyze_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One deploy / promote / rollback operation."""

    deployment_id: str
    kind: Kind
    model: ModelRef
    artifact_digest: str
    environment: str
    cloud: str
    strategy: Strategy
    state: State
    requested_by: Actor
    reason: str
    create_time: dt.datetime
    update_time: dt.datetime
    message: str = ""
    git_change: GitChange | None = None
    canary: CanaryAnalysis | None = None
    gates: tuple[GateResult, ...] = ()
    source_environment: str = ""
    target_revision: str = ""
    previous_model: ModelRef | None = None
    change_request: str = ""
    request_id: str = ""
    finish_time: dt.datetime | None = None
    validation_report_digest: str = ""
    approval_ids: tuple[str, ...] = ()

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.model.name, self.environment, self.cloud)

    def moved(self, state: State, message: str, now: dt.datetime, **changes) -> Deployment:
        """A copy in `state`; terminal states get their finish time."""
        finish = now if state.terminal else None
        return dataclasses.replace(self, state=state, message=message, update_time=now, finish_time=finish, **changes)


@dataclasses.dataclass(frozen=True)
class Revision:
    """A GitOps commit that made a version live in one model + environment + cloud."""

    revision: str
    model: ModelRef
    artifact_digest: str
    deployment_id: str
    kind: Kind
    requested_by: str
    live_time: dt.datetime
    end_time: dt.datetime | None = None
