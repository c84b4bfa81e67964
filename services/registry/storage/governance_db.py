"""Append-only SQL storage of validation reports, approvals and revocations (sqlite / PostgreSQL).

Three tables on the registry engine (storage/db.py). The database refuses UPDATE and DELETE on all
three with triggers (and TRUNCATE on PostgreSQL), like the audit chain: an electronic signature is
never edited or deleted (21 CFR 11.10(e), 11.70). Revoking an approval appends a `revocations` row
that references it; an approval's state is derived (REVOKED iff such a row exists), so no row ever
changes. Rows are ordered by the sequence number of the audit event that recorded them, which is
unique and follows the chain's order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import sqlalchemy as sa

from services.registry.domain.governance_records import (
    ACTIVE,
    REVOKED,
    Approval,
    Conflict,
    Revocation,
    ValidationReport,
)
from services.registry.domain.records import ActorRecord

metadata = sa.MetaData()

validation_reports = sa.Table(
    "validation_reports",
    metadata,
    sa.Column("report_digest", sa.String(64), primary_key=True),
    sa.Column("model_name", sa.String(63), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("policy_name", sa.String(128), nullable=False),
    sa.Column("policy_digest", sa.String(64), nullable=False),
    sa.Column("environment", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(128), nullable=False, unique=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("report_json", sa.LargeBinary, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("record_time", sa.String(40), nullable=False),
    sa.Column("audit_sequence", sa.BigInteger, nullable=False, unique=True),
    sa.Index("validation_reports_by_version", "model_name", "version", "policy_name", "audit_sequence"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("approval_id", sa.String(36), primary_key=True),
    sa.Column("model_name", sa.String(63), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("environment", sa.String(16), nullable=False),
    sa.Column("meaning", sa.String(32), nullable=False),
    sa.Column("statement", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("signer", sa.Text, nullable=False),
    sa.Column("sign_time", sa.String(40), nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("report_digest", sa.String(64), nullable=True),
    sa.Column("record_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("audit_sequence", sa.BigInteger, nullable=False, unique=True),
    sa.Column("request_id", sa.String(36), nullable=True, unique=True),
    sa.Index("approvals_by_version", "model_name", "version", "environment"),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("revocation_id", sa.String(36), primary_key=True),
    sa.Column("approval_id", sa.String(36), sa.ForeignKey("approvals.approval_id"), nullable=False, unique=True),
    sa.Column("approval_record_digest", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("revoker", sa.Text, nullable=False),
    sa.Column("revoke_time", sa.String(40), nullable=False),
    sa.Column("record_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("audit_sequence", sa.BigInteger, nullable=False, unique=True),
    sa.Column("request_id", sa.String(36), nullable=True, unique=True),
)

TABLES = ("validation_reports", "approvals", "revocations")
# Lists leave the (possibly large) report bytes in the database.
_REPORT_COLUMNS_WITHOUT_JSON = [c for c in validation_reports.c if c.name != "report_json"]


def _sqlite_guards(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} are append-only: {op} refused'); END"""
        for op in ("UPDATE", "DELETE")
    ]


_POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION governance_refuse() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP; END
    $$ LANGUAGE plpgsql"""


def _postgres_guards(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}",
        f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION governance_refuse()""",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse()""",
    ]


def _time(value: dt.datetime) -> str:
    # Fixed-width RFC 3339 UTC: string order is time order, and no driver reinterprets time zones.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _actor(value: str) -> ActorRecord:
    return ActorRecord.from_dict(json.loads(value))


def _actor_text(actor: ActorRecord) -> str:
    return json.dumps(actor.to_dict(), sort_keys=True, separators=(",", ":"))


class SqlGovernanceStore:
    """Validation reports, approvals and revocations; inserts and reads only."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._create()

    def _create(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Serialize concurrent first starts of several replicas creating the triggers.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74207422)")
                conn.execute(sa.text(_POSTGRES_FUNCTION))
                statements = [s for t in TABLES for s in _postgres_guards(t)]
            else:
                statements = [s for t in TABLES for s in _sqlite_guards(t)]
            for statement in statements:
                conn.execute(sa.text(statement))

    def _insert(self, table: sa.Table, values: dict) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(**values))
        except sa.exc.IntegrityError:
            raise Conflict(f"a {table.name} record with the same key already exists") from None

    # ---- validation reports ---------------------------------------------------------------

    def insert_report(self, report: ValidationReport) -> None:
        self._insert(
            validation_reports,
            {
                "report_digest": report.report_digest,
                "model_name": report.model_name,
                "version": report.version,
                "artifact_digest": report.artifact_digest,
                "policy_name": report.policy_name,
                "policy_digest": report.policy_digest,
                "environment": report.environment,
                "run_id": report.run_id,
                "verdict": report.verdict,
                "report_json": report.report_json,
                "recorded_by": _actor_text(report.recorded_by),
                "record_time": _time(report.record_time),
                "audit_sequence": report.audit_sequence,
            },
        )

    @staticmethod
    def _report(row: sa.Row, with_json: bool) -> ValidationReport:
        return ValidationReport(
            model_name=row.model_name,
            version=int(row.version),
            artifact_digest=row.artifact_digest,
            policy_name=row.policy_name,
            policy_digest=row.policy_digest,
            environment=row.environment,
            run_id=row.run_id,
            verdict=row.verdict,
            report_digest=row.report_digest,
            report_json=bytes(row.report_json) if with_json else b"",
            recorded_by=_actor(row.recorded_by),
            record_time=_parse_time(row.record_time),
            audit_sequence=int(row.audit_sequence),
        )

    def _reports(self, query: sa.Select, with_json: bool = False) -> list[ValidationReport]:
        with self.engine.connect() as conn:
            return [self._report(row, with_json) for row in conn.execute(query)]

    def get_report(self, report_digest: str) -> ValidationReport | None:
        found = self._reports(
            sa.select(validation_reports).where(validation_reports.c.report_digest == report_digest), True
        )
        return found[0] if found else None

    def report_by_run(self, run_id: str) -> ValidationReport | None:
        found = self._reports(sa.select(validation_reports).where(validation_reports.c.run_id == run_id), True)
        return found[0] if found else None

    def list_reports(
        self, name: str, version: int, policy_name: str, verdict: str, before_seq: int | None, limit: int
    ) -> list[ValidationReport]:
        """Reports of a model (or one version), newest first, with audit_sequence < before_seq."""
        t = validation_reports
        query = sa.select(*_REPORT_COLUMNS_WITHOUT_JSON).where(t.c.model_name == name)
        if version:
            query = query.where(t.c.version == version)
        if policy_name:
            query = query.where(t.c.policy_name == policy_name)
        if verdict:
            query = query.where(t.c.verdict == verdict)
        if before_seq is not None:
            query = query.where(t.c.audit_sequence < before_seq)
        return self._reports(query.order_by(t.c.audit_sequence.desc()).limit(limit))

    def latest_report(self, name: str, version: int, policy_name: str) -> ValidationReport | None:
        found = self.list_reports(name, version, policy_name, "", None, 1)
        return found[0] if found else None

    def latest_reports(self, policy_name: str, name: str = "") -> list[ValidationReport]:
        """The newest report under `policy_name` of every version (of model `name`, if given)."""
        t = validation_reports
        newest = sa.select(sa.func.max(t.c.audit_sequence)).where(t.c.policy_name == policy_name)
        if name:
            newest = newest.where(t.c.model_name == name)
        newest = newest.group_by(t.c.model_name, t.c.version)
        query = sa.select(*_REPORT_COLUMNS_WITHOUT_JSON)
        return self._reports(query.where(t.c.audit_sequence.in_(newest.scalar_subquery())))

    # ---- approvals and revocations -----------------------------------------------------------

    def insert_approval(self, approval: Approval) -> None:
        self._insert(
            approvals,
            {
                "approval_id": approval.approval_id,
                "model_name": approval.model_name,
                "version": approval.version,
                "environment": approval.environment,
                "meaning": approval.meaning,
                "statement": approval.statement,
                "reason": approval.reason,
                "signer": _actor_text(approval.signer),
                "sign_time": _time(approval.sign_time),
                "artifact_digest": approval.artifact_digest,
                "report_digest": approval.report_digest or None,
                "record_digest": approval.record_digest,
                "audit_sequence": approval.audit_sequence,
                "request_id": approval.request_id or None,
            },
        )

    def insert_revocation(self, revocation: Revocation) -> None:
        self._insert(
            revocations,
            {
                "revocation_id": revocation.revocation_id,
                "approval_id": revocation.approval_id,
                "approval_record_digest": revocation.approval_record_digest,
                "reason": revocation.reason,
                "revoker": _actor_text(revocation.revoker),
                "revoke_time": _time(revocation.revoke_time),
                "record_digest": revocation.record_digest,
                "audit_sequence": revocation.audit_sequence,
                "request_id": revocation.request_id or None,
            },
        )

    _REVOCATION_COLUMNS: Sequence[sa.ColumnElement] = [
        c.label(f"r_{c.name}") for c in revocations.c if c.name != "approval_id"
    ]

    def _approvals(self, where: Sequence[sa.ColumnElement], limit: int | None = None) -> list[Approval]:
        joined = approvals.outerjoin(revocations, revocations.c.approval_id == approvals.c.approval_id)
        query = sa.select(approvals, *self._REVOCATION_COLUMNS).select_from(joined).where(*where)
        query = query.order_by(approvals.c.audit_sequence)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._approval(row) for row in conn.execute(query)]

    @staticmethod
    def _approval(row: sa.Row) -> Approval:
        revocation = None
        if row.r_revocation_id is not None:
            revocation = Revocation(
                revocation_id=row.r_revocation_id,
                approval_id=row.approval_id,
                approval_record_digest=row.r_approval_record_digest,
                reason=row.r_reason,
                revoker=_actor(row.r_revoker),
                revoke_time=_parse_time(row.r_revoke_time),
                record_digest=row.r_record_digest,
                audit_sequence=int(row.r_audit_sequence),
                request_id=row.r_request_id or "",
            )
        return Approval(
            approval_id=row.approval_id,
            model_name=row.model_name,
            version=int(row.version),
            environment=row.environment,
            meaning=row.meaning,
            statement=row.statement,
            reason=row.reason,
            signer=_actor(row.signer),
            sign_time=_parse_time(row.sign_time),
            artifact_digest=row.artifact_digest,
            report_digest=row.report_digest or "",
            record_digest=row.record_digest,
            audit_sequence=int(row.audit_sequence),
            request_id=row.request_id or "",
            revocation=revocation,
        )

    def get_approval(self, approval_id: str) -> Approval | None:
        found = self._approvals([approvals.c.approval_id == approval_id])
        return found[0] if found else None

    def approval_by_request(self, request_id: str) -> Approval | None:
        found = self._approvals([approvals.c.request_id == request_id])
        return found[0] if found else None

    def approval_by_revocation_request(self, request_id: str) -> Approval | None:
        """The approval revoked by the revocation with this request id, with that revocation."""
        found = self._approvals([revocations.c.request_id == request_id])
        return found[0] if found else None

    def approvals_of(self, name: str, version: int, environment: str) -> list[Approval]:
        """Every approval of one version for one environment, oldest first, with revocations."""
        return self._approvals(
            [approvals.c.model_name == name, approvals.c.version == version, approvals.c.environment == environment]
        )

    def list_approvals(
        self, name: str, version: int, environment: str, state: str, after_seq: int | None, limit: int
    ) -> list[Approval]:
        """Approvals of a model (or version), oldest first, with audit_sequence > after_seq."""
        where = [approvals.c.model_name == name]
        if version:
            where.append(approvals.c.version == version)
        if environment:
            where.append(approvals.c.environment == environment)
        if state == ACTIVE:
            where.append(revocations.c.revocation_id.is_(None))
        elif state == REVOKED:
            where.append(revocations.c.revocation_id.is_not(None))
        if after_seq is not None:
            where.append(approvals.c.audit_sequence > after_seq)
        return self._approvals(where, limit)
