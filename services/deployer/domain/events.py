"""Audit events the deployer emits (action names, subjects, details), built from deployments."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from libs.telemetry import context as reqctx
from services.deployer.domain.ports import AuditEvent
from services.deployer.domain.records import Actor, Deployment, GateCheck


def _ids() -> tuple[str, str]:
    ctx = reqctx.current()
    return (ctx.request_id, ctx.trace_id) if ctx is not None else ("", "")


def event(
    action: str,
    deployment: Deployment,
    now: dt.datetime,
    *,
    outcome: str = "SUCCESS",
    details: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    request_id, trace_id = _ids()
    base = {
        "deployment_id": deployment.deployment_id,
        "kind": deployment.kind.value,
        "model": deployment.model.name,
        "version": deployment.model.version,
        "environment": deployment.environment,
        "cloud": deployment.cloud,
        "state": deployment.state.value,
    }
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        action=action,
        subject=f"deployments/{deployment.deployment_id}",
        outcome=outcome,
        occur_time=now,
        actor=actor or deployment.requested_by,
        details=base | (details or {}),
        payload_digest=deployment.artifact_digest,
        request_id=request_id,
        trace_id=trace_id,
    )


def refusal(check: GateCheck, actor: Actor, action: str, cloud: str, now: dt.datetime) -> AuditEvent:
    """A request refused by the gates: FAILURE with the failed gates and their evidence."""
    request_id, trace_id = _ids()
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        action="deployment.refuse",
        subject=f"models/{check.model.name}/versions/{check.model.version}",
        outcome="FAILURE",
        occur_time=now,
        actor=actor,
        details={
            "request": action,
            "environment": check.environment,
            "cloud": cloud,
            "failed_gates": [{"gate": g.gate, "message": g.message} for g in check.failed()],
            "policy_digest": check.policy_digest,
        },
        payload_digest=check.artifact_digest,
        request_id=request_id,
        trace_id=trace_id,
    )
