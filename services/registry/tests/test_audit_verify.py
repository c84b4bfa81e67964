"""VerifyChain against a real chain that the test tampers with in the database, as an attacker would."""

import threading
import uuid

import grpc
import pytest
import sqlalchemy as sa

from causeway.audit.v1 import audit_event_pb2 as ev
from causeway.audit.v1 import audit_service_pb2 as pb
from causeway.audit.v1 import audit_service_pb2_grpc as pb_grpc
from causeway.common.v1 import digest_pb2
from libs.audit.events import compute_hash
from services.registry.tests.harness import registry_harness


@pytest.fixture
def reg(tmp_path):
    with registry_harness(tmp_path) as harness:
        yield harness


@pytest.fixture
def stub(reg):
    return pb_grpc.AuditServiceStub(reg.channel)


def _append(stub, reg, n=5):
    for i in range(n):
        request = pb.AppendEventRequest(
            event_id=str(uuid.uuid4()),
            service="deployer",
            action="deployment.commit",
            subject=f"deployments/{i}",
            outcome=ev.AUDIT_OUTCOME_SUCCESS,
        )
        stub.AppendEvent(request, metadata=reg.service_md("deployer"))


def _verify(stub, reg, **fields) -> pb.VerifyChainResponse:
    return stub.VerifyChain(pb.VerifyChainRequest(**fields), metadata=reg.md("quinn", ["qa-approver"]))


def _sql(reg, *statements):
    with reg.app.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_update")
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for statement in statements:
            conn.execute(sa.text(statement))


def _stored_hash(reg, seq):
    return reg.app.audit_log.get(seq=seq).hash


def _broken(response, kind, seq):
    assert response.verdict == ev.CHAIN_VERDICT_BROKEN
    assert (response.first_break.kind, response.first_break.sequence) == (kind, seq), response.first_break.message


def test_intact_chain(reg, stub):
    _append(stub, reg)
    response = _verify(stub, reg)
    assert (response.verdict, response.events_verified, response.head.sequence) == (ev.CHAIN_VERDICT_INTACT, 5, 5)
    assert not response.HasField("first_break")
    assert _verify(stub, reg, from_sequence=3).events_verified == 3
    assert _verify(stub, reg, from_sequence=2, to_sequence=3).events_verified == 2


def test_edited_event_is_named_with_both_hashes_and_the_break_is_audited(reg, stub):
    _append(stub, reg)
    stored = _stored_hash(reg, 3)
    _sql(reg, "UPDATE audit_events SET subject = 'deployments/forged' WHERE seq = 3")
    response = _verify(stub, reg)
    _broken(response, ev.CHAIN_BREAK_KIND_EDITED, 3)
    edited = reg.app.audit_log.get(seq=3)
    assert response.first_break.actual_hash.hex == stored
    assert response.first_break.expected_hash.hex == compute_hash(edited.hashed_fields())
    # The verification that found it is itself on the chain, by whoever ran it.
    last = reg.app.audit_log.get(seq=6)
    assert (last.action, last.outcome, last.actor, last.subject) == (
        "audit_chain.verify",
        "failure",
        "quinn",
        "audit/events/3",
    )
    # From the middle, the stored hash of the event before is trusted.
    assert _verify(stub, reg, from_sequence=4, to_sequence=5).verdict == ev.CHAIN_VERDICT_INTACT
    _broken(_verify(stub, reg, from_sequence=3, to_sequence=5), ev.CHAIN_BREAK_KIND_EDITED, 3)


def test_deleted_event(reg, stub):
    _append(stub, reg)
    _sql(reg, "DELETE FROM audit_events WHERE seq = 3")
    response = _verify(stub, reg)
    _broken(response, ev.CHAIN_BREAK_KIND_DELETED, 3)
    assert response.first_break.expected_hash.hex == _stored_hash(reg, 2)
    _broken(_verify(stub, reg, from_sequence=2, to_sequence=3), ev.CHAIN_BREAK_KIND_DELETED, 3)
    _broken(_verify(stub, reg, from_sequence=4), ev.CHAIN_BREAK_KIND_DELETED, 3)


