"""The governance tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) at the database level.

sqlite by default; GOVERNANCE_TEST_BACKEND=postgres runs the same tests on a real PostgreSQL.
"""

import dataclasses
import os
import uuid

import pytest
import sqlalchemy as sa

from libs.testing.postgres import postgres_server
from services.registry.domain.governance_records import Conflict
from services.registry.storage.governance_db import SqlGovernanceStore, metadata
from services.registry.tests.governance_world import make_world

POSTGRES = os.environ.get("GOVERNANCE_TEST_BACKEND") == "postgres"


@pytest.fixture(scope="module")
def backend():
    if POSTGRES:
        with postgres_server() as pg:
            yield pg
    else:
        yield None


@pytest.fixture
def world(tmp_path, backend):
    url = backend.create_database("g" + uuid.uuid4().hex[:12]) if backend is not None else ""
    w = make_world(tmp_path, url=url)
    w.version("tox", 1)
    w.validate_all()
    yield w
    w.engine.dispose()


@pytest.fixture
def signed(world):
    """One revoked and one active approval, so every table holds rows."""
    revoked = world.sign(world.person("quinn", "qa-approver"))
    world.governance.approvals.revoke(world.person("quinn", "qa-approver"), revoked.approval_id, "mistake")
    active = world.sign(world.person("otto", "qa-approver"))
    return revoked, active


def _refused(world, statement, op: str, table: str) -> None:
    with (
        pytest.raises(sa.exc.DatabaseError, match=f"{table} are append-only: {op} refused"),
        world.engine.begin() as conn,
    ):
        conn.execute(statement)


@pytest.mark.parametrize(
    ("table", "column"),
    [("validation_reports", "verdict"), ("approvals", "reason"), ("revocations", "reason")],
)
def test_update_and_delete_are_refused_by_the_database(world, signed, table, column):
    t = metadata.tables[table]
    everything = sa.select(t).order_by(t.c.audit_sequence)
    with world.engine.connect() as conn:
        before = conn.execute(everything).all()
    assert before
    _refused(world, t.update().values({column: "forged"}), "UPDATE", table)
    _refused(world, t.delete(), "DELETE", table)
    if POSTGRES:
        _refused(world, sa.text(f"TRUNCATE {table} CASCADE"), "TRUNCATE", table)
    with world.engine.connect() as conn:
        assert conn.execute(everything).all() == before


def test_revocation_is_an_appended_row_and_the_approval_row_is_untouched(world, signed):
    revoked, active = signed
    with world.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT approval_id, record_digest, reason FROM approvals ORDER BY audit_sequence"))
        assert [tuple(r) for r in rows] == [
            (revoked.approval_id, revoked.record_digest, revoked.reason),
            (active.approval_id, active.record_digest, active.reason),
        ]
        (count,) = conn.execute(sa.text("SELECT count(*) FROM revocations")).one()
    assert count == 1
    stored = world.store.get_approval(revoked.approval_id)
    assert stored.state == "REVOKED" and dataclasses.replace(stored, revocation=None) == revoked
    assert world.store.get_approval(active.approval_id).state == "ACTIVE"


def test_unique_keys_and_references_hold(world, signed):
    revoked, active = signed
    second = dataclasses.replace(
        world.store.get_approval(revoked.approval_id).revocation,
        revocation_id=str(uuid.uuid4()),
        record_digest="e" * 64,
        audit_sequence=9999,
        request_id="",
    )
    with pytest.raises(Conflict):  # one revocation per approval
        world.store.insert_revocation(second)
    with pytest.raises(Conflict):  # a revocation must reference a stored approval
        world.store.insert_revocation(dataclasses.replace(second, approval_id=str(uuid.uuid4())))
    with pytest.raises(Conflict):  # the same signed record cannot be stored twice
        world.store.insert_approval(dataclasses.replace(active, approval_id=str(uuid.uuid4()), audit_sequence=9998))
    report = world.governance.reports.latest("tox", 1, "prod")
    with pytest.raises(Conflict):  # one record per validation run
        world.store.insert_report(dataclasses.replace(report, report_digest="d" * 64, audit_sequence=9997))


def test_creating_the_store_again_keeps_rows_and_guards(world, signed):
    again = SqlGovernanceStore(world.engine)  # a second replica starting on the same database
    assert again.get_approval(signed[1].approval_id) == signed[1]
    _refused(world, metadata.tables["approvals"].delete(), "DELETE", "approvals")
