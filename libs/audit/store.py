"""Append-only SQL storage of the audit chain (sqlite by default, PostgreSQL in clusters).

Appends are serialized (sqlite: BEGIN IMMEDIATE; PostgreSQL: the head row is locked FOR UPDATE)
so sequence numbers are gap-free under concurrency. The database itself refuses UPDATE and DELETE
on the events table with triggers (and TRUNCATE on PostgreSQL), so even a buggy service cannot
rewrite history; the verifier catches anyone who removes the triggers first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from libs.audit.events import GENESIS, AuditEvent
from libs.audit.verify import Head

metadata = sa.MetaData()

events_table = sa.Table(
    "audit_events",
    metadata,
    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),
    sa.Column("event_id", sa.String(64), nullable=False, index=True),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("occur_time", sa.String(40), nullable=False),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False, index=True),
    sa.Column("actor_info", sa.Text, nullable=False),
    sa.Column("recorded_by", sa.String(256), nullable=False),
    sa.Column("action", sa.String(128), nullable=False, index=True),
    sa.Column("subject", sa.String(512), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False, index=True),
    sa.Column("trace_id", sa.String(64), nullable=False, index=True),
    sa.Column("payload_digest", sa.String(64), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("seal", sa.String(64), nullable=False),
)

head_table = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
]

_POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION audit_events_refuse() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP; END
       $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
    """CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION audit_events_refuse()""",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse()""",
]


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Conjunction of the set fields; `after_seq`/`to_seq` bound the sequence (exclusive/inclusive)."""

    actor: str = ""
    action: str = ""
    subject_prefix: str = ""
    service: str = ""
    outcome: str = ""
    request_id: str = ""
    trace_id: str = ""
    after_seq: int = 0
    to_seq: int = 0
    time_start: str = ""
    time_end: str = ""


_JSON_COLUMNS = ("details", "actor_info")


def _row_to_event(row: sa.Row[Any]) -> AuditEvent:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(AuditEvent)}
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    return AuditEvent(**values)


def _event_to_row(event: AuditEvent) -> dict[str, Any]:
    values = dataclasses.asdict(event)
    for column in _JSON_COLUMNS:
        values[column] = json.dumps(values[column], sort_keys=True, separators=(",", ":"))
    return values


def _use_immediate_transactions(engine: sa.Engine) -> None:
    """Make every sqlite transaction BEGIN IMMEDIATE: one writer at a time, no lost appends."""

    @sa_event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:  # a DB-API (sqlite3) connection
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout = 30000")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlAuditStore:
    """The chain in two tables: `audit_events` (append-only) and `audit_head` (one row)."""

    def __init__(self, url: str = "", *, engine: sa.Engine | None = None) -> None:
        # A caller that passes its own engine owns its transaction setup (see services' storage/db.py).
        self.engine = engine or sa.create_engine(url, future=True, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        if engine is None and self.dialect == "sqlite":
            _use_immediate_transactions(self.engine)
        self._create()

    def _create(self) -> None:
        metadata.create_all(self.engine)
        guards = _POSTGRES_GUARDS if self.dialect == "postgresql" else _SQLITE_GUARDS
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Serialize concurrent first starts of several replicas creating the triggers.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74207421)")
            for statement in guards:
                conn.execute(sa.text(statement))
            if conn.execute(sa.select(head_table.c.id)).first() is None:
                conn.execute(head_table.insert().values(id=1, seq=0, hash=GENESIS))

    def append(self, build: Callable[[int, str], AuditEvent]) -> AuditEvent:
        """Append `build(next_seq, prev_hash)` atomically after the current head."""
        with self.engine.begin() as conn:
            query = sa.select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            seq, prev_hash = conn.execute(query).one()
            event = build(seq + 1, prev_hash)
            if event.seq != seq + 1 or event.prev_hash != prev_hash:
                raise ValueError("built event does not follow the head")
            conn.execute(events_table.insert().values(**_event_to_row(event)))
            conn.execute(head_table.update().where(head_table.c.id == 1).values(seq=event.seq, hash=event.hash))
        return event

    def head(self) -> Head:
        with self.engine.connect() as conn:
            seq, hash_ = conn.execute(sa.select(head_table.c.seq, head_table.c.hash)).one()
        return Head(seq=seq, hash=hash_)

    def get(self, *, seq: int = 0, event_id: str = "") -> AuditEvent | None:
        column, value = (events_table.c.seq, seq) if seq else (events_table.c.event_id, event_id)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events_table).where(column == value).order_by(events_table.c.row_id)).first()
        return None if row is None else _row_to_event(row)

    def scan(self, batch: int = 1000) -> Iterator[AuditEvent]:
        """Every event in storage order, streamed in batches (the verifier's input)."""
        last_row = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(events_table)
                    .where(events_table.c.row_id > last_row)
                    .order_by(events_table.c.row_id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield _row_to_event(row)
            last_row = rows[-1].row_id

    def list(self, flt: EventFilter, limit: int) -> list[AuditEvent]:
        """Events matching `flt` with seq > flt.after_seq, oldest first, at most `limit`."""
        query = sa.select(events_table).where(events_table.c.seq > flt.after_seq)
        if flt.actor:
            query = query.where(events_table.c.actor == flt.actor)
        for column in ("action", "service", "outcome", "request_id", "trace_id"):
            value = getattr(flt, column)
            if value:
                query = query.where(events_table.c[column] == value)
        if flt.to_seq:
            query = query.where(events_table.c.seq <= flt.to_seq)
        # Times are fixed-width RFC 3339 UTC strings, so string order is time order.
        if flt.time_start:
            query = query.where(events_table.c.time >= flt.time_start)
        if flt.time_end:
            query = query.where(events_table.c.time < flt.time_end)
        if flt.subject_prefix:
            escaped = flt.subject_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(events_table.c.subject.like(escaped + "%", escape="\\"))
        query = query.order_by(events_table.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_event(row) for row in conn.execute(query)]
