"""The run store on SQLAlchemy Core: sqlite by default (one file in the data dir), PostgreSQL at scale.

Three tables: runs (one row per run, the mutable fields updated in place), run_events (append-only,
sequence per run) and reports (the exact canonical JSON bytes recorded in the registry).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event

from services.validator.domain import runs as r

metadata = sa.MetaData()

runs_table = sa.Table(
    "validation_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("request_fingerprint", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(63), nullable=False, index=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("policy_name", sa.String(64), nullable=False),
    sa.Column("policy_digest", sa.String(64), nullable=False),
    sa.Column("environment", sa.String(8), nullable=False),
    sa.Column("champion_name", sa.String(63), nullable=True),
    sa.Column("champion_version", sa.BigInteger, nullable=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("checks", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("report_digest", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finish_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("record_time", sa.DateTime(timezone=True), nullable=True),
)

events_table = sa.Table(
    "validation_run_events",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("validation_runs.run_id"), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)

reports_table = sa.Table(
    "validation_reports",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("validation_runs.run_id"), primary_key=True),
    sa.Column("report_digest", sa.String(64), nullable=False),
    sa.Column("report_json", sa.LargeBinary, nullable=False),
)


def create_engine(url: str) -> sa.Engine:
    """An engine; on sqlite: WAL, a busy timeout and IMMEDIATE transactions so writers queue."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")
            dbapi_conn.execute("PRAGMA foreign_keys = ON")

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@overload
def _utc(value: dt.datetime) -> dt.datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # sqlite hands back naive datetimes; everything stored is UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _row(run: r.Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "request_id": run.request_id,
        "request_fingerprint": run.request_fingerprint,
        "model_name": run.model_name,
        "version": run.version,
        "artifact_digest": run.artifact_digest,
        "format": run.format,
        "policy_name": run.policy_name,
        "policy_digest": run.policy_digest,
        "environment": run.environment,
        "champion_name": run.champion[0] if run.champion else None,
        "champion_version": run.champion[1] if run.champion else None,
        "state": run.state,
        "verdict": run.verdict,
        "checks": json.dumps([dataclasses.asdict(c) for c in run.checks]),
        "requested_by": json.dumps(dataclasses.asdict(run.requested_by)),
        "report_digest": run.report_digest,
        "message": run.message,
        "create_time": run.create_time,
        "start_time": run.start_time,
        "finish_time": run.finish_time,
        "record_time": run.record_time,
    }


def _run(row: Any) -> r.Run:
    actor = json.loads(row.requested_by)
    actor["roles"] = tuple(actor.get("roles", ()))
    actor["teams"] = tuple(actor.get("teams", ()))
    return r.Run(
        run_id=row.run_id,
        request_id=row.request_id,
        request_fingerprint=row.request_fingerprint,
        model_name=row.model_name,
        version=int(row.version),
        artifact_digest=row.artifact_digest,
        format=row.format,
        policy_name=row.policy_name,
        policy_digest=row.policy_digest,
        environment=row.environment,
        champion=(row.champion_name, int(row.champion_version)) if row.champion_name else None,
        state=row.state,
        checks=[r.CheckProgress(**c) for c in json.loads(row.checks)],
        requested_by=r.Actor(**actor),
        create_time=_utc(row.create_time),
        verdict=row.verdict,
        report_digest=row.report_digest,
        message=row.message,
        start_time=_utc(row.start_time),
        finish_time=_utc(row.finish_time),
        record_time=_utc(row.record_time),
    )


class SqlRunStore:
    """RunStore on SQLAlchemy; creates its tables on first use."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def create(self, run: r.Run) -> r.Run:
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(runs_table).where(runs_table.c.request_id == run.request_id)).first()
            if existing is not None:
                return _run(existing)
            conn.execute(runs_table.insert().values(**_row(run)))
        return run

    def get(self, run_id: str) -> r.Run | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.run_id == run_id)).first()
        return _run(row) if row is not None else None

    def save(self, run: r.Run) -> None:
        values = _row(run)
        for immutable in ("run_id", "request_id", "request_fingerprint", "create_time"):
            values.pop(immutable)
        with self.engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.run_id == run.run_id).values(**values))

    def append_event(self, run_id: str, time: dt.datetime, kind: str, data: dict[str, Any]) -> r.Event:
        with self.engine.begin() as conn:
            last = conn.execute(
                sa.select(sa.func.max(events_table.c.sequence)).where(events_table.c.run_id == run_id)
            ).scalar()
            sequence = int(last or 0) + 1
            conn.execute(
                events_table.insert().values(
                    run_id=run_id, sequence=sequence, time=time, kind=kind, data=json.dumps(data, sort_keys=True)
                )
            )
        return r.Event(run_id, sequence, time, kind, data)

    def events(self, run_id: str, after: int) -> list[r.Event]:
        query = (
            sa.select(events_table)
            .where(events_table.c.run_id == run_id, events_table.c.sequence > after)
            .order_by(events_table.c.sequence)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [r.Event(row.run_id, int(row.sequence), _utc(row.time), row.kind, json.loads(row.data)) for row in rows]

    def save_report(self, run_id: str, report_json: bytes, report_digest: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(reports_table.delete().where(reports_table.c.run_id == run_id))
            conn.execute(
                reports_table.insert().values(run_id=run_id, report_digest=report_digest, report_json=report_json)
            )

    def report(self, run_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(reports_table.c.report_json).where(reports_table.c.run_id == run_id)).first()
        return bytes(row.report_json) if row is not None else None

    def list(self, flt: r.RunFilter, limit: int, after: tuple[dt.datetime, str] | None) -> Sequence[r.Run]:
        c = runs_table.c
        query = sa.select(runs_table)
        if flt.model_name:
            query = query.where(c.model_name == flt.model_name)
        if flt.version:
            query = query.where(c.version == flt.version)
        if flt.state:
            query = query.where(c.state == flt.state)
        if flt.policy_name:
            query = query.where(c.policy_name == flt.policy_name)
        if after is not None:
            at, run_id = after
            query = query.where(sa.or_(c.create_time < at, sa.and_(c.create_time == at, c.run_id < run_id)))
        query = query.order_by(c.create_time.desc(), c.run_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run(row) for row in conn.execute(query).all()]

    def unfinished(self) -> Sequence[r.Run]:
        query = sa.select(runs_table).where(runs_table.c.state.in_([r.QUEUED, r.RUNNING]))
        with self.engine.connect() as conn:
            return [_run(row) for row in conn.execute(query).all()]
