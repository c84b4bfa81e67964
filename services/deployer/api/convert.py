"""Proto <-> domain for causeway.deployer.v1 (no logic beyond mapping and field checks)."""

from __future__ import annotations

import datetime as dt
from typing import overload

from google.protobuf import duration_pb2, timestamp_pb2

from causeway.common.v1 import digest_pb2, environment_pb2, errors_pb2, gate_pb2, identity_pb2, model_pb2
from causeway.deployer.v1 import deployment_pb2 as pb
from libs.auth.principal import Principal
from libs.errors.domain_errors import InvalidArgument
from services.deployer.domain.records import (
    Actor,
    CanaryCriterion,
    CanaryStep,
    Deployment,
    GateCheck,
    GateResult,
    Kind,
    ModelRef,
    Revision,
    State,
    Strategy,
)

ENV_TO_PB = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}
ENV_FROM_PB = {v: k for k, v in ENV_TO_PB.items()}
CLOUD_TO_PB = {"aws": environment_pb2.CLOUD_AWS, "gcp": environment_pb2.CLOUD_GCP, "local": environment_pb2.CLOUD_LOCAL}
CLOUD_FROM_PB = {v: k for k, v in CLOUD_TO_PB.items()}
KIND_TO_PB = {
    Kind.DEPLOY: pb.DEPLOYMENT_KIND_DEPLOY,
    Kind.PROMOTE: pb.DEPLOYMENT_KIND_PROMOTE,
    Kind.ROLLBACK: pb.DEPLOYMENT_KIND_ROLLBACK,
}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}
STATE_TO_PB = {s: pb.DeploymentState.Value(f"DEPLOYMENT_STATE_{s.name}") for s in State}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
DECISION_TO_PB = {
    "pending": pb.CANARY_DECISION_PENDING,
    "promote": pb.CANARY_DECISION_PROMOTE,
    "abort": pb.CANARY_DECISION_ABORT,
}


def environment(value: environment_pb2.Environment.ValueType, field: str = "environment", required: bool = True) -> str:
    if value in ENV_FROM_PB:
        return ENV_FROM_PB[value]
    if not required and value == environment_pb2.ENVIRONMENT_UNSPECIFIED:
        return ""
    raise InvalidArgument(f"{field} is required: DEV, TEST or PROD")


def cloud(value: environment_pb2.Cloud.ValueType, required: bool = True) -> str:
    if value in CLOUD_FROM_PB:
        return CLOUD_FROM_PB[value]
    if not required and value == environment_pb2.CLOUD_UNSPECIFIED:
        return ""
    raise InvalidArgument("cloud is required: AWS, GCP or LOCAL")


def strategy(message: pb.DeploymentStrategy) -> Strategy:
    which = message.WhichOneof("strategy")
    if which != "canary":
        return Strategy()
    steps = tuple(CanaryStep(s.traffic_percent, s.pause.ToTimedelta().total_seconds()) for s in message.canary.steps)
    criteria = []
    for c in message.canary.criteria:
        bound = c.WhichOneof("bound")
        if bound is None:
            raise InvalidArgument(f"canary criterion {c.metric!r} needs max_value or max_relative_increase")
        criteria.append(CanaryCriterion(c.metric, **{bound: getattr(c, bound)}))
    return Strategy.canary(steps, tuple(criteria))


def actor(principal: Principal, issuer: str) -> Actor:
    return Actor(
        subject=principal.subject,
        display_name=principal.name,
        email=principal.email,
        roles=tuple(sorted(principal.roles)),
        kind="service" if principal.kind == "service" else "human",
        issuer=issuer,
    )


def _ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def digest(text: str) -> digest_pb2.Digest | None:
    if not text:
        return None
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=text.removeprefix("sha256:"))


@overload
def model_ref(ref: ModelRef) -> model_pb2.ModelRef: ...
@overload
def model_ref(ref: None) -> None: ...
def model_ref(ref: ModelRef | None) -> model_pb2.ModelRef | None:
    return model_pb2.ModelRef(name=ref.name, version=ref.version) if ref else None


def gate_result(g: GateResult) -> gate_pb2.GateResult:
    return gate_pb2.GateResult(
        gate=gate_pb2.Gate.Value(f"GATE_{g.gate}")
        if f"GATE_{g.gate}" in gate_pb2.Gate.keys()  # noqa: SIM118 - an enum wrapper, not a dict
        else gate_pb2.GATE_UNSPECIFIED,
        status=gate_pb2.GateStatus.Value(f"GATE_STATUS_{g.status}")
        if f"GATE_STATUS_{g.status}" in gate_pb2.GateStatus.keys()  # noqa: SIM118 - an enum wrapper
        else gate_pb2.GATE_STATUS_UNSPECIFIED,
        message=g.message,
        evidence=list(g.evidence),
    )


