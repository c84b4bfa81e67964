"""The audit chain as AuditService offers it: idempotent appends by other services, filtered and
paged reads, verification of a range against an external anchor, and exports with a digest.

libs/audit holds the chain itself (events, hashes, store, verifier); this module adds what the API
promises on top: the caller's identity as `recorded_by`, `event_id` idempotency, AIP-158 page
tokens bound to the filter, and the mapping of verifier verdicts to chain breaks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from libs.audit.events import AuditEvent, EventDraft, canonical_json, chain_next, format_time
from libs.audit.store import SqlAuditStore
from libs.audit.verify import Head
from libs.auth.principal import Principal
from libs.errors.domain_errors import AlreadyExists, InvalidArgument, NotFound
from services.registry.domain.audit_verify import ChainBreak, ChainVerifier
from services.registry.domain.auditing import Auditor
from services.registry.domain.discovery import decode_token, encode_token

DEFAULT_PAGE, MAX_PAGE = 100, 1000
MAX_DETAILS_BYTES = 16 * 1024
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_TRACE = re.compile(r"^[0-9a-f]{32}$")
_LIMITS = {"actor": 256, "action": 128, "subject": 512, "request_id": 128, "recorded_by": 256}


@dataclasses.dataclass(frozen=True)
class AppendDraft:
    """An event as another service sends it; the chain adds sequence, record time, recorded_by, hashes."""

    event_id: str
    service: str
    action: str
    subject: str
    outcome: str  # "success", "failure" or "denied"
    actor: str = ""  # empty: the calling service acted on its own behalf
    actor_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    occur_time: dt.datetime | None = None
    request_id: str = ""
    trace_id: str = ""
    payload_digest: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EventQuery:
    """Filter of ListEvents/ExportEvents; set fields are ANDed. Sequences inclusive, 0 = open."""

    from_seq: int = 0
    to_seq: int = 0
    subject: str = ""  # exact, or a prefix when it ends with "/"
    actor: str = ""
    action: str = ""
    service: str = ""
    outcome: str = ""
    trace_id: str = ""
    request_id: str = ""
    time_start: str = ""  # format_time() strings: fixed width, so string order is time order
    time_end: str = ""


class EventQueries(Protocol):
    def list(self, query: EventQuery, after_seq: int, limit: int) -> list[AuditEvent]:
        """Matching events with seq > after_seq, ascending, at most `limit`."""
        ...


@dataclasses.dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: str
    time: str  # record time of that event; "" for an empty chain


@dataclasses.dataclass(frozen=True)
class Verification:
    checked: int
    head: ChainHead
    first_break: ChainBreak | None


@dataclasses.dataclass
class Export:
    """Lines first (iterate `lines`), then `summary()`: count, first/last seq, digest of all lines."""

    lines: Iterator[bytes]
    head: ChainHead
    count: int = 0
    first_seq: int = 0
    last_seq: int = 0
    sha: Any = dataclasses.field(default_factory=hashlib.sha256)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _integral(value: Any) -> Any:
    """JSON numbers from a protobuf Struct are doubles; whole ones are stored as integers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _check_text(value: str, field: str, limit: int, *, required: bool = False) -> None:
    if required and not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidArgument(f"{field} contains control characters")


class _Existing(Exception):  # control flow inside the append transaction, never escapes
    def __init__(self, event: AuditEvent) -> None:
        self.event = event


