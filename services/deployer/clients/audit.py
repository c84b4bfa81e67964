"""Drains the deployer's audit outbox into the audit chain (causeway.audit.v1.AuditService).

Events are appended in outbox order with their own event_id, which the chain treats as an
idempotency key: a retry after a lost response never duplicates an event. While the chain is
unreachable, events wait in the outbox (in the same database as the deployments), so no change
is ever without its audit event.
"""

from __future__ import annotations

import logging
import threading

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2, audit_service_pb2_grpc
from causeway.common.v1 import digest_pb2, identity_pb2
from libs.auth.client_tokens import FileTokenSource
from services.deployer.domain.ports import AuditEvent
from services.deployer.storage.deployments_db import SqlDeploymentStore

log = logging.getLogger("causeway.deployer.audit")


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


class AuditPublisher:
    def __init__(
        self,
        store: SqlDeploymentStore,
        channel: grpc.Channel,
        tokens: FileTokenSource,
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self._stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        self._tokens = tokens
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="audit-outbox", daemon=True)

    def start(self) -> AuditPublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()

    def poke(self) -> None:
        self._wake.set()

    def flush(self) -> int:
        """Send what is pending now; returns how many events remain unsent."""
        with self._lock:
            pending = self.store.pending_events()
            sent = []
            for seq, event in pending:
                try:
                    self._stub.AppendEvent(to_request(event), metadata=self._tokens.metadata(), timeout=10)
                except grpc.RpcError as err:
                    log.warning(
                        "audit append failed; will retry", extra={"event_id": event.event_id, "error": str(err)}
                    )
                    break
                sent.append(seq)
            if sent:
                self.store.mark_sent(sent)
            return len(pending) - len(sent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep draining; the outbox keeps the events
                log.exception("audit outbox")
