"""The deployer's audit events as AppendEventRequests, for libs/audit's AuditPublisher.

The outbox is the deployments database itself (an event is written in the same transaction as
its change); the shared publisher drains it into the audit chain in order, idempotently.
"""

from __future__ import annotations

from causeway.audit.v1 import audit_service_pb2
from causeway.common.v1 import identity_pb2
from libs.audit.publisher import actor_kind, append_request
from services.deployer.domain.ports import AuditEvent


def to_request(event: AuditEvent) -> audit_service_pb2.AppendEventRequest:
    actor = None
    if event.actor is not None:
        a = event.actor
        actor = identity_pb2.Actor(
            subject=a.subject,
            issuer=a.issuer,
            display_name=a.display_name,
            email=a.email,
            roles=list(a.roles),
            kind=actor_kind(a.kind),
        )
    return append_request(
        event_id=event.event_id,
        occur_time=event.occur_time,
        service="deployer",
        action=event.action,
        subject=event.subject,
        outcome=event.outcome,
        details=event.details,
        actor=actor,
        request_id=event.request_id,
        trace_id=event.trace_id,
        payload_digest=event.payload_digest,
    )
