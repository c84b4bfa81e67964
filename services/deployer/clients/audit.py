"""The deployer's audit events as AppendEventRequests, for libs/audit's AuditPublisher.

The outbox is the deployments database itself (an event is written in the same transaction as
its change); the shared publisher drains it into the audit chain in order, idempotently.
"""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2
from causeway.common.v1 import digest_pb2, identity_pb2
from services.deployer.domain.ports import AuditEvent


def to_request(event: AuditEvent) -> audit_service_pb2.AppendEventRequest:
    occur = timestamp_pb2.Timestamp()
    occur.FromDatetime(event.occur_time)
    details = struct_pb2.Struct()
    json_format.ParseDict(event.details, details)
    request = audit_service_pb2.AppendEventRequest(
        event_id=event.event_id,
        occur_time=occur,
        service="deployer",
        action=event.action,
        subject=event.subject,
        outcome=audit_event_pb2.AuditOutcome.Value(f"AUDIT_OUTCOME_{event.outcome}"),
        request_id=event.request_id,
        trace_id=event.trace_id,
        details=details,
    )
    if event.payload_digest:
        request.payload_digest.CopyFrom(
            digest_pb2.Digest(
                algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=event.payload_digest.removeprefix("sha256:")
            )
        )
    if event.actor is not None:
        a = event.actor
        request.actor.CopyFrom(
            identity_pb2.Actor(
                subject=a.subject,
                issuer=a.issuer,
                display_name=a.display_name,
                email=a.email,
                roles=list(a.roles),
                kind=identity_pb2.ACTOR_KIND_SERVICE if a.kind == "service" else identity_pb2.ACTOR_KIND_HUMAN,
            )
        )
    return request
