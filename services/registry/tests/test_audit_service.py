"""AuditService through the real registry app and gRPC server, with real tokens and a sealed chain."""

import hashlib
import json
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from causeway.audit.v1 import audit_event_pb2 as ev
from causeway.audit.v1 import audit_service_pb2 as pb
from causeway.audit.v1 import audit_service_pb2_grpc as pb_grpc
from causeway.common.v1 import digest_pb2, identity_pb2
from libs.audit.events import AuditEvent
from libs.audit.verify import verify_chain
from services.registry.tests.harness import registry_harness

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def reg(tmp_path):
    (tmp_path / "audit.key").write_text(KEY)
    with registry_harness(tmp_path, AUDIT_KEY_FILE=str(tmp_path / "audit.key")) as harness:
        yield harness


@pytest.fixture
def stub(reg):
    return pb_grpc.AuditServiceStub(reg.channel)


def validator(reg):
    return (*reg.service_md("validator"), ("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"))


def auditor(reg):
    return reg.md("quinn", ["qa-approver"])


def _request(**fields) -> pb.AppendEventRequest:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "service": "validator",
        "action": "validation.run",
        "subject": "models/tox/versions/1",
        "outcome": ev.AUDIT_OUTCOME_SUCCESS,
        "actor": identity_pb2.Actor(
            subject="alice", display_name="Alice", roles=["researcher"], kind=identity_pb2.ACTOR_KIND_HUMAN
        ),
    }
    base.update(fields)
    return pb.AppendEventRequest(**base)


def _append(stub, reg, **fields) -> ev.AuditEvent:
    return stub.AppendEvent(_request(**fields), metadata=validator(reg)).event


def _error(call) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert isinstance(err.value, grpc.Call)
    return err.value


def test_a_service_appends_on_behalf_of_a_user(reg, stub):
    details: dict[str, Any] = {"passed": True, "checks": 12, "metrics": {"auc": 0.91}}
    request = _request(request_id="req-1", details=None)
    request.details.update(details)
    request.payload_digest.CopyFrom(digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex="ab" * 32))
    event = stub.AppendEvent(request, metadata=validator(reg)).event
    assert (event.sequence, event.event_id, event.action) == (1, request.event_id, "validation.run")
    assert (event.actor.subject, event.actor.kind, list(event.actor.roles)) == (
        "alice",
        identity_pb2.ACTOR_KIND_HUMAN,
        ["researcher"],
    )
    # Who appended comes from the caller's token, never from the request.
    assert (event.recorded_by.subject, event.recorded_by.kind) == ("service:validator", identity_pb2.ACTOR_KIND_SERVICE)
    assert (event.trace_id, event.request_id, event.payload_digest.hex) == (TRACE, "req-1", "ab" * 32)
    assert json_format.MessageToDict(event.details) == details
    assert event.previous_hash.hex == "0" * 64 and len(event.hash.hex) == 64 and len(event.seal) == 64
    assert event.record_time == event.occur_time
    assert stub.GetEvent(pb.GetEventRequest(sequence=1), metadata=auditor(reg)).event == event


def test_a_services_own_action_has_the_service_as_actor(reg, stub):
    event = _append(stub, reg, actor=None, action="model.load")
    assert (event.actor.subject, event.actor.kind) == ("service:validator", identity_pb2.ACTOR_KIND_SERVICE)


