"""Recording registry state changes in the audit chain, with the verified actor and request ids."""

from __future__ import annotations

from typing import Any

from libs.audit.audit_log import AuditLog
from libs.audit.events import AuditEvent, EventDraft
from libs.auth.principal import Principal
from libs.telemetry import context as reqctx

SERVICE = "registry"


def actor_info(principal: Principal) -> dict[str, Any]:
    return {"display_name": principal.display, "kind": principal.kind, "roles": sorted(principal.roles)}


class Auditor:
    """Appends one event per state change; the registry is the chain's owner."""

    def __init__(self, log: AuditLog, service_subject: str = "service:registry") -> None:
        self.log = log
        self._service_subject = service_subject

    def record(
        self,
        actor: Principal,
        action: str,
        subject: str,
        details: dict[str, Any] | None = None,
        *,
        outcome: str = "success",
        payload_digest: str = "",
    ) -> AuditEvent:
        ctx = reqctx.current()
        return self.log.append(
            EventDraft(
                actor=actor.subject,
                actor_info=actor_info(actor),
                recorded_by=self._service_subject,
                service=SERVICE,
                action=action,
                subject=subject,
                outcome=outcome,
                payload_digest=payload_digest,
                request_id=ctx.request_id if ctx else "",
                trace_id=ctx.trace_id if ctx else "",
                details=details or {},
            )
        )
