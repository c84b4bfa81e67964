"""Audit events and their hash chain (no storage, no gRPC).

Each event records who did what to which subject, when, under which request and trace id, and
the hash of the event before it. The hash is sha256 over a canonical JSON encoding of every field
but the hash itself; when the chain has a sealing key, each hash is also sealed with HMAC-SHA256 so
that someone who can write to the database but does not hold the key cannot recompute a
consistent chain after an edit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def format_time(t: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds, the one time format inside hashed records."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


OUTCOMES = ("success", "failure", "denied")


@dataclasses.dataclass(frozen=True)
class EventDraft:
    """What a caller asks to record; the chain adds sequence, id, record time and hashes.

    `actor` is the verified subject who acted; `actor_info` its display name, kind and roles;
    `recorded_by` the service identity that wrote the event (differs from the actor when a
    service records on a user's behalf).
    """

    actor: str
    action: str
    subject: str
    request_id: str = ""
    trace_id: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    service: str = ""
    outcome: str = "success"
    payload_digest: str = ""
    occur_time: dt.datetime | None = None
    recorded_by: str = ""
    actor_info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    seq: int
    event_id: str
    time: str
    occur_time: str
    service: str
    actor: str
    actor_info: dict[str, Any]
    recorded_by: str
    action: str
    subject: str
    outcome: str
    request_id: str
    trace_id: str
    payload_digest: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    seal: str = ""

    def hashed_fields(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        del body["hash"], body["seal"]
        return body

    def to_json_line(self) -> str:
        return canonical_json(dataclasses.asdict(self)).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.name != "seal"]
        if missing:
            raise ValueError(f"missing fields {', '.join(missing)}")
        return cls(**{f.name: data.get(f.name, "") for f in dataclasses.fields(cls)})


def compute_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def compute_seal(key: bytes | None, event_hash: str) -> str:
    if not key:
        return ""
    return hmac.new(key, event_hash.encode(), hashlib.sha256).hexdigest()


def chain_next(
    draft: EventDraft,
    *,
    seq: int,
    prev_hash: str,
    now: dt.datetime,
    key: bytes | None = None,
    event_id: str = "",
) -> AuditEvent:
    """The event that follows `prev_hash` at position `seq`."""
    if draft.outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    fields: dict[str, Any] = {
        "seq": seq,
        "event_id": event_id or str(uuid.uuid4()),
        "time": format_time(now),
        "occur_time": format_time(draft.occur_time or now),
        "service": draft.service,
        "actor": draft.actor,
        "actor_info": draft.actor_info,
        "recorded_by": draft.recorded_by,
        "action": draft.action,
        "subject": draft.subject,
        "outcome": draft.outcome,
        "request_id": draft.request_id,
        "trace_id": draft.trace_id,
        "payload_digest": draft.payload_digest,
        "details": draft.details,
        "prev_hash": prev_hash,
    }
    canonical_json(draft.details)  # fail early on values that cannot be hashed canonically
    canonical_json(draft.actor_info)
    event_hash = compute_hash(fields)
    return AuditEvent(**fields, hash=event_hash, seal=compute_seal(key, event_hash))
