"""The audit store on a real PostgreSQL server: DB-level append-only guards, gap-free appends."""

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from libs.audit.audit_log import AuditLog
from libs.audit.events import EventDraft
from libs.audit.store import EventFilter, SqlAuditStore
from libs.audit.verify import Problem
from libs.testing.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def url(pg: PostgresServer, request: pytest.FixtureRequest) -> str:
    return pg.create_database(request.node.name.lower().replace("[", "_").replace("]", ""))


def test_update_delete_and_truncate_are_refused_by_the_database(url: str) -> None:
    log = AuditLog(SqlAuditStore(url))
    log.append(EventDraft(actor="alice", action="model.register", subject="models/a"))
    engine = sa.create_engine(url)
    for statement, op in [
        ("UPDATE audit_events SET actor = 'mallory'", "UPDATE"),
        ("DELETE FROM audit_events", "DELETE"),
        ("TRUNCATE audit_events", "TRUNCATE"),
    ]:
        with pytest.raises(sa.exc.DatabaseError, match=f"append-only: {op} refused"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert log.verify().ok


def test_concurrent_appends_from_two_stores_are_gap_free(url: str) -> None:
    # Two store instances = two service replicas sharing one database.
    logs = [AuditLog(SqlAuditStore(url)), AuditLog(SqlAuditStore(url))]

    def worker(w: int) -> None:
        for i in range(20):
            logs[w % 2].append(EventDraft(actor=f"u{w}", action="a", subject=f"s/{i}"))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events, _ = logs[0].list(EventFilter(), 1000)
    assert [e.seq for e in events] == list(range(1, 81))
    assert logs[1].verify().ok


def test_tampering_by_a_superuser_is_detected(url: str) -> None:
    log = AuditLog(SqlAuditStore(url), key=b"k")
    for i in range(5):
        log.append(EventDraft(actor="alice", action="approval.sign", subject=f"models/m/versions/{i}"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.exec_driver_sql("UPDATE audit_events SET subject = 'models/other' WHERE seq = 3")
    verdict = log.verify()
    assert (verdict.problem, verdict.seq) == (Problem.EDITED, 3)
