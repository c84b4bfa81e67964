"""Filtered reads of the audit chain's table for ListEvents and ExportEvents.

libs/audit's store filters by subject prefix only; AuditService also matches a subject exactly
(EventFilter.subject without a trailing "/"), so the query is built here on the same table.
"""

from __future__ import annotations

import dataclasses
import json

import sqlalchemy as sa

from libs.audit.events import AuditEvent
from libs.audit.store import events_table
from services.registry.domain.audit_chain import EventQuery

_JSON_COLUMNS = ("details", "actor_info")
_EXACT = ("action", "service", "outcome", "trace_id", "request_id", "actor")


def _event(row: sa.Row) -> AuditEvent:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(AuditEvent)}
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    return AuditEvent(**values)


class SqlEventQueries:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def list(self, query: EventQuery, after_seq: int, limit: int) -> list[AuditEvent]:
        """Matching events with seq > after_seq (and >= from_seq), ascending, at most `limit`."""
        c = events_table.c
        select = sa.select(events_table).where(c.seq > max(after_seq, query.from_seq - 1))
        if query.to_seq:
            select = select.where(c.seq <= query.to_seq)
        for column in _EXACT:
            value = getattr(query, column)
            if value:
                select = select.where(c[column] == value)
        if query.subject.endswith("/"):
            escaped = query.subject.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            select = select.where(c.subject.like(escaped + "%", escape="\\"))
        elif query.subject:
            select = select.where(c.subject == query.subject)
        # Record times are fixed-width RFC 3339 UTC strings: string order is time order.
        if query.time_start:
            select = select.where(c.time >= query.time_start)
        if query.time_end:
            select = select.where(c.time < query.time_end)
        with self.engine.connect() as conn:
            return [_event(row) for row in conn.execute(select.order_by(c.seq, c.row_id).limit(limit))]
