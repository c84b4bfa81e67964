"""LocalOutbox (durable, ordered) and AuditPublisher against the real registry's audit chain."""

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2, audit_service_pb2_grpc
from libs.audit.local_outbox import LocalOutbox, OutboxEvent
from libs.audit.publisher import AuditPublisher, outbox_event_request
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.testing.registry_process import registry_process


def _event(n: int, **kw: Any) -> OutboxEvent:
    return OutboxEvent(action="model.load", subject=f"models/m/versions/{n}", details={"n": n}, **kw)


def test_recorded_events_survive_a_reopen_in_order_until_marked_sent(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = LocalOutbox(path)
    events = [_event(i, actor_subject="alice", actor_roles=("researcher",)) for i in range(3)]
    for event in events:
        outbox.record(event)
    outbox.close()
    reopened = LocalOutbox(path)  # as after a crash and restart
    pending = reopened.pending_events()
    assert [e for _, e in pending] == events
    reopened.mark_sent([pending[0][0]])
    assert [e.event_id for _, e in reopened.pending_events()] == [events[1].event_id, events[2].event_id]
    assert reopened.count_pending() == 2


def test_sent_events_are_pruned_but_unsent_ones_never(tmp_path: Path) -> None:
    outbox = LocalOutbox(tmp_path / "outbox.sqlite", keep_sent=2)
    for i in range(6):
        outbox.record(_event(i))
    seqs = [seq for seq, _ in outbox.pending_events()]
    outbox.mark_sent(seqs[:5])
    with sqlite3.connect(str(tmp_path / "outbox.sqlite")) as db:
        rows = db.execute("SELECT seq, sent FROM outbox ORDER BY seq").fetchall()
    assert rows == [(seqs[3], 1), (seqs[4], 1), (seqs[5], 0)]


def test_events_without_action_or_with_an_unknown_outcome_are_refused() -> None:
    with pytest.raises(ValueError, match="outcome"):
        OutboxEvent(action="model.load", subject="models/m", outcome="MAYBE")
    with pytest.raises(ValueError, match="action and a subject"):
        OutboxEvent(action="", subject="models/m")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevIdentityProvider, grpc.Channel]]:
    tmp = tmp_path_factory.mktemp("audit-registry")
    idp = DevIdentityProvider(tmp / "idp")
    with registry_process(tmp / "registry", idp) as proc:
        channel = grpc.insecure_channel(proc.address)
        yield idp, channel
        channel.close()


def _chain(idp: DevIdentityProvider, channel: grpc.Channel, subject_prefix: str) -> list[audit_event_pb2.AuditEvent]:
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    md = bearer(idp.issue("auditor", ["reviewer"]))
    events = stub.ListEvents(audit_service_pb2.ListEventsRequest(page_size=100), metadata=md).events
    return [e for e in events if e.subject.startswith(subject_prefix)]


def test_the_publisher_appends_in_order_once_and_waits_while_the_chain_is_unreachable(
    registry: tuple[DevIdentityProvider, grpc.Channel], tmp_path: Path
) -> None:
    idp, channel = registry
    outbox = LocalOutbox(tmp_path / "outbox.sqlite")
    when = dt.datetime(2026, 11, 22, 1, 2, 3, tzinfo=dt.UTC)
    first = OutboxEvent(
        action="model.load",
        subject="models/pub/versions/1",
        outcome="FAILURE",
        details={"reason": "gates blocked", "environment": "prod"},
        actor_subject="alice",
        actor_kind="user",
        actor_roles=("release-manager",),
        request_id="req-1",
        occur_time=when,
    )
    second = OutboxEvent(action="model.unload", subject="models/pub/versions/2")
    outbox.record(first)
    outbox.record(second)
    service_md = lambda: bearer(idp.service_token("gpu-runner"))  # noqa: E731
    to_request = lambda e: outbox_event_request(e, "gpu-runner")  # noqa: E731

    with grpc.insecure_channel("127.0.0.1:1") as nowhere:
        down = AuditPublisher(outbox, nowhere, service_md, to_request, timeout=1)
        assert down.flush() == 2  # nothing lost while the chain cannot be reached
    assert outbox.count_pending() == 2

    publisher = AuditPublisher(outbox, channel, service_md, to_request)
    assert publisher.flush() == 0
    assert publisher.flush() == 0  # nothing left, nothing sent twice
    chained = _chain(idp, channel, "models/pub/")
    assert [(e.action, e.subject) for e in chained] == [
        ("model.load", "models/pub/versions/1"),
        ("model.unload", "models/pub/versions/2"),
    ]
    load = chained[0]
    assert load.service == "gpu-runner" and load.outcome == audit_event_pb2.AUDIT_OUTCOME_FAILURE
    assert load.actor.subject == "alice" and list(load.actor.roles) == ["release-manager"]
    assert load.details["reason"] == "gates blocked" and load.request_id == "req-1"
    assert load.occur_time.ToDatetime(tzinfo=dt.UTC) == when
    assert load.event_id == first.event_id and load.recorded_by.subject

    # A resend of an event the chain already holds (a lost response) is not duplicated.
    again = LocalOutbox(tmp_path / "again.sqlite")
    again.record(first)
    assert AuditPublisher(again, channel, service_md, to_request).flush() == 0
    assert len(_chain(idp, channel, "models/pub/versions/1")) == 1
