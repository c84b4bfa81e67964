import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from libs.audit.audit_log import AuditLog
from libs.audit.events import EventDraft
from libs.audit.store import EventFilter, SqlAuditStore
from libs.audit.verify import Problem
from libs.errors.domain_errors import InvalidArgument

KEY = b"audit-key-for-tests"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def log(db_url: str) -> AuditLog:
    return AuditLog(SqlAuditStore(db_url), key=KEY)


def _draft(i: int, actor: str = "alice") -> EventDraft:
    return EventDraft(actor=actor, action="model.register", subject=f"models/m{i % 3}/versions/{i}", details={"i": i})


def test_concurrent_appends_are_gap_free_and_verify(log: AuditLog) -> None:
    def worker(w: int) -> None:
        for i in range(25):
            log.append(_draft(i, actor=f"user{w}"))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events, next_after = log.list(EventFilter(), 1000)
    assert [e.seq for e in events] == list(range(1, 101))
    assert next_after == 0
    verdict = log.verify()
    assert verdict.ok and verdict.checked == 100


def test_database_refuses_update_and_delete(log: AuditLog, db_url: str) -> None:
    log.append(_draft(1))
    engine = sa.create_engine(db_url)
    with pytest.raises(sa.exc.DatabaseError, match="append-only: UPDATE refused"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory'")
    with pytest.raises(sa.exc.DatabaseError, match="append-only: DELETE refused"), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_events")
    assert log.verify().ok


def _attack(db_url: str, *statements: str) -> None:
    """What someone with database admin rights would do: drop the guards, then rewrite rows."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
        for statement in statements:
            conn.exec_driver_sql(statement)


def test_edited_row_is_detected(log: AuditLog, db_url: str) -> None:
    for i in range(6):
        log.append(_draft(i))
    _attack(db_url, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")
    verdict = log.verify()
    assert (verdict.ok, verdict.problem, verdict.seq) == (False, Problem.EDITED, 4)


def test_deleted_row_is_detected(log: AuditLog, db_url: str) -> None:
    for i in range(6):
        log.append(_draft(i))
    _attack(db_url, "DELETE FROM audit_events WHERE seq = 2")
    verdict = log.verify()
    assert (verdict.problem, verdict.seq) == (Problem.DELETED, 2)


def test_deleted_newest_row_is_detected(log: AuditLog, db_url: str) -> None:
    for i in range(3):
        log.append(_draft(i))
    _attack(db_url, "DELETE FROM audit_events WHERE seq = 3")
    verdict = log.verify()
    assert (verdict.problem, verdict.seq) == (Problem.TRUNCATED, 3)


def test_paging_and_filters(log: AuditLog) -> None:
    for i in range(10):
        log.append(_draft(i, actor="bob" if i % 2 else "alice"))
    page, after = log.list(EventFilter(actor="bob"), 3)
    assert [e.seq for e in page] == [2, 4, 6] and after == 6
    page, after = log.list(EventFilter(actor="bob", after_seq=after), 3)
    assert [e.seq for e in page] == [8, 10] and after == 0
    page, _ = log.list(EventFilter(subject_prefix="models/m1/"), 100)
    assert {e.subject for e in page} == {"models/m1/versions/1", "models/m1/versions/4", "models/m1/versions/7"}
    page, _ = log.list(EventFilter(subject_prefix="models/m_"), 100)
    assert page == [], "LIKE wildcards in the prefix are literal"


def test_bad_events_are_refused_and_change_nothing(log: AuditLog) -> None:
    with pytest.raises(InvalidArgument, match="needs an actor"):
        log.append(EventDraft(actor="", action="x", subject="y"))
    with pytest.raises(InvalidArgument, match="longer than 512"):
        log.append(EventDraft(actor="a", action="x", subject="y" * 513))
    with pytest.raises(InvalidArgument, match="JSON values"):
        log.append(EventDraft(actor="a", action="x", subject="y", details={"bad": {1, 2}}))
    assert log.list(EventFilter(), 10) == ([], 0)
    assert log.verify().ok


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-m", "libs.audit.cli", *args], capture_output=True, text=True, env=env)


def test_cli_verifies_database_and_exported_file(log: AuditLog, db_url: str, tmp_path: Path) -> None:
    for i in range(4):
        log.append(_draft(i))
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    ok = _cli("verify", "--db", db_url, "--key-file", str(key_file))
    assert ok.returncode == 0 and ok.stdout.strip() == "OK: 4 events verified"

    export = _cli("export", "--db", db_url)
    lines = export.stdout.splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4]
    exported = tmp_path / "audit.jsonl"
    exported.write_text("\n".join(lines) + "\n")
    assert _cli("verify", "--jsonl", str(exported), "--key-file", str(key_file)).returncode == 0

    lines[1] = lines[1].replace('"actor":"alice"', '"actor":"eve"')
    exported.write_text("\n".join(lines) + "\n")
    broken = _cli("verify", "--jsonl", str(exported))
    assert broken.returncode == 1
    assert broken.stdout.strip() == "BROKEN: edited at event 2: event 2: content does not match its hash"
