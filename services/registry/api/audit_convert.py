"""Proto <-> domain mapping for causeway.audit.v1 (events, filters, heads, breaks, export lines)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import json_format

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2
from causeway.common.v1 import identity_pb2
from libs.audit.events import AuditEvent, canonical_json, format_time
from libs.audit.verify import Head, Problem
from libs.errors.domain_errors import InvalidArgument
from services.registry.api.convert import digest_hex, digest_proto, from_timestamp, timestamp
from services.registry.domain.audit_chain import AppendDraft, ChainBreak, ChainHead, EventQuery

OUTCOME_TO_PROTO = {
    "success": audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
    "failure": audit_event_pb2.AUDIT_OUTCOME_FAILURE,
    "denied": audit_event_pb2.AUDIT_OUTCOME_DENIED,
}
OUTCOME_FROM_PROTO = {v: k for k, v in OUTCOME_TO_PROTO.items()}
BREAK_KIND = {
    Problem.EDITED: audit_event_pb2.CHAIN_BREAK_KIND_EDITED,
    Problem.DELETED: audit_event_pb2.CHAIN_BREAK_KIND_DELETED,
    Problem.INSERTED: audit_event_pb2.CHAIN_BREAK_KIND_INSERTED,
    Problem.REORDERED: audit_event_pb2.CHAIN_BREAK_KIND_REORDERED,
    Problem.TRUNCATED: audit_event_pb2.CHAIN_BREAK_KIND_TRUNCATED,
}
_KIND_TO_PROTO = {"user": identity_pb2.ACTOR_KIND_HUMAN, "service": identity_pb2.ACTOR_KIND_SERVICE}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}


def parse_time(value: str) -> dt.datetime | None:
    """A libs/audit time string (format_time) as a UTC datetime."""
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _actor(subject: str, info: dict[str, Any]) -> identity_pb2.Actor:
    if not subject:
        return identity_pb2.Actor()
    return identity_pb2.Actor(
        subject=subject,
        issuer=str(info.get("issuer", "")),
        display_name=str(info.get("display_name", "")),
        email=str(info.get("email", "")),
        roles=[str(r) for r in info.get("roles", [])],
        kind=_KIND_TO_PROTO.get(info.get("kind", ""), identity_pb2.ACTOR_KIND_UNSPECIFIED),
    )


def event(e: AuditEvent) -> audit_event_pb2.AuditEvent:
    message = audit_event_pb2.AuditEvent(
        sequence=e.seq,
        event_id=e.event_id,
        record_time=timestamp(parse_time(e.time)),
        occur_time=timestamp(parse_time(e.occur_time)),
        actor=_actor(e.actor, e.actor_info),
        # Only holders of audit.append (role "service") append, so the recorder is a service.
        recorded_by=_actor(e.recorded_by, {"kind": "service"}),
        service=e.service,
        action=e.action,
        subject=e.subject,
        outcome=OUTCOME_TO_PROTO.get(e.outcome, audit_event_pb2.AUDIT_OUTCOME_UNSPECIFIED),
        request_id=e.request_id,
        trace_id=e.trace_id,
        previous_hash=digest_proto(e.prev_hash),
        hash=digest_proto(e.hash),
        seal=e.seal,
    )
    if e.payload_digest:
        message.payload_digest.CopyFrom(digest_proto(e.payload_digest))
    if e.details:
        message.details.update(e.details)
    return message


def _jcs_numbers(value: Any) -> Any:
    # RFC 8785 writes numbers as ECMAScript does: a whole double has no ".0".
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _jcs_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jcs_numbers(v) for v in value]
    return value


def json_line(e: AuditEvent) -> bytes:
    """One export line: canonical JSON (sorted keys, no whitespace) of the proto3 JSON form + "\\n"."""
    body = _jcs_numbers(json.loads(json_format.MessageToJson(event(e))))
    return canonical_json(body) + b"\n"


def append_draft(request: audit_service_pb2.AppendEventRequest) -> AppendDraft:
    actor, info = "", {}
    if request.HasField("actor"):
        given = request.actor
        if not given.subject:
            raise InvalidArgument("actor.subject is required when actor is set (leave actor unset for own actions)")
        if given.kind not in _KIND_FROM_PROTO:
            raise InvalidArgument("actor.kind must be ACTOR_KIND_HUMAN or ACTOR_KIND_SERVICE")
        actor = given.subject
        info = {"display_name": given.display_name, "kind": _KIND_FROM_PROTO[given.kind], "roles": sorted(given.roles)}
        info |= {k: v for k, v in (("issuer", given.issuer), ("email", given.email)) if v}
    return AppendDraft(
        event_id=request.event_id,
        service=request.service,
        action=request.action,
        subject=request.subject,
        outcome=OUTCOME_FROM_PROTO.get(request.outcome, ""),
        actor=actor,
        actor_info=info,
        occur_time=from_timestamp(request.occur_time),
        request_id=request.request_id,
        trace_id=request.trace_id,
        payload_digest=digest_hex(request.payload_digest, "payload_digest", required=False),
        details=json_format.MessageToDict(request.details) if request.HasField("details") else {},
    )


def _time_bound(ts) -> str:
    value = from_timestamp(ts)
    return format_time(value) if value else ""


def query(flt: audit_event_pb2.EventFilter) -> EventQuery:
    if flt.outcome and flt.outcome not in OUTCOME_FROM_PROTO:
        raise InvalidArgument("filter.outcome is not a known AuditOutcome")
    return EventQuery(
        from_seq=flt.from_sequence,
        to_seq=flt.to_sequence,
        subject=flt.subject,
        actor=flt.actor_subject,
        action=flt.action,
        service=flt.service,
        outcome=OUTCOME_FROM_PROTO.get(flt.outcome, ""),
        trace_id=flt.trace_id,
        request_id=flt.request_id,
        time_start=_time_bound(flt.record_time_start),
        time_end=_time_bound(flt.record_time_end),
    )


def head(h: ChainHead) -> audit_event_pb2.ChainHead:
    return audit_event_pb2.ChainHead(
        sequence=h.seq, hash=digest_proto(h.hash), record_time=timestamp(parse_time(h.time))
    )


def anchor(request: audit_service_pb2.VerifyChainRequest) -> Head | None:
    if not request.HasField("expected_head"):
        return None
    expected = request.expected_head
    if expected.sequence < 1:
        raise InvalidArgument("expected_head.sequence must be 1 or more")
    return Head(expected.sequence, digest_hex(expected.hash, "expected_head.hash"))


def chain_break(b: ChainBreak) -> audit_event_pb2.ChainBreak:
    message = audit_event_pb2.ChainBreak(sequence=b.seq, kind=BREAK_KIND[b.problem], message=b.message)
    if b.expected_hash:
        message.expected_hash.CopyFrom(digest_proto(b.expected_hash))
    if b.actual_hash:
        message.actual_hash.CopyFrom(digest_proto(b.actual_hash))
    return message