def test_reordered_events(reg, stub):
    _append(stub, reg)
    _sql(reg, "UPDATE audit_events SET row_id = 100 WHERE seq = 2")
    _broken(_verify(stub, reg), ev.CHAIN_BREAK_KIND_REORDERED, 2)
    _broken(_verify(stub, reg, from_sequence=2), ev.CHAIN_BREAK_KIND_REORDERED, 2)


def test_inserted_event(reg, stub):
    _append(stub, reg)
    columns = (
        "seq, event_id, time, occur_time, service, actor, actor_info, recorded_by, action, subject, outcome, "
        "request_id, trace_id, payload_digest, details, prev_hash, hash, seal"
    )
    _sql(reg, f"INSERT INTO audit_events ({columns}) SELECT {columns} FROM audit_events WHERE seq = 3")  # noqa: S608
    _sql(reg, "UPDATE audit_events SET row_id = 250 WHERE row_id = (SELECT max(row_id) FROM audit_events)")
    _sql(reg, "UPDATE audit_events SET row_id = row_id + 1000 WHERE seq >= 4 AND row_id < 250")
    _broken(_verify(stub, reg), ev.CHAIN_BREAK_KIND_INSERTED, 3)


def test_deleted_newest_event_is_truncation_against_the_recorded_head(reg, stub):
    _append(stub, reg)
    _sql(reg, "DELETE FROM audit_events WHERE seq = 5")
    _broken(_verify(stub, reg), ev.CHAIN_BREAK_KIND_TRUNCATED, 5)  # the head row still says 5


def test_event_written_past_the_recorded_head_is_inserted(reg, stub):
    _append(stub, reg)
    columns = (
        "event_id, time, occur_time, service, actor, actor_info, recorded_by, action, subject, outcome, "
        "request_id, trace_id, payload_digest, details, prev_hash, hash, seal"
    )
    forge = f"INSERT INTO audit_events (seq, {columns}) SELECT 6, {columns} FROM audit_events WHERE seq = 5"  # noqa: S608
    _sql(reg, forge)
    response = _verify(stub, reg)
    _broken(response, ev.CHAIN_BREAK_KIND_INSERTED, 6)
    assert "after the recorded head 5" in response.first_break.message


def test_truncation_with_a_rewound_head_is_caught_by_the_external_anchor(reg, stub):
    _append(stub, reg)
    anchor = ev.ChainHead(
        sequence=5, hash=digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=_stored_hash(reg, 5))
    )
    assert _verify(stub, reg, expected_head=anchor).verdict == ev.CHAIN_VERDICT_INTACT
    # An attacker who also rewinds the head row leaves a chain that is consistent in itself.
    rewind = f"UPDATE audit_head SET seq = 4, hash = '{_stored_hash(reg, 4)}'"  # noqa: S608 - a hex digest
    _sql(reg, "DELETE FROM audit_events WHERE seq = 5", rewind)
    assert _verify(stub, reg).verdict == ev.CHAIN_VERDICT_INTACT
    response = _verify(stub, reg, expected_head=anchor)
    _broken(response, ev.CHAIN_BREAK_KIND_TRUNCATED, 5)
    assert response.first_break.expected_hash == anchor.hash and not response.first_break.HasField("actual_hash")


def test_bad_ranges_are_invalid(reg, stub):
    for fields in (
        {"from_sequence": 3, "to_sequence": 2},
        {"from_sequence": -1},
        {"expected_head": ev.ChainHead(sequence=0)},
        {"expected_head": ev.ChainHead(sequence=2, hash=digest_pb2.Digest(hex="zz"))},
    ):
        with pytest.raises(grpc.RpcError) as err:
            _verify(stub, reg, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_appends_during_verification_are_not_mistaken_for_insertions(reg, stub):
    _append(stub, reg, 300)
    stop = threading.Event()

    def keep_appending():
        while not stop.is_set():
            _append(stub, reg, 1)

    writer = threading.Thread(target=keep_appending)
    writer.start()
    try:
        verdicts = [_verify(stub, reg).verdict for _ in range(5)]
    finally:
        stop.set()
        writer.join(30)
    assert verdicts == [ev.CHAIN_VERDICT_INTACT] * 5
