"""Domain data <-> causeway.validator.v1 messages (no logic)."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2

from causeway.common.v1 import identity_pb2, model_pb2
from causeway.validator.v1 import policy_pb2, run_pb2
from libs.auth.principal import Principal
from services.validator.domain import policy_model as pm
from services.validator.domain import report as reports
from services.validator.domain import runs as r
from services.validator.domain.results import CheckResult


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def actor_from_principal(p: Principal, issuer: str) -> r.Actor:
    return r.Actor(
        subject=p.subject,
        issuer=issuer,
        display_name=p.name,
        email=p.email,
        roles=tuple(sorted(p.roles)),
        kind="SERVICE" if p.kind == "service" else "HUMAN",
        teams=tuple(sorted(p.teams)),
    )


def actor(a: r.Actor) -> identity_pb2.Actor:
    kind = identity_pb2.ACTOR_KIND_SERVICE if a.kind == "SERVICE" else identity_pb2.ACTOR_KIND_HUMAN
    return identity_pb2.Actor(
        subject=a.subject, issuer=a.issuer, display_name=a.display_name, email=a.email, roles=a.roles, kind=kind
    )


def run_state(name: str) -> run_pb2.RunState.ValueType:
    return run_pb2.RunState.Value("RUN_STATE_" + name) if name else run_pb2.RUN_STATE_UNSPECIFIED


def run_state_name(value: run_pb2.RunState.ValueType) -> str:
    return run_pb2.RunState.Name(value).removeprefix("RUN_STATE_") if value else ""


def run(record: r.Run, queue_position: int = 0) -> run_pb2.ValidationRun:
    msg = run_pb2.ValidationRun(
        run_id=record.run_id,
        model=model_pb2.ModelRef(name=record.model_name, version=record.version),
        artifact_digest=reports.digest(record.artifact_digest),
        policy_name=record.policy_name,
        environment=reports.environment_enum(record.environment),
        state=run_state(record.state),
        verdict=reports.verdict_enum(record.verdict),
        message=record.message,
        queue_position=queue_position,
        requested_by=actor(record.requested_by),
    )
    if record.champion is not None:
        msg.champion.CopyFrom(model_pb2.ModelRef(name=record.champion[0], version=record.champion[1]))
    for c in record.checks:
        msg.checks.add(
            name=c.name,
            type=reports.check_type_enum(c.type),
            phase=run_pb2.CheckPhase.Value("CHECK_PHASE_" + c.phase),
            status=reports.status_enum(c.status),
        )
    if record.report_digest:
        msg.report_digest.CopyFrom(reports.digest(record.report_digest))
    for field in ("create_time", "start_time", "finish_time", "record_time"):
        value = timestamp(getattr(record, field))
        if value is not None:
            getattr(msg, field).CopyFrom(value)
    return msg


def event(e: r.Event) -> run_pb2.ValidationEvent:
    msg = run_pb2.ValidationEvent(sequence=e.sequence, time=timestamp(e.time))
    if e.kind == r.EVENT_STATE:
        change = msg.state_changed
        change.state = run_state(e.data.get("state", ""))
        change.message = e.data.get("message", "")
        change.verdict = reports.verdict_enum(e.data.get("verdict", ""))
        if e.data.get("report_digest"):
            change.report_digest.CopyFrom(reports.digest(e.data["report_digest"]))
    elif e.kind == r.EVENT_CHECK_STARTED:
        msg.check_started.name = e.data["name"]
        msg.check_started.type = reports.check_type_enum(e.data["type"])
    elif e.kind == r.EVENT_CHECK_FINISHED:
        msg.check_finished.result.CopyFrom(reports.check_result_proto(CheckResult.from_dict(e.data["result"])))
    return msg


def policy(p: pm.Policy) -> policy_pb2.ValidationPolicy:
    msg = policy_pb2.ValidationPolicy(
        name=p.name,
        description=p.description,
        policy_digest=reports.digest(p.digest),
        allowed_formats=[reports.format_enum(f) for f in p.allowed_formats],
        timeout=duration(p.timeout_seconds),
    )
    for spec in p.checks:
        check = msg.checks.add(
            name=spec.name, type=reports.check_type_enum(spec.type), severity=reports.severity_enum(spec.severity)
        )
        check.parameters.update(dict(spec.parameters))
        check.thresholds.extend(reports.threshold_proto(t) for t in spec.thresholds)
    s = p.sandbox
    msg.sandbox.memory_bytes = s.memory_bytes
    msg.sandbox.cpu_time_limit.CopyFrom(duration(s.cpu_seconds))
    msg.sandbox.max_file_bytes = s.max_file_bytes
    msg.sandbox.wall_time_limit.CopyFrom(duration(s.wall_seconds))
    return msg
