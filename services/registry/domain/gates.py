"""Gate checks: may version X be deployed to / loaded in environment E, and if not, what is missing?

Every gate of the policy is evaluated (none short-circuits), so one answer lists everything that
is missing. The rules, in evaluation order:

- VERSION_ACTIVE: the version is not archived.
- ARTIFACT_PRESENT: the artifact store holds the version's digest.
- VALIDATION: the latest report under the environment's validation policy PASSED (reports are
  always for the version's own artifact digest: recording checks it).
- APPROVALS: at least `min_approvals` active APPROVED_FOR_RELEASE signatures by distinct signers
  who held an approver role when signing, bound to the version's artifact digest and to the report
  the validation gate used, not counting the submitter where excluded. REVIEWED signatures never
  count (approval.proto: they document a review step); an active REJECTED signature for the
  environment blocks, whatever report it was bound to, until it is revoked, even where no approval
  is required: an explicit "no" from an approver outranks an empty requirement.
- SEPARATION_OF_DUTIES: where the policy excludes submitters, no active APPROVED_FOR_RELEASE
  signature by the submitter exists for the environment. Signing refuses that already; the gate
  still fails loudly if one exists (e.g. signed under an older policy that allowed it).
- PROMOTION_ORDER: the version passes every gate of `requires_environment` (evaluated the same
  way, recursively: prod needs test, which needs dev).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from libs.errors.domain_errors import InvalidArgument
from services.registry.domain import naming
from services.registry.domain.approvals import Approvals
from services.registry.domain.governance_records import (
    APPROVED_FOR_RELEASE,
    GATE_FAILED,
    GATE_NOT_REQUIRED,
    GATE_PASSED,
    REJECTED,
    Approval,
    CatalogLookup,
    GateCheck,
    GateResult,
    labelled,
    plain_hex,
    utcnow,
)
from services.registry.domain.policies import EnvironmentPolicy, PolicySet
from services.registry.domain.records import ARCHIVED, ModelVersionRecord
from services.registry.domain.reports import ValidationReports


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class Gates:
    """Evaluates an environment's gates for a version. Reads only; records nothing."""

    def __init__(
        self,
        catalog: CatalogLookup,
        reports: ValidationReports,
        approvals: Approvals,
        policies: PolicySet,
        artifact_exists: Callable[[str], bool],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.catalog = catalog
        self.reports = reports
        self.approvals = approvals
        self.policies = policies
        self.artifact_exists = artifact_exists
        self.clock = clock

    def check(self, name: str, version: int, environment: str) -> GateCheck:
        """Evaluate every gate; NOT_FOUND for an unknown version or an unconfigured environment."""
        naming.model_name(name, "model.name")
        naming.version_number(version)
        policy = self.policies.get(environment)
        record = self.catalog.get_version(name, version)
        return self._check(record, policy, self.clock(), ())

    def _check(
        self, record: ModelVersionRecord, policy: EnvironmentPolicy, now: dt.datetime, outer: tuple[str, ...]
    ) -> GateCheck:
        if policy.environment in outer:  # the loader refuses cycles; this keeps a bad PolicySet finite
            raise InvalidArgument("environment policies require each other in a cycle: " + " -> ".join(outer))
        artifact = plain_hex(record.artifact_digest)
        passed = self.reports.current_passed(record.name, record.version, policy.environment)
        active = self.approvals.active_for(record.name, record.version, policy.environment)
        approvals_result, counted = self._approvals(
            record, policy, artifact, passed.report_digest if passed else "", active
        )
        gates = (
            self._version_active(record),
            self._artifact_present(artifact),
            self._validation(record, policy, passed),
            approvals_result,
            self._separation_of_duties(record, policy, active),
            self._promotion_order(record, policy, now, (*outer, policy.environment)),
        )
        return GateCheck(
            model_name=record.name,
            version=record.version,
            environment=policy.environment,
            policy=policy,
            gates=gates,
            artifact_digest=artifact,
            report_digest=passed.report_digest if passed else "",
            approval_ids=tuple(a.approval_id for a in counted),
            evaluate_time=now,
        )

    @staticmethod
    def _version_active(record: ModelVersionRecord) -> GateResult:
        if record.state == ARCHIVED:
            return GateResult("VERSION_ACTIVE", GATE_FAILED, f"{record.ref} is archived", (record.ref,))
        return GateResult("VERSION_ACTIVE", GATE_PASSED, f"{record.ref} is {record.state.lower()}", (record.ref,))

    def _artifact_present(self, artifact: str) -> GateResult:
        if self.artifact_exists(artifact):
            return GateResult("ARTIFACT_PRESENT", GATE_PASSED, "the artifact is in the store", (labelled(artifact),))
        return GateResult(
            "ARTIFACT_PRESENT",
            GATE_FAILED,
            f"artifact sha256:{artifact} is missing from the artifact store",
            (labelled(artifact),),
        )

    def _validation(self, record: ModelVersionRecord, policy: EnvironmentPolicy, passed) -> GateResult:
        name = policy.validation_policy
        if not name:
            return GateResult("VALIDATION", GATE_NOT_REQUIRED, f"{policy.environment} requires no validation")
        if passed is not None:
            return GateResult(
                "VALIDATION",
                GATE_PASSED,
                f"validation under policy {name!r} PASSED (run {passed.run_id})",
                (labelled(passed.report_digest),),
            )
        latest = self.reports.latest(record.name, record.version, policy.environment)
        if latest is None:
            return GateResult("VALIDATION", GATE_FAILED, f"no validation report under policy {name!r} yet")
        return GateResult(
            "VALIDATION",
            GATE_FAILED,
            f"the latest validation under policy {name!r} is {latest.verdict} (run {latest.run_id})",
            (labelled(latest.report_digest),),
        )

    @staticmethod
    def _approvals(
        record: ModelVersionRecord, policy: EnvironmentPolicy, artifact: str, report: str, active: list[Approval]
    ) -> tuple[GateResult, list[Approval]]:
        rules = policy.approvals
        rejections = [a for a in active if a.meaning == REJECTED]
        if rejections:
            who = ", ".join(sorted({a.signer.subject for a in rejections}))
            return GateResult(
                "APPROVALS",
                GATE_FAILED,
                f"rejected for {policy.environment} by {who}; revoke the rejection first",
                tuple(a.approval_id for a in rejections),
            ), []
        if not policy.approvals_required:
            return GateResult("APPROVALS", GATE_NOT_REQUIRED, f"{policy.environment} requires no approvals"), []
        counted: list[Approval] = []
        signers: set[str] = set()
        for a in active:
            if (
                a.meaning == APPROVED_FOR_RELEASE
                and a.signer.kind != "service"
                and a.artifact_digest == artifact
                and (not policy.validation_policy or (report and a.report_digest == report))
                and rules.eligible(a.signer.roles)
                and not (rules.submitter_excluded and a.signer.subject == record.created_by.subject)
                and a.signer.subject not in signers
            ):
                counted.append(a)
                signers.add(a.signer.subject)
        need = rules.min_approvals
        roles = f" by role {' or '.join(rules.approver_roles)}" if rules.approver_roles else ""
        summary = f"{len(counted)} of {_plural(need, 'approval')}{roles}"
        evidence = tuple(a.approval_id for a in counted)
        if len(counted) >= need:
            return GateResult("APPROVALS", GATE_PASSED, summary, evidence), counted
        if policy.validation_policy and not report:
            summary += " (approvals bind to a PASSED validation report, and there is none)"
        else:
            summary += f" bound to artifact sha256:{artifact}" + (f" and report sha256:{report}" if report else "")
        return GateResult("APPROVALS", GATE_FAILED, summary, evidence), counted

    @staticmethod
    def _separation_of_duties(
        record: ModelVersionRecord, policy: EnvironmentPolicy, active: list[Approval]
    ) -> GateResult:
        submitter = record.created_by.subject
        if not policy.approvals_required or not policy.approvals.submitter_excluded:
            return GateResult(
                "SEPARATION_OF_DUTIES", GATE_NOT_REQUIRED, f"{policy.environment} does not exclude the submitter"
            )
        own = [a for a in active if a.meaning == APPROVED_FOR_RELEASE and a.signer.subject == submitter]
        if own:
            return GateResult(
                "SEPARATION_OF_DUTIES",
                GATE_FAILED,
                f"the submitter {submitter} approved their own version; revoke that approval",
                tuple(a.approval_id for a in own),
            )
        return GateResult("SEPARATION_OF_DUTIES", GATE_PASSED, f"no approval by the submitter {submitter}")

    def _promotion_order(
        self, record: ModelVersionRecord, policy: EnvironmentPolicy, now: dt.datetime, chain: tuple[str, ...]
    ) -> GateResult:
        required = policy.requires_environment
        if not required:
            return GateResult("PROMOTION_ORDER", GATE_NOT_REQUIRED, f"{policy.environment} has no prior environment")
        before = self._check(record, self.policies.get(required), now, chain)
        evidence = tuple(e for e in (labelled(before.report_digest), *before.approval_ids) if e)
        if before.allowed:
            return GateResult("PROMOTION_ORDER", GATE_PASSED, f"passes the {required} gates", evidence)
        return GateResult(
            "PROMOTION_ORDER", GATE_FAILED, f"must first pass the {required} gates: {before.message}", evidence
        )
