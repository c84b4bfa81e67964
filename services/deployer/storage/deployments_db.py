"""Deployments and the audit outbox in SQL (sqlite on one machine, PostgreSQL in a cluster).

`active_key` is "<model>/<env>/<cloud>" while a deployment is unfinished and NULL once it is
terminal; a unique index on it makes the database itself refuse a second deployment in progress
for the same target, across threads and replicas. Audit events are queued in the same
transaction as the state change they describe (an outbox), so a crash can never leave a change
without its event; `AuditPublisher` drains the queue to the audit chain.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from libs.errors.domain_errors import Aborted
from services.deployer.domain.ports import AuditEvent, ListFilter
from services.deployer.domain.records import Deployment
from services.deployer.storage import codec

metadata = sa.MetaData()
deployments = sa.Table(
    "deployer_deployments",
    metadata,
    sa.Column("deployment_id", sa.String(36), primary_key=True),
    sa.Column("request_id", sa.String(200), nullable=True, unique=True),
    sa.Column("model_name", sa.String(63), nullable=False),
    sa.Column("environment", sa.String(16), nullable=False),
    sa.Column("cloud", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("active_key", sa.String(120), nullable=True, unique=True),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
sa.Index("deployer_deployments_by_time", deployments.c.create_time)
outbox = sa.Table(
    "deployer_audit_outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("sent_time", sa.DateTime(timezone=True), nullable=True),
)


def _row(d: Deployment) -> dict:
    return {
        "deployment_id": d.deployment_id,
        "request_id": d.request_id or None,
        "model_name": d.model.name,
        "environment": d.environment,
        "cloud": d.cloud,
        "kind": d.kind.value,
        "state": d.state.value,
        "active_key": None if d.state.terminal else "/".join(d.target),
        "create_time": d.create_time,
        "body": codec.dumps(d),
    }


class SqlDeploymentStore:
    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, future=True)
        if url.startswith("sqlite"):
            # WAL lets readers run beside the single writer; busy_timeout queues writers.
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _queue(self, conn, events: Sequence[AuditEvent]) -> None:
        for e in events:
            conn.execute(outbox.insert().values(event_id=e.event_id, body=codec.dumps(e)))

    def create(self, deployment: Deployment, events: Sequence[AuditEvent]) -> Deployment:
        try:
            with self.engine.begin() as conn:
                conn.execute(deployments.insert().values(**_row(deployment)))
                self._queue(conn, events)
            return deployment
        except IntegrityError:
            if deployment.request_id:
                existing = self.by_request_id(deployment.request_id)
                if existing is not None:
                    return existing
            busy = self.active(*deployment.target)
            which = f" ({busy.deployment_id}, {busy.state.value})" if busy else ""
            raise Aborted(
                f"another deployment of {deployment.model.name} to {deployment.environment}/{deployment.cloud} "
                f"is in progress{which}; retry after it ends or abort it"
            ) from None

    def update(self, deployment: Deployment, events: Sequence[AuditEvent] = ()) -> None:
        row = _row(deployment)
        with self.engine.begin() as conn:
            conn.execute(
                deployments.update()
                .where(deployments.c.deployment_id == deployment.deployment_id)
                .values(state=row["state"], active_key=row["active_key"], body=row["body"])
            )
            self._queue(conn, events)

    def record_events(self, events: Sequence[AuditEvent]) -> None:
        with self.engine.begin() as conn:
            self._queue(conn, events)

    def _one(self, where) -> Deployment | None:
        with self.engine.connect() as conn:
            body = conn.execute(sa.select(deployments.c.body).where(where)).scalar()
        return codec.deployment_from_json(body) if body else None

    def get(self, deployment_id: str) -> Deployment | None:
        return self._one(deployments.c.deployment_id == deployment_id)

    def by_request_id(self, request_id: str) -> Deployment | None:
        return self._one(deployments.c.request_id == request_id)

    def active(self, model_name: str, environment: str, cloud: str) -> Deployment | None:
        return self._one(deployments.c.active_key == f"{model_name}/{environment}/{cloud}")

    def unfinished(self) -> list[Deployment]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deployments.c.body)
                .where(deployments.c.active_key.is_not(None))
                .order_by(deployments.c.create_time)
            )
            return [codec.deployment_from_json(r[0]) for r in rows]

    def list(self, flt: ListFilter, offset: int, limit: int) -> list[Deployment]:
        query = sa.select(deployments.c.body)
        for column, value in (
            (deployments.c.model_name, flt.model_name),
            (deployments.c.environment, flt.environment),
            (deployments.c.cloud, flt.cloud),
            (deployments.c.kind, flt.kind),
            (deployments.c.state, flt.state.value if flt.state else ""),
        ):
            if value:
                query = query.where(column == value)
        query = (
            query.order_by(deployments.c.create_time.desc(), deployments.c.deployment_id).offset(offset).limit(limit)
        )
        with self.engine.connect() as conn:
            return [codec.deployment_from_json(r[0]) for r in conn.execute(query)]

    # ---- the outbox ------------------------------------------------------------------------
    def pending_events(self, limit: int = 100) -> builtins.list[tuple[int, AuditEvent]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox.c.seq, outbox.c.body)
                .where(outbox.c.sent_time.is_(None))
                .order_by(outbox.c.seq)
                .limit(limit)
            )
            return [(seq, codec.event_from_json(body)) for seq, body in rows]

    def mark_sent(self, seqs: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.seq.in_(list(seqs))).values(sent_time=dt.datetime.now(dt.UTC)))

    def all_events(self) -> builtins.list[AuditEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.c.body).order_by(outbox.c.seq))
            return [codec.event_from_json(r[0]) for r in rows]