def _actor_pb(a: Actor) -> identity_pb2.Actor:
    return identity_pb2.Actor(
        subject=a.subject,
        issuer=a.issuer,
        display_name=a.display_name,
        email=a.email,
        roles=list(a.roles),
        kind=identity_pb2.ACTOR_KIND_SERVICE if a.kind == "service" else identity_pb2.ACTOR_KIND_HUMAN,
    )


def _strategy_pb(s: Strategy) -> pb.DeploymentStrategy:
    if s.kind != "canary":
        return pb.DeploymentStrategy(direct=pb.DirectStrategy())
    steps = [
        pb.CanaryStep(traffic_percent=st.traffic_percent, pause=duration_pb2.Duration(seconds=int(st.pause_seconds)))
        for st in s.steps
    ]
    return pb.DeploymentStrategy(canary=pb.CanaryStrategy(steps=steps, criteria=[_criterion_pb(c) for c in s.criteria]))


def _criterion_pb(c: CanaryCriterion) -> pb.CanaryCriterion:
    if c.max_value is not None:
        return pb.CanaryCriterion(metric=c.metric, max_value=c.max_value)
    return pb.CanaryCriterion(metric=c.metric, max_relative_increase=c.max_relative_increase or 0.0)


def deployment(d: Deployment) -> pb.Deployment:
    out = pb.Deployment(
        deployment_id=d.deployment_id,
        kind=KIND_TO_PB[d.kind],
        model=model_ref(d.model),
        artifact_digest=digest(d.artifact_digest),
        environment=ENV_TO_PB[d.environment],
        cloud=CLOUD_TO_PB[d.cloud],
        strategy=_strategy_pb(d.strategy),
        state=STATE_TO_PB[d.state],
        message=d.message,
        gates=[gate_result(g) for g in d.gates],
        source_environment=ENV_TO_PB.get(d.source_environment, environment_pb2.ENVIRONMENT_UNSPECIFIED),
        target_revision=d.target_revision,
        previous_model=model_ref(d.previous_model),
        requested_by=_actor_pb(d.requested_by),
        reason=d.reason,
        change_request=d.change_request,
        request_id=d.request_id,
        create_time=_ts(d.create_time),
        update_time=_ts(d.update_time),
        finish_time=_ts(d.finish_time),
    )
    if d.git_change is not None:
        g = d.git_change
        out.git_change.CopyFrom(
            pb.GitChange(
                repository=g.repository,
                branch=g.branch,
                commit_sha=g.commit_sha,
                base_commit_sha=g.base_commit_sha,
                mode=pb.GIT_CHANGE_MODE_DIRECT_COMMIT if g.mode == "direct" else pb.GIT_CHANGE_MODE_PULL_REQUEST,
                pull_request_url=g.pull_request_url,
                paths=list(g.paths),
            )
        )
    if d.canary is not None:
        c = d.canary
        out.canary_analysis.CopyFrom(
            pb.CanaryAnalysis(
                decision=DECISION_TO_PB.get(c.decision, pb.CANARY_DECISION_UNSPECIFIED),
                current_step=c.current_step,
                traffic_percent=c.traffic_percent,
                message=c.message,
                analyze_time=_ts(c.analyze_time),
                metrics=[
                    pb.CanaryMetricResult(
                        criterion=_criterion_pb(m.criterion),
                        baseline_value=m.baseline_value or 0.0,
                        canary_value=m.canary_value or 0.0,
                        status=pb.CANARY_METRIC_STATUS_UNSPECIFIED
                        if m.passed is None
                        else (pb.CANARY_METRIC_STATUS_PASSED if m.passed else pb.CANARY_METRIC_STATUS_FAILED),
                    )
                    for m in c.metrics
                ],
            )
        )
    return out


def revision(r: Revision, allowed: bool) -> pb.DeploymentRevision:
    return pb.DeploymentRevision(
        revision=r.revision,
        model=model_ref(r.model),
        artifact_digest=digest(r.artifact_digest),
        deployment_id=r.deployment_id,
        kind=KIND_TO_PB[r.kind],
        requested_by=identity_pb2.Actor(subject=r.requested_by),
        live_time=_ts(r.live_time),
        end_time=_ts(r.end_time),
        current_gate_decision=gate_pb2.GATE_DECISION_ALLOWED if allowed else gate_pb2.GATE_DECISION_BLOCKED,
    )


def gate_failure(check: GateCheck) -> errors_pb2.GateFailure:
    return errors_pb2.GateFailure(
        model=model_ref(check.model),
        environment=ENV_TO_PB[check.environment],
        failed_gates=[gate_result(g) for g in check.failed()],
    )