class AuditChain:
    def __init__(
        self,
        store: SqlAuditStore,
        queries: EventQueries,
        auditor: Auditor,
        *,
        key: bytes | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.queries = queries
        self.auditor = auditor
        self.key = key
        self.clock = clock
        self._append_lock = threading.Lock()  # event_id check and append, one at a time
        self.verifier = ChainVerifier(store, lambda seq: next(iter(queries.list(EventQuery(), seq, 1)), None), key)

    # ---- append ------------------------------------------------------------------------

    def _event_draft(self, caller: Principal, draft: AppendDraft, trace_id: str) -> tuple[EventDraft, str]:
        try:
            event_id = str(uuid.UUID(draft.event_id))
        except ValueError:
            raise InvalidArgument("event_id must be a UUID") from None
        if not _SERVICE.match(draft.service):
            raise InvalidArgument("service is required: a lowercase name such as 'validator'")
        if not _ACTION.match(draft.action) or len(draft.action) > _LIMITS["action"]:
            raise InvalidArgument("action must be '<resource>.<verb>' in lower snake case, e.g. 'model.load'")
        if draft.outcome not in ("success", "failure", "denied"):
            raise InvalidArgument("outcome is required")
        _check_text(draft.subject, "subject", _LIMITS["subject"], required=True)
        _check_text(draft.request_id, "request_id", _LIMITS["request_id"])
        _check_text(draft.actor, "actor.subject", _LIMITS["actor"])
        trace = draft.trace_id or trace_id
        if trace and not _TRACE.match(trace):
            raise InvalidArgument("trace_id must be 32 lowercase hexadecimal characters (W3C)")
        if draft.occur_time is not None and draft.occur_time > self.clock() + MAX_FUTURE_SKEW:
            raise InvalidArgument("occur_time is in the future")
        details = _integral(draft.details)
        try:
            size = len(canonical_json(details))
        except ValueError as err:  # NaN or infinity
            raise InvalidArgument(f"details must be finite JSON values: {err}") from None
        if size > MAX_DETAILS_BYTES:
            raise InvalidArgument(f"details are {size} bytes as JSON; at most {MAX_DETAILS_BYTES}")
        # On whose behalf: the user the calling service names, or the calling service itself.
        actor, info = draft.actor, draft.actor_info
        if not actor:
            actor = caller.subject
            info = {"display_name": caller.display, "kind": caller.kind, "roles": sorted(caller.roles)}
        event = EventDraft(
            actor=actor,
            action=draft.action,
            subject=draft.subject,
            request_id=draft.request_id,
            trace_id=trace,
            details=details,
            service=draft.service,
            outcome=draft.outcome,
            payload_digest=draft.payload_digest,
            occur_time=draft.occur_time,
            recorded_by=caller.subject,  # from the verified token, never from the request
            actor_info=_integral(info),
        )
        return event, event_id

    def append(self, caller: Principal, draft: AppendDraft, trace_id: str = "") -> tuple[AuditEvent, bool]:
        """Chain the event; return it and whether it is new. An `event_id` already in the chain
        returns the stored event if the content is the same, else ALREADY_EXISTS."""
        event_draft, event_id = self._event_draft(caller, draft, trace_id)

        def build(seq: int, prev_hash: str) -> AuditEvent:
            # Other registry replicas (PostgreSQL) may have appended the same event_id since the
            # check below: look again while this append holds the chain's row lock. (On sqlite
            # every transaction takes the write lock, so a second connection would wait for us;
            # there the registry is one process and the thread lock suffices.)
            if self.store.dialect != "sqlite":
                existing = self.store.get(event_id=event_id)
                if existing is not None:
                    raise _Existing(existing)
            return chain_next(
                event_draft, seq=seq, prev_hash=prev_hash, now=self.clock(), key=self.key, event_id=event_id
            )

        try:
            with self._append_lock:
                existing = self.store.get(event_id=event_id)
                if existing is not None:
                    raise _Existing(existing)
                return self.store.append(build), True
        except _Existing as found:
            if not _same_content(found.event, event_draft, draft):
                raise AlreadyExists(
                    f"event_id {event_id} is already in the chain (sequence {found.event.seq}) with other content"
                ) from None
            return found.event, False

    # ---- read --------------------------------------------------------------------------

    def get(self, seq: int) -> AuditEvent:
        if seq < 1:
            raise InvalidArgument("sequence must be 1 or more")
        event = self.store.get(seq=seq)
        if event is None:
            raise NotFound(f"no audit event with sequence {seq}")
        return event

    def head(self) -> ChainHead:
        head = self.store.head()
        event = self.store.get(seq=head.seq) if head.seq else None
        return ChainHead(head.seq, head.hash, event.time if event else "")

    @staticmethod
    def check_query(query: EventQuery) -> EventQuery:
        if query.from_seq < 0 or query.to_seq < 0:
            raise InvalidArgument("from_sequence and to_sequence must not be negative")
        if query.to_seq and query.from_seq > query.to_seq:
            raise InvalidArgument("from_sequence is after to_sequence")
        return query

    def list(self, query: EventQuery, page_size: int, page_token: str) -> tuple[list[AuditEvent], str]:
        """One page in ascending sequence and the token of the next ("" on the last page)."""
        self.check_query(query)
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = DEFAULT_PAGE if page_size == 0 else min(page_size, MAX_PAGE)
        bound = dataclasses.asdict(query)
        after = decode_token(bound, page_token)
        try:
            after_seq = int(after) if after is not None else 0
        except ValueError:
            raise InvalidArgument("page_token is malformed: pass next_page_token unchanged") from None
        events = self.queries.list(query, after_seq, size + 1)
        more = len(events) > size
        events = events[:size]
        return events, encode_token(bound, str(events[-1].seq)) if more else ""

    def export(self, query: EventQuery, encode: Callable[[AuditEvent], bytes]) -> Export:
        """Matching events up to the head at the start of the export, one `encode(event)` line each.

        Iterate `lines` first; the counts and digest in the returned Export fill in as it runs.
        """
        self.check_query(query)
        head = self.head()
        bounded = dataclasses.replace(query, to_seq=min(query.to_seq or head.seq, head.seq))
        export = Export(lines=iter(()), head=head)

        def lines() -> Iterator[bytes]:
            after = 0
            while bounded.to_seq:  # an empty chain exports nothing
                page = self.queries.list(bounded, after, MAX_PAGE)
                for event in page:
                    line = encode(event)
                    export.sha.update(line)
                    export.count += 1
                    export.first_seq = export.first_seq or event.seq
                    export.last_seq = event.seq
                    yield line
                if len(page) < MAX_PAGE:
                    return
                after = page[-1].seq

        export.lines = lines()
        return export

    # ---- verify ----------------------------------------------------------------------

    def verify(self, caller: Principal, from_seq: int, to_seq: int, anchor: Head | None) -> Verification:
        """Recompute hashes and links of [from_seq, to_seq] (0 = the head); a break is audited."""
        checked, found = self.verifier.verify(from_seq, to_seq, anchor)
        if found is not None:
            self.auditor.record(
                caller,
                "audit_chain.verify",
                f"audit/events/{found.seq}",
                {
                    "kind": found.problem.value,
                    "message": found.message,
                    "from_sequence": from_seq,
                    "to_sequence": to_seq,
                },
                outcome="failure",
            )
        return Verification(checked, self.head(), found)


def _same_content(stored: AuditEvent, draft: EventDraft, request: AppendDraft) -> bool:
    """Whether a retried append carries what was stored (defaults filled by the server excepted)."""
    same = (
        stored.service == draft.service
        and stored.action == draft.action
        and stored.subject == draft.subject
        and stored.outcome == draft.outcome
        and stored.actor == draft.actor
        and stored.actor_info == draft.actor_info
        and stored.recorded_by == draft.recorded_by
        and stored.request_id == draft.request_id
        and stored.payload_digest == draft.payload_digest
        and stored.details == draft.details
    )
    if request.trace_id and stored.trace_id != request.trace_id:
        return False
    if request.occur_time is not None and stored.occur_time != format_time(request.occur_time):
        return False
    return same
