"""Validation reports: recorded by the validator, read by approvers, the gates and the catalog.

A version's validation status for an environment is the verdict of the *latest* report recorded
under that environment's validation policy, so the status changes only when a run has finished
and reported: a newer FAILED report supersedes an older PASSED one (and the approvals bound to
the older report stop counting), a re-run that passes restores it.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from libs.auth.principal import Principal
from libs.errors.domain_errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.registry.domain import naming
from services.registry.domain.auditing import Auditor
from services.registry.domain.governance_records import (
    PASSED,
    VERDICTS,
    CatalogLookup,
    Conflict,
    ReportDigestMismatch,
    ValidationReport,
    ValidationStatus,
    check_hex,
    check_run_id,
    decode_token,
    encode_token,
    labelled,
    page_size,
    plain_hex,
    sha256_hex,
    utcnow,
)
from services.registry.domain.policies import PolicySet
from services.registry.domain.records import ENVIRONMENTS, ActorRecord

if TYPE_CHECKING:
    from services.registry.storage.governance_db import SqlGovernanceStore

MAX_POLICY_NAME = 128
MAX_REPORT_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ReportSubmission:
    """What the validator sends (RecordValidationReportRequest as plain data)."""

    model_name: str
    version: int
    artifact_digest: str
    policy_name: str
    policy_digest: str
    environment: str
    run_id: str
    verdict: str
    report_json: bytes
    report_digest: str


def _check_submission(s: ReportSubmission) -> None:
    """INVALID_ARGUMENT for anything malformed; the digest check comes last (it has a detail)."""
    naming.model_name(s.model_name, "model.name")
    naming.version_number(s.version)
    check_hex(s.artifact_digest, "artifact_digest")
    naming.text(s.policy_name, "policy_name", MAX_POLICY_NAME, required=True)
    check_hex(s.policy_digest, "policy_digest")
    if s.environment and s.environment not in ENVIRONMENTS:
        raise InvalidArgument(f"environment must be one of {', '.join(ENVIRONMENTS)} or unset")
    check_run_id(s.run_id)
    if s.verdict not in VERDICTS:
        raise InvalidArgument(f"verdict is required: one of {', '.join(VERDICTS)}")
    if not s.report_json:
        raise InvalidArgument("report_json is required")
    if len(s.report_json) > MAX_REPORT_BYTES:
        raise InvalidArgument(f"report_json is larger than {MAX_REPORT_BYTES} bytes")
    check_hex(s.report_digest, "report_digest")
    actual = sha256_hex(s.report_json)
    if actual != s.report_digest:
        raise ReportDigestMismatch(s.report_digest, actual, len(s.report_json))


class ValidationReports:
    """Records and reads validation reports. Only service identities (the validator) record."""

    def __init__(
        self,
        store: SqlGovernanceStore,
        catalog: CatalogLookup,
        auditor: Auditor,
        policies: PolicySet,
        *,
        issuer: str = "",
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.auditor = auditor
        self.policies = policies
        self.issuer = issuer
        self.clock = clock
        # Check-then-insert of one run must not interleave with a concurrent retry of that run.
        self._lock = threading.Lock()

    def record(self, principal: Principal, submission: ReportSubmission) -> ValidationReport:
        """Record a finished report; an identical re-record of the same run returns the first record.

        PERMISSION_DENIED unless the caller is a service; INVALID_ARGUMENT for malformed fields or a
        digest that is not the SHA-256 of report_json; NOT_FOUND for an unknown version;
        FAILED_PRECONDITION if artifact_digest is not the version's; ALREADY_EXISTS if the run id
        (or the report bytes) were recorded with different content.
        """
        if principal.kind != "service":
            raise PermissionDenied(
                f"{principal.subject} is a person: validation reports are recorded only by the validator service"
            )
        _check_submission(submission)
        s = submission
        version = self.catalog.get_version(s.model_name, s.version)
        if plain_hex(version.artifact_digest) != s.artifact_digest:
            raise FailedPrecondition(
                f"the report is for artifact sha256:{s.artifact_digest}, but {version.ref} is "
                f"sha256:{plain_hex(version.artifact_digest)}: validate the version's own artifact"
            )
        report = ValidationReport(
            model_name=s.model_name,
            version=s.version,
            artifact_digest=s.artifact_digest,
            policy_name=s.policy_name,
            policy_digest=s.policy_digest,
            environment=s.environment,
            run_id=s.run_id,
            verdict=s.verdict,
            report_digest=s.report_digest,
            report_json=s.report_json,
            recorded_by=ActorRecord.of(principal, self.issuer),
            record_time=self.clock(),
        )
        with self._lock:
            existing = self._existing(report)
            if existing is not None:
                return existing
            subject = f"{version.ref}/validation-reports/{s.report_digest}"
            event = self.auditor.record(
                principal,
                "validation_report.record",
                subject,
                {
                    "run_id": s.run_id,
                    "policy_name": s.policy_name,
                    "policy_digest": s.policy_digest,
                    "environment": s.environment,
                    "verdict": s.verdict,
                    "artifact_digest": s.artifact_digest,
                },
                payload_digest=s.report_digest,
            )
            report = dataclasses.replace(report, audit_sequence=event.seq)
            try:
                self.store.insert_report(report)
            except Conflict:
                # Another replica stored this run between our check and insert; say so in the chain.
                self.auditor.record(
                    principal,
                    "validation_report.record",
                    subject,
                    {"run_id": s.run_id, "error": "not stored: a concurrent record won"},
                    outcome="failure",
                    payload_digest=s.report_digest,
                )
                existing = self._existing(report)
                if existing is not None:
                    return existing
                raise
        return report

    def _existing(self, report: ValidationReport) -> ValidationReport | None:
        """The stored record if this is a retry; ALREADY_EXISTS if the run or bytes differ."""
        for stored in (self.store.report_by_run(report.run_id), self.store.get_report(report.report_digest)):
            if stored is None:
                continue
            if stored.same_record(report):
                return stored
            raise AlreadyExists(
                f"validation run {stored.run_id} is already recorded for model {stored.model_name} version "
                f"{stored.version} with different content (report {labelled(stored.report_digest)}); "
                "a new run needs a new run_id"
            )
        return None

    def get(self, report_digest: str) -> ValidationReport:
        """One report with its JSON bytes; NOT_FOUND if no report has that digest."""
        check_hex(report_digest, "report_digest")
        report = self.store.get_report(report_digest)
        if report is None:
            raise NotFound(f"no validation report sha256:{report_digest} is recorded")
        return report

    def list(
        self, name: str, version: int, policy_name: str, verdict: str, size: int, token: str
    ) -> tuple[list[ValidationReport], str]:
        """A page of a model's (or version's) reports, newest first, and the next page token."""
        naming.model_name(name, "model_name")
        if version < 0:
            raise InvalidArgument("version must be 0 (all versions) or 1 or more")
        if verdict and verdict not in VERDICTS:
            raise InvalidArgument(f"verdict must be one of {', '.join(VERDICTS)} or unset")
        naming.text(policy_name, "policy_name", MAX_POLICY_NAME)
        size = page_size(size)
        query = {
            "kind": "reports",
            "name": name,
            "version": version,
            "policy": policy_name,
            "verdict": verdict,
            "size": size,
        }
        before = decode_token(query, token)
        self.catalog.get_model(name)  # NOT_FOUND for an unknown model rather than an empty page
        found = self.store.list_reports(name, version, policy_name, verdict, before, size + 1)
        page = found[:size]
        return page, encode_token(query, page[-1].audit_sequence) if len(found) > size else ""

    def latest(self, name: str, version: int, environment: str) -> ValidationReport | None:
        """The latest report under `environment`'s validation policy (None if none or not required)."""
        policy = self.policies.get(environment)
        if not policy.validation_policy:
            return None
        return self.store.latest_report(name, version, policy.validation_policy)

    def current_passed(self, name: str, version: int, environment: str) -> ValidationReport | None:
        """The report approvals for `environment` bind to: the latest one, if it PASSED."""
        latest = self.latest(name, version, environment)
        return latest if latest is not None and latest.verdict == PASSED else None

    def latest_validations(self, name: str, version: int) -> builtins.list[ValidationStatus]:
        """Per configured environment that requires validation: the latest report's verdict."""
        statuses = []
        for policy in self.policies.all():
            if not policy.validation_policy:
                continue
            latest = self.store.latest_report(name, version, policy.validation_policy)
            statuses.append(
                ValidationStatus(
                    environment=policy.environment,
                    policy_name=policy.validation_policy,
                    verdict=latest.verdict if latest else "",
                    report_digest=latest.report_digest if latest else "",
                    run_id=latest.run_id if latest else "",
                    record_time=latest.record_time if latest else None,
                )
            )
        return statuses

    def versions_validated_for(self, environment: str, name: str | None = None) -> set[tuple[str, int]]:
        """(model, version) pairs whose latest report under `environment`'s policy PASSED.

        INVALID_ARGUMENT if the environment requires no validation (every version would qualify,
        which a set cannot say); NOT_FOUND if it is not configured.
        """
        policy = self.policies.get(environment)
        if not policy.validation_policy:
            raise InvalidArgument(f"environment {environment} requires no validation: every version qualifies")
        return {
            (r.model_name, r.version)
            for r in self.store.latest_reports(policy.validation_policy, name or "")
            if r.verdict == PASSED
        }
