"""Deployments to and from JSON (the stored form); dataclasses in, dataclasses out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from services.deployer.domain.ports import AuditEvent
from services.deployer.domain.records import (
    Actor,
    CanaryAnalysis,
    CanaryCriterion,
    CanaryStep,
    Deployment,
    GateResult,
    GitChange,
    Kind,
    MetricResult,
    ModelRef,
    State,
    Strategy,
)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    if isinstance(obj, (Kind, State)):
        return obj.value
    raise TypeError(f"cannot encode {type(obj).__name__}")


def dumps(value: Any) -> str:
    data = dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
    return json.dumps(data, default=_default, sort_keys=True)


def _criterion(d: dict) -> CanaryCriterion:
    return CanaryCriterion(d["metric"], d.get("max_value"), d.get("max_relative_increase"))


def deployment_from_json(text: str) -> Deployment:
    d = json.loads(text)
    strategy = Strategy(
        d["strategy"]["kind"],
        tuple(CanaryStep(**s) for s in d["strategy"]["steps"]),
        tuple(_criterion(c) for c in d["strategy"]["criteria"]),
    )
    canary = None
    if d.get("canary"):
        c = d["canary"]
        canary = CanaryAnalysis(
            c["decision"],
            c["current_step"],
            c["traffic_percent"],
            tuple(
                MetricResult(_criterion(m["criterion"]), m["baseline_value"], m["canary_value"], m["passed"])
                for m in c["metrics"]
            ),
            c["message"],
            _time(c.get("analyze_time")),
        )
    git = d.get("git_change")
    previous = d.get("previous_model")
    return Deployment(
        deployment_id=d["deployment_id"],
        kind=Kind(d["kind"]),
        model=ModelRef(**d["model"]),
        artifact_digest=d["artifact_digest"],
        environment=d["environment"],
        cloud=d["cloud"],
        strategy=strategy,
        state=State(d["state"]),
        requested_by=Actor(**{**d["requested_by"], "roles": tuple(d["requested_by"]["roles"])}),
        reason=d["reason"],
        create_time=_time(d["create_time"]),  # type: ignore[arg-type]
        update_time=_time(d["update_time"]),  # type: ignore[arg-type]
        message=d["message"],
        git_change=GitChange(**{**git, "paths": tuple(git["paths"])}) if git else None,
        canary=canary,
        gates=tuple(GateResult(g["gate"], g["status"], g["message"], tuple(g["evidence"])) for g in d["gates"]),
        source_environment=d["source_environment"],
        target_revision=d["target_revision"],
        previous_model=ModelRef(**previous) if previous else None,
        change_request=d["change_request"],
        request_id=d["request_id"],
        finish_time=_time(d.get("finish_time")),
        validation_report_digest=d.get("validation_report_digest", ""),
        approval_ids=tuple(d.get("approval_ids", ())),
    )


def event_from_json(text: str) -> AuditEvent:
    d = json.loads(text)
    actor = d.get("actor")
    return AuditEvent(
        event_id=d["event_id"],
        action=d["action"],
        subject=d["subject"],
        outcome=d["outcome"],
        occur_time=_time(d["occur_time"]),  # type: ignore[arg-type]
        actor=Actor(**{**actor, "roles": tuple(actor["roles"])}) if actor else None,
        details=d["details"],
        payload_digest=d["payload_digest"],
        request_id=d["request_id"],
        trace_id=d["trace_id"],
    )
