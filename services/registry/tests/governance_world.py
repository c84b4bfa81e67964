"""Real in-process parts for governance domain tests.

A `World` holds the governance domain on a real sqlite store and a real audit chain (both on the
registry engine, as in production), a catalog of real `ModelVersionRecord` values (test data, the
same records the MLflow catalog returns), a set of digests standing for the artifact store, and a
settable clock. Principals are built as the token verifier builds them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from libs.audit.audit_log import AuditLog
from libs.audit.store import SqlAuditStore
from libs.auth.principal import Principal
from libs.errors.domain_errors import NotFound
from services.registry.domain.approvals import SignRequest
from services.registry.domain.auditing import Auditor
from services.registry.domain.governance import Governance
from services.registry.domain.governance_records import APPROVED_FOR_RELEASE, Approval, ValidationReport
from services.registry.domain.policies import PolicySet, load_policies
from services.registry.domain.records import ARCHIVED, READY, ActorRecord, ModelVersionRecord
from services.registry.domain.reports import ReportSubmission
from services.registry.storage.db import create_engine
from services.registry.storage.governance_db import SqlGovernanceStore

START = dt.datetime(2026, 11, 2, 9, 30, 0, tzinfo=dt.UTC)
ISSUER = "https://idp.causeway.localhost"


class Clock:
    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class VersionTable:
    """The catalog lookup governance needs, over real records."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], ModelVersionRecord] = {}

    def add(self, name: str, version: int, *, created_by: str = "alice", state: str = READY) -> ModelVersionRecord:
        record = ModelVersionRecord(
            name=name,
            version=version,
            state=state,
            description="",
            artifact_digest=hashlib.sha256(f"{name}/{version}".encode()).hexdigest(),
            format="SAFETENSORS",
            metadata={},
            tags={},
            aliases=[],
            created_by=ActorRecord(created_by, created_by.title(), "user", ("researcher",), ISSUER),
            create_time=START,
            update_time=START,
        )
        self.versions[(name, version)] = record
        return record

    def archive(self, name: str, version: int) -> None:
        self.versions[(name, version)] = dataclasses.replace(self.versions[(name, version)], state=ARCHIVED)

    def get_model(self, name: str) -> str:
        if not any(n == name for n, _ in self.versions):
            raise NotFound(f"model {name} not found")
        return name

    def get_version(self, name: str, version: int) -> ModelVersionRecord:
        try:
            return self.versions[(name, version)]
        except KeyError:
            raise NotFound(f"model {name} version {version} not found") from None


@dataclasses.dataclass
class World:
    governance: Governance
    catalog: VersionTable
    clock: Clock
    audit: AuditLog
    store: SqlGovernanceStore
    artifacts: set[str]
    engine: sa.Engine

    def person(self, subject: str, *roles: str, age_minutes: float = 1.0, name: str = "") -> Principal:
        issued = self.clock.now - dt.timedelta(minutes=age_minutes)
        return Principal(
            subject, frozenset(roles), issued, issued + dt.timedelta(hours=1), name=name or subject.title()
        )

    def service(self, name: str = "validator") -> Principal:
        issued = self.clock.now - dt.timedelta(hours=2)
        return Principal(
            f"service:{name}",
            frozenset({"service"}),
            issued,
            issued + dt.timedelta(hours=12),
            name=name,
            kind="service",
        )

    def version(self, name: str = "tox", version: int = 1, **kwargs) -> ModelVersionRecord:
        record = self.catalog.add(name, version, **kwargs)
        self.artifacts.add(record.artifact_digest)
        return record

    def submission(
        self, name: str, number: int, policy: str, verdict: str = "PASSED", run_id: str | None = None, **overrides
    ) -> ReportSubmission:
        """A well-formed submission for version `number`; `overrides` replace fields afterwards."""
        run_id = f"run-{uuid.uuid4().hex[:8]}" if run_id is None else run_id
        body = json.dumps({"run_id": run_id, "verdict": verdict, "policy": policy}, sort_keys=True).encode()
        fields: dict[str, Any] = dict(
            model_name=name,
            version=number,
            artifact_digest=self.catalog.get_version(name, number).artifact_digest,
            policy_name=policy,
            policy_digest=hashlib.sha256(policy.encode()).hexdigest(),
            environment="",
            run_id=run_id,
            verdict=verdict,
            report_json=body,
            report_digest=hashlib.sha256(body).hexdigest(),
        )
        fields.update(overrides)
        return ReportSubmission(**fields)

    def report(
        self, name: str = "tox", number: int = 1, policy: str = "prod", verdict: str = "PASSED", **kwargs
    ) -> ValidationReport:
        return self.governance.reports.record(self.service(), self.submission(name, number, policy, verdict, **kwargs))

    def validate_all(self, name: str = "tox", version: int = 1, verdict: str = "PASSED") -> dict[str, str]:
        """PASSED (or `verdict`) reports under every environment's policy; env -> report digest."""
        return {e: self.report(name, version, e, verdict).report_digest for e in ("dev", "test", "prod")}

    def sign_request(
        self,
        name: str = "tox",
        version: int = 1,
        environment: str = "prod",
        meaning: str = APPROVED_FOR_RELEASE,
        reason: str = "meets the release criteria",
        **overrides,
    ) -> SignRequest:
        current = self.governance.reports.current_passed(name, version, environment)
        fields: dict[str, Any] = dict(
            model_name=name,
            version=version,
            environment=environment,
            meaning=meaning,
            reason=reason,
            artifact_digest=self.catalog.get_version(name, version).artifact_digest,
            report_digest=current.report_digest if current else "",
        )
        fields.update(overrides)
        return SignRequest(**fields)

    def sign(
        self, principal: Principal, name: str = "tox", version: int = 1, environment: str = "prod", **overrides
    ) -> Approval:
        return self.governance.approvals.create(principal, self.sign_request(name, version, environment, **overrides))

    def events(self, action: str = "") -> list:
        from libs.audit.store import EventFilter

        events, _ = self.audit.list(EventFilter(action=action), 1000)
        return events

    def with_policies(self, policies: PolicySet) -> World:
        """Another Governance over the same store, catalog, chain and clock, under other policies."""
        governance = Governance(
            self.store,
            self.catalog,
            Auditor(self.audit),
            policies,
            lambda digest: digest in self.artifacts,
            signing_window_minutes=5.0,
            issuer=ISSUER,
            clock=self.clock,
        )
        return dataclasses.replace(self, governance=governance)


def make_world(tmp_path: Path, policies: PolicySet | None = None, url: str = "") -> World:
    engine = create_engine(url or f"sqlite:///{tmp_path / 'registry.db'}")
    audit = AuditLog(SqlAuditStore(engine=engine))
    store = SqlGovernanceStore(engine)
    clock = Clock()
    catalog = VersionTable()
    artifacts: set[str] = set()
    governance = Governance(
        store,
        catalog,
        Auditor(audit),
        policies or load_policies(),
        lambda digest: digest in artifacts,
        signing_window_minutes=5.0,
        issuer=ISSUER,
        clock=clock,
    )
    return World(governance, catalog, clock, audit, store, artifacts, engine)
