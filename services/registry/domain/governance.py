"""Release governance of the registry: validation reports, approvals (e-signatures), policies, gates.

`Governance` wires the parts together on one store and is what the GovernanceService servicer
and the rest of the registry use:

- the catalog/servicer: `latest_validations(name, version)` for ModelVersion.validations and
  `versions_validated_for(environment, name=None)` for SearchModelVersions' validated_for;
- alias moves (domain/aliases.py): `check_gates(name, version, environment)`, whose result has
  `allowed` and `message`; `require_gates` raises GatesBlocked (FAILED_PRECONDITION + GateFailure).

Rules live in reports.py, approvals.py and gates.py; records in governance_records.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.registry.domain.approvals import Approvals
from services.registry.domain.auditing import Auditor
from services.registry.domain.gates import Gates
from services.registry.domain.governance_records import (
    CatalogLookup,
    GateCheck,
    GatesBlocked,
    ValidationStatus,
    utcnow,
)
from services.registry.domain.policies import PolicySet
from services.registry.domain.reports import ValidationReports

if TYPE_CHECKING:
    from services.registry.storage.governance_db import SqlGovernanceStore


class Governance:
    """The governance domain. Takes its parts as arguments; holds no global state."""

    def __init__(
        self,
        store: SqlGovernanceStore,
        catalog: CatalogLookup,
        auditor: Auditor,
        policies: PolicySet,
        artifact_exists: Callable[[str], bool],
        *,
        signing_window_minutes: float = 5.0,
        issuer: str = "",
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.policies = policies
        self.reports = ValidationReports(store, catalog, auditor, policies, issuer=issuer, clock=clock)
        self.approvals = Approvals(
            store,
            catalog,
            self.reports,
            auditor,
            policies,
            signing_window_minutes=signing_window_minutes,
            issuer=issuer,
            clock=clock,
        )
        self.gates = Gates(catalog, self.reports, self.approvals, policies, artifact_exists, clock=clock)

    def check_gates(self, name: str, version: int, environment: str) -> GateCheck:
        """Every gate of `environment` for the version (a BLOCKED result is not an error)."""
        return self.gates.check(name, version, environment)

    def require_gates(self, name: str, version: int, environment: str) -> GateCheck:
        """The gate check if ALLOWED; GatesBlocked (FAILED_PRECONDITION, GateFailure detail) if not."""
        check = self.gates.check(name, version, environment)
        if not check.allowed:
            raise GatesBlocked(check)
        return check

    def latest_validations(self, name: str, version: int) -> list[ValidationStatus]:
        """Per environment requiring validation: (environment, policy_name, verdict, report_digest,
        run_id, record_time) of the latest report; verdict "" where none was recorded yet."""
        return self.reports.latest_validations(name, version)

    def versions_validated_for(self, environment: str, name: str | None = None) -> set[tuple[str, int]]:
        """(model, version) pairs whose latest report under `environment`'s policy PASSED."""
        return self.reports.versions_validated_for(environment, name)