def test_appends_are_idempotent_by_event_id(reg, stub):
    request = _request()
    first = stub.AppendEvent(request, metadata=validator(reg)).event
    again = stub.AppendEvent(request, metadata=reg.service_md("validator")).event  # a retry, another trace
    assert again == first
    changed = _request(event_id=request.event_id, subject="models/other/versions/1")
    err = _error(lambda: stub.AppendEvent(changed, metadata=validator(reg)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "sequence 1" in err.details()
    by_other_service = _error(lambda: stub.AppendEvent(request, metadata=reg.service_md("deployer")))
    assert by_other_service.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stub.GetChainHead(pb.GetChainHeadRequest(), metadata=auditor(reg)).head.sequence == 1


BIG = {"blob": "x" * 17_000}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_id": ""}, "event_id must be a UUID"),
        ({"event_id": "not-a-uuid"}, "event_id must be a UUID"),
        ({"service": ""}, "service is required"),
        ({"action": "Model Load"}, "action must be"),
        ({"action": "load"}, "action must be"),
        ({"subject": ""}, "subject is required"),
        ({"subject": "models/\x00"}, "subject contains control characters"),
        ({"outcome": ev.AUDIT_OUTCOME_UNSPECIFIED}, "outcome is required"),
        ({"trace_id": "XYZ"}, "trace_id must be 32 lowercase hexadecimal"),
        ({"actor": identity_pb2.Actor(display_name="no subject")}, "actor.subject is required"),
        ({"actor": identity_pb2.Actor(subject="alice")}, "actor.kind must be"),
        ({"payload_digest": digest_pb2.Digest(hex="ab" * 32)}, "payload_digest.algorithm"),
        ({"occur_time": timestamp_pb2.Timestamp(seconds=4_000_000_000)}, "occur_time is in the future"),
        ({"details": BIG}, "at most 16384"),
    ],
)
def test_malformed_events_are_refused_and_nothing_is_chained(reg, stub, fields, message):
    request = _request(**{k: v for k, v in fields.items() if k != "details"})
    if "details" in fields:
        request.details.update(fields["details"])
    err = _error(lambda: stub.AppendEvent(request, metadata=validator(reg)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()
    assert stub.GetChainHead(pb.GetChainHeadRequest(), metadata=auditor(reg)).head.sequence == 0


def test_append_needs_a_service_and_reading_needs_audit_read(reg, stub):
    err = _error(lambda: stub.AppendEvent(_request(), metadata=reg.md("alice", ["researcher"])))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = _error(lambda: stub.ListEvents(pb.ListEventsRequest(), metadata=reg.service_md("deployer")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_get_event_codes(reg, stub):
    assert _error(lambda: stub.GetEvent(pb.GetEventRequest(sequence=0), metadata=auditor(reg))).code() == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert _error(lambda: stub.GetEvent(pb.GetEventRequest(sequence=7), metadata=auditor(reg))).code() == (
        grpc.StatusCode.NOT_FOUND
    )


def _seed(stub, reg):
    _append(stub, reg, subject="models/tox", action="model.create")
    _append(stub, reg, subject="models/tox/versions/1", outcome=ev.AUDIT_OUTCOME_FAILURE, request_id="r1")
    _append(stub, reg, subject="models/tox21/versions/1", actor=None)
    _append(stub, reg, subject="models/tox/versions/2", service="deployer", action="deployment.commit")
    _append(stub, reg, subject="models/tox/versions/2", outcome=ev.AUDIT_OUTCOME_DENIED, request_id="r1")


def _list(stub, reg, page_size=0, token="", **flt):
    request = pb.ListEventsRequest(filter=ev.EventFilter(**flt), page_size=page_size, page_token=token)
    return stub.ListEvents(request, metadata=auditor(reg))


@pytest.mark.parametrize(
    ("flt", "sequences"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"subject": "models/tox"}, [1]),
        ({"subject": "models/tox/"}, [2, 4, 5]),
        ({"actor_subject": "service:validator"}, [3]),
        ({"action": "deployment.commit"}, [4]),
        ({"service": "deployer"}, [4]),
        ({"outcome": ev.AUDIT_OUTCOME_FAILURE}, [2]),
        ({"request_id": "r1"}, [2, 5]),
        ({"trace_id": TRACE}, [1, 2, 3, 4, 5]),
        ({"trace_id": "0" * 31 + "1"}, []),
        ({"from_sequence": 2, "to_sequence": 4}, [2, 3, 4]),
        ({"record_time_start": timestamp_pb2.Timestamp(seconds=4_000_000_000)}, []),
        ({"record_time_end": timestamp_pb2.Timestamp(seconds=4_000_000_000)}, [1, 2, 3, 4, 5]),
    ],
)
def test_list_filters(reg, stub, flt, sequences):
    _seed(stub, reg)
    assert [e.sequence for e in _list(stub, reg, **flt).events] == sequences


def test_list_pages_with_tokens_bound_to_the_filter(reg, stub):
    _seed(stub, reg)
    seen, token = [], ""
    while True:
        page = _list(stub, reg, page_size=2, token=token, subject="models/")
        seen += [e.sequence for e in page.events]
        token = page.next_page_token
        if not token:
            break
        assert len(page.events) == 2
    assert seen == [1, 2, 3, 4, 5]
    token = _list(stub, reg, page_size=2, subject="models/").next_page_token
    for call, message in [
        (lambda: _list(stub, reg, page_size=2, token=token, subject="models/tox/"), "different query"),
        (lambda: _list(stub, reg, token="garbage!"), "malformed"),
        (lambda: _list(stub, reg, page_size=-1), "page_size"),
        (lambda: _list(stub, reg, from_sequence=3, to_sequence=2), "after to_sequence"),
    ]:
        err = _error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()


def test_chain_head(reg, stub):
    empty = stub.GetChainHead(pb.GetChainHeadRequest(), metadata=auditor(reg)).head
    assert (empty.sequence, empty.hash.hex, empty.record_time.seconds) == (0, "0" * 64, 0)
    _seed(stub, reg)
    last = stub.GetEvent(pb.GetEventRequest(sequence=5), metadata=auditor(reg)).event
    head = stub.GetChainHead(pb.GetChainHeadRequest(), metadata=auditor(reg)).head
    assert (head.sequence, head.hash, head.record_time) == (5, last.hash, last.record_time)


def _from_proto_json(line: bytes) -> AuditEvent:
    """What an auditor's offline tool does with an export line: back to the hashed form."""
    e = json_format.Parse(line, ev.AuditEvent())
    info = {"display_name": e.actor.display_name, "roles": list(e.actor.roles)}
    info["kind"] = "user" if e.actor.kind == identity_pb2.ACTOR_KIND_HUMAN else "service"
    details = json.loads(json.dumps(json_format.MessageToDict(e.details)), parse_float=lambda s: float(s))
    details = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in details.items()}
    return AuditEvent(
        seq=e.sequence,
        event_id=e.event_id,
        time=e.record_time.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        occur_time=e.occur_time.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        service=e.service,
        actor=e.actor.subject,
        actor_info=info,
        recorded_by=e.recorded_by.subject,
        action=e.action,
        subject=e.subject,
        outcome=ev.AuditOutcome.Name(e.outcome).removeprefix("AUDIT_OUTCOME_").lower(),
        request_id=e.request_id,
        trace_id=e.trace_id,
        payload_digest=e.payload_digest.hex,
        details=details,
        prev_hash=e.previous_hash.hex,
        hash=e.hash.hex,
        seal=e.seal,
    )


def test_export_streams_canonical_lines_and_a_summary(reg, stub):
    _seed(stub, reg)
    request = _request(details=None)
    request.details.update({"checks": 3, "name": "ok"})
    stub.AppendEvent(request, metadata=validator(reg))
    messages = list(stub.ExportEvents(pb.ExportEventsRequest(), metadata=auditor(reg)))
    lines = [m.json_line for m in messages[:-1]]
    summary = messages[-1].summary
    assert all(m.WhichOneof("content") == "json_line" for m in messages[:-1])
    assert (summary.event_count, summary.first_sequence, summary.last_sequence) == (6, 1, 6)
    assert summary.export_digest.hex == hashlib.sha256(b"".join(lines)).hexdigest()
    assert summary.head.sequence == 6
    for number, line in enumerate(lines, 1):
        assert line.endswith(b"\n")
        body = json.loads(line)
        assert line == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        listed = stub.GetEvent(pb.GetEventRequest(sequence=number), metadata=auditor(reg)).event
        assert json_format.Parse(line, ev.AuditEvent()) == listed
    assert b'"checks":3' in lines[-1]
    # The export alone is enough to verify the chain, seals included.
    assert verify_chain([_from_proto_json(line) for line in lines], key=KEY.encode()).ok
    filtered = list(
        stub.ExportEvents(pb.ExportEventsRequest(filter=ev.EventFilter(service="deployer")), metadata=auditor(reg))
    )
    assert len(filtered) == 2 and filtered[-1].summary.first_sequence == 4
