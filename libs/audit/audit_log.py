"""The audit log as the services use it: append, list with paging, verify, export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from libs.audit.events import AuditEvent, EventDraft, chain_next
from libs.audit.store import EventFilter, SqlAuditStore
from libs.audit.verify import Head, Verdict, verify_chain
from libs.errors.domain_errors import InvalidArgument

MAX_PAGE = 1000
_LIMITS = {
    "actor": 256,
    "action": 128,
    "subject": 512,
    "request_id": 128,
    "trace_id": 64,
    "service": 64,
    "recorded_by": 256,
    "payload_digest": 64,
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog:
    def __init__(
        self,
        store: SqlAuditStore,
        *,
        key: bytes | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._store = store
        self._key = key
        self._clock = clock

    def append(self, draft: EventDraft) -> AuditEvent:
        for field, limit in _LIMITS.items():
            value = getattr(draft, field)
            if len(value) > limit:
                raise InvalidArgument(f"audit {field} is longer than {limit} characters")
        if not draft.actor or not draft.action or not draft.subject:
            raise InvalidArgument("an audit event needs an actor, an action and a subject")
        try:
            return self._store.append(
                lambda seq, prev: chain_next(draft, seq=seq, prev_hash=prev, now=self._clock(), key=self._key)
            )
        except (TypeError, ValueError) as err:
            raise InvalidArgument(f"audit details must be JSON values (strings, numbers, lists, maps): {err}") from err

    def list(self, flt: EventFilter, page_size: int) -> tuple[list[AuditEvent], int]:
        """A page of events and the seq to continue after (0 when there are no more)."""
        size = min(max(page_size or 100, 1), MAX_PAGE)
        events = self._store.list(flt, size + 1)
        more = len(events) > size
        events = events[:size]
        return events, (events[-1].seq if more else 0)

    def get(self, *, seq: int = 0, event_id: str = "") -> AuditEvent | None:
        return self._store.get(seq=seq, event_id=event_id)

    def head(self) -> Head:
        return self._store.head()

    def verify(self) -> Verdict:
        return verify_chain(self._store.scan(), head=self._store.head(), key=self._key)

    def export(self) -> Iterator[str]:
        """Every event as one canonical JSON line, in chain order."""
        for event in self._store.scan():
            yield event.to_json_line()
