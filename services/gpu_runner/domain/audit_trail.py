"""The runner's audit events: what it loaded, refused, unloaded and evicted, and batch-job events.

Each event is one JSON line on the `causeway.audit` logger and, when a recorder is wired (the
runner's local outbox, drained into the registry's audit chain by libs/audit's publisher), an
event in the tamper-evident chain. The actor is the verified caller of the current request, if
any; actions the runner takes on its own (preload, gate re-checks, evictions) carry none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from libs.audit.local_outbox import OutboxEvent
from libs.auth import principal as principal_ctx
from libs.telemetry import context as reqctx

log = logging.getLogger("causeway.audit")


def model_subject(name: str, version: int | str) -> str:
    return f"models/{name}/versions/{version}"


class AuditTrail:
    def __init__(self, recorder: Callable[[OutboxEvent], None] | None = None) -> None:
        self._recorder = recorder

    def record(self, action: str, subject: str, message: str, outcome: str = "SUCCESS", **details: Any) -> None:
        """Log `message` and record the event; a recorder failure is logged and never hides the action."""
        principal = principal_ctx.current()
        ctx = reqctx.current()
        event = OutboxEvent(
            action=action,
            subject=subject,
            outcome=outcome,
            details={k: v for k, v in details.items() if v is not None},
            actor_subject=principal.subject if principal else "",
            actor_kind=principal.kind if principal else "",
            actor_name=principal.name if principal else "",
            actor_roles=tuple(sorted(principal.roles)) if principal else (),
            request_id=ctx.request_id if ctx else "",
            trace_id=ctx.trace_id if ctx else "",
        )
        level = logging.INFO if outcome == "SUCCESS" else logging.WARNING
        log.log(level, message, extra={"action": action, "subject": subject, "outcome": outcome, **event.details})
        if self._recorder is not None:
            try:
                self._recorder(event)
            except Exception:
                log.exception("audit event not recorded", extra={"action": action, "subject": subject})
