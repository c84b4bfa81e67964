"""Drains a service's audit outbox into the audit chain (causeway.audit.v1.AuditService).

A service records each audit event in an outbox in the same step as the action (the deployer in
its own database transaction, the runner in a local SQLite file), and this publisher appends
outbox events in order, with their event_id as the chain's idempotency key: a retry after a lost
response never duplicates an event, and while the chain is unreachable events wait in the
outbox, so no action is ever without its event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2, audit_service_pb2_grpc
from causeway.common.v1 import digest_pb2, identity_pb2
from libs.audit.local_outbox import OutboxEvent

log = logging.getLogger("causeway.audit.publisher")


def append_request(
    *,
    event_id: str,
    occur_time: dt.datetime,
    service: str,
    action: str,
    subject: str,
    outcome: str,
    details: dict[str, Any],
    actor: identity_pb2.Actor | None = None,
    request_id: str = "",
    trace_id: str = "",
    payload_digest: str = "",
) -> audit_service_pb2.AppendEventRequest:
    """An AppendEventRequest; `outcome` SUCCESS/FAILURE/DENIED, `payload_digest` "sha256:<hex>"."""
    occur = timestamp_pb2.Timestamp()
    occur.FromDatetime(occur_time)
    struct = struct_pb2.Struct()
    json_format.ParseDict(details, struct)
    request = audit_service_pb2.AppendEventRequest(
        event_id=event_id,
        occur_time=occur,
        service=service,
        action=action,
        subject=subject,
        outcome=audit_event_pb2.AuditOutcome.Value(f"AUDIT_OUTCOME_{outcome}"),
        request_id=request_id,
        trace_id=trace_id,
        details=struct,
    )
    if actor is not None:
        request.actor.CopyFrom(actor)
    if payload_digest:
        request.payload_digest.CopyFrom(
            digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=payload_digest.removeprefix("sha256:"))
        )
    return request


def actor_kind(kind: str) -> identity_pb2.ActorKind.ValueType:
    """identity_pb2.ActorKind of a Principal's kind ("service" or a user)."""
    return identity_pb2.ACTOR_KIND_SERVICE if kind == "service" else identity_pb2.ACTOR_KIND_HUMAN


def outbox_event_request(event: OutboxEvent, service: str) -> audit_service_pb2.AppendEventRequest:
    """The AppendEventRequest for a LocalOutbox event recorded by `service`."""
    actor = None
    if event.actor_subject:
        actor = identity_pb2.Actor(
            subject=event.actor_subject,
            display_name=event.actor_name,
            roles=list(event.actor_roles),
            kind=actor_kind(event.actor_kind),
        )
    return append_request(
        event_id=event.event_id,
        occur_time=event.occur_time,
        service=service,
        action=event.action,
        subject=event.subject,
        outcome=event.outcome,
        details=event.details,
        actor=actor,
        request_id=event.request_id,
        trace_id=event.trace_id,
    )


class Outbox(Protocol):
    def pending_events(self) -> list[tuple[int, Any]]:
        """Unsent events in the order they were recorded, with their outbox sequence."""

    def mark_sent(self, seqs: list[int]) -> None: ...


class AuditPublisher:
    def __init__(
        self,
        outbox: Outbox,
        channel: grpc.Channel,
        metadata: Callable[[], Sequence[tuple[str, str]]],
        to_request: Callable[[Any], audit_service_pb2.AppendEventRequest],
        *,
        interval: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self._stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        self._metadata = metadata
        self._to_request = to_request
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="audit-outbox", daemon=True)

    def start(self) -> AuditPublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background loop, then try once more to send what is pending."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()

    def poke(self) -> None:
        """Send soon (after an event was recorded)."""
        self._wake.set()

    def flush(self) -> int:
        """Send what is pending now, in order, stopping at the first failure; returns how many remain."""
        with self._lock:
            pending = self.outbox.pending_events()
            sent = []
            for seq, event in pending:
                try:
                    self._stub.AppendEvent(
                        self._to_request(event), metadata=tuple(self._metadata()), timeout=self._timeout
                    )
                except grpc.RpcError as err:
                    log.warning("audit append failed; will retry", extra={"outbox_seq": seq, "error": str(err)})
                    break
                sent.append(seq)
            if sent:
                self.outbox.mark_sent(sent)
            return len(pending) - len(sent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep draining; the outbox keeps the events
                log.exception("audit outbox")
