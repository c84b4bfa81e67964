"""Approvals: electronic signatures in the sense of 21 CFR Part 11 on a version for an environment.

A signature carries the signer's identity from the verified token (never a request field), the
server time, the meaning and a reason, and is bound to the version's artifact digest and the
validation report the signer reviewed (11.50, 11.70). Signing needs a recent sign-in (11.200:
the token must be younger than the signing window). Separation of duties: the submitter of a
version cannot sign it where the environment's policy excludes submitters. Signatures are never
edited or deleted; a revocation is a new signed record that references the original.

Each signed record is written to the audit chain first (payload digest = record digest), then
stored with that event's sequence number. If the store then refuses the row (a concurrent
replica won a race on a unique key), a `failure` event follows, so the chain never claims a
signature the registry does not hold without saying so.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from libs.auth.principal import Principal
from libs.errors.domain_errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.registry.domain import naming
from services.registry.domain.auditing import Auditor
from services.registry.domain.governance_records import (
    ACTIVE,
    MEANINGS,
    REVOKED,
    Approval,
    CatalogLookup,
    Conflict,
    Revocation,
    check_hex,
    check_request_id,
    decode_token,
    encode_token,
    page_size,
    plain_hex,
    seconds,
    statement,
    utcnow,
)
from services.registry.domain.policies import PolicySet
from services.registry.domain.records import ARCHIVED, ENVIRONMENTS, ActorRecord
from services.registry.domain.reports import ValidationReports

if TYPE_CHECKING:
    from services.registry.storage.governance_db import SqlGovernanceStore


@dataclasses.dataclass(frozen=True)
class SignRequest:
    """CreateApprovalRequest as plain data; the signer is the caller, never a field."""

    model_name: str
    version: int
    environment: str
    meaning: str
    reason: str
    artifact_digest: str
    report_digest: str = ""
    request_id: str = ""


def _check_sign_request(r: SignRequest) -> SignRequest:
    naming.model_name(r.model_name, "model.name")
    naming.version_number(r.version)
    if r.environment not in ENVIRONMENTS:
        raise InvalidArgument(f"environment is required: one of {', '.join(ENVIRONMENTS)}")
    if r.meaning not in MEANINGS:
        raise InvalidArgument(f"meaning is required: one of {', '.join(MEANINGS)}")
    naming.text(r.reason, "reason", naming.MAX_REASON, required=True)
    check_hex(r.artifact_digest, "artifact_digest")
    check_hex(r.report_digest, "validation_report_digest", required=False)
    return dataclasses.replace(r, reason=r.reason.strip(), request_id=check_request_id(r.request_id))


def _same_request(a: Approval, r: SignRequest, principal: Principal) -> bool:
    return (
        a.signer.subject,
        a.model_name,
        a.version,
        a.environment,
        a.meaning,
        a.reason,
        a.artifact_digest,
        a.report_digest,
    ) == (
        principal.subject,
        r.model_name,
        r.version,
        r.environment,
        r.meaning,
        r.reason,
        r.artifact_digest,
        r.report_digest,
    )


class Approvals:
    """Signs, revokes and reads approvals."""

    def __init__(
        self,
        store: SqlGovernanceStore,
        catalog: CatalogLookup,
        reports: ValidationReports,
        auditor: Auditor,
        policies: PolicySet,
        *,
        signing_window_minutes: float,
        issuer: str = "",
        clock: Callable[[], dt.datetime] = utcnow,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.reports = reports
        self.auditor = auditor
        self.policies = policies
        self.window = signing_window_minutes
        self.issuer = issuer
        self.clock = clock
        self.new_id = new_id
        # One signer's check (duplicates, revoked?) and write must not interleave with another's.
        self._lock = threading.Lock()

    def _require_person(self, principal: Principal, what: str) -> None:
        if principal.kind == "service":
            raise PermissionDenied(f"{principal.subject} is a service: only a person can {what}")

    def _require_recent_login(self, principal: Principal, now: dt.datetime) -> None:
        if not principal.authenticated_within(self.window, now=now):
            age = (now - principal.issued_at).total_seconds() / 60
            raise Unauthenticated(
                f"an electronic signature needs a sign-in within the last {self.window:g} minutes and yours is "
                f"{age:.0f} minutes old: re-authenticate (get a new token) and sign again"
            )

    def create(self, principal: Principal, request: SignRequest) -> Approval:
        """Sign `request` as `principal`; a retry with the same request_id returns the first approval.

        Codes as GovernanceService.CreateApproval documents them.
        """
        r = _check_sign_request(request)
        if r.request_id:
            earlier = self.store.approval_by_request(r.request_id)
            if earlier is not None:
                return self._retried(earlier, r, principal)
        self._require_person(principal, "sign an approval")
        rules = self.policies.get(r.environment).approvals
        if not rules.eligible(principal.roles):
            raise PermissionDenied(
                f"{principal.subject} holds none of the roles that may sign for {r.environment} "
                f"({', '.join(rules.approver_roles)})"
            )
        version = self.catalog.get_version(r.model_name, r.version)
        if rules.submitter_excluded and principal.subject == version.created_by.subject:
            raise PermissionDenied(
                f"separation of duties: {principal.subject} registered {version.ref} and may not sign it for "
                f"{r.environment}; another approver must"
            )
        now = self.clock()
        self._require_recent_login(principal, now)
        if version.state == ARCHIVED:
            raise FailedPrecondition(f"{version.ref} is archived and can no longer be signed")
        if plain_hex(version.artifact_digest) != r.artifact_digest:
            raise FailedPrecondition(
                f"artifact_digest sha256:{r.artifact_digest} is not the artifact of {version.ref} "
                f"(sha256:{plain_hex(version.artifact_digest)}): show the signer the version's artifact and sign again"
            )
        self._check_report(r)
        signer = ActorRecord.of(principal, self.issuer)
        signed_at = seconds(now)
        approval = Approval(
            approval_id=self.new_id(),
            model_name=r.model_name,
            version=r.version,
            environment=r.environment,
            meaning=r.meaning,
            statement=statement(signer, r.model_name, r.version, r.environment, signed_at, r.meaning, r.reason),
            reason=r.reason,
            signer=signer,
            sign_time=signed_at,
            artifact_digest=r.artifact_digest,
            report_digest=r.report_digest,
            request_id=r.request_id,
        )
        approval = dataclasses.replace(approval, record_digest=approval.computed_digest())
        with self._lock:
            self._refuse_duplicate(principal, r)
            details = {
                "environment": r.environment,
                "meaning": r.meaning,
                "statement": approval.statement,
                "artifact_digest": r.artifact_digest,
                "validation_report_digest": r.report_digest,
            }
            event = self.auditor.record(
                principal, "approval.sign", approval.subject, details, payload_digest=approval.record_digest
            )
            approval = dataclasses.replace(approval, audit_sequence=event.seq)
            try:
                self.store.insert_approval(approval)
            except Conflict:
                self._record_lost_race(principal, "approval.sign", approval.subject, approval.record_digest)
                earlier = self.store.approval_by_request(r.request_id) if r.request_id else None
                if earlier is not None:
                    return self._retried(earlier, r, principal)
                raise
        return approval

    def _retried(self, earlier: Approval, r: SignRequest, principal: Principal) -> Approval:
        if not _same_request(earlier, r, principal):
            raise AlreadyExists(f"request_id {r.request_id} was already used for a different approval request")
        return earlier

    def _check_report(self, r: SignRequest) -> None:
        """The report digest the client showed must be the one approvals for the environment bind to."""
        policy = self.policies.get(r.environment)
        ref = f"model {r.model_name} version {r.version}"
        if not policy.validation_policy:
            if r.report_digest:
                report = self.store.get_report(r.report_digest)
                if report is None or (report.model_name, report.version) != (r.model_name, r.version):
                    raise FailedPrecondition(f"validation report sha256:{r.report_digest} is not a report of {ref}")
            return
        current = self.reports.current_passed(r.model_name, r.version, r.environment)
        if current is None:
            latest = self.reports.latest(r.model_name, r.version, r.environment)
            found = f"the latest is {latest.verdict} (run {latest.run_id})" if latest else "none was recorded"
            raise FailedPrecondition(
                f"{r.environment} requires a PASSED validation under policy {policy.validation_policy!r} before "
                f"signing, and {ref} has none: {found}"
            )
        if r.report_digest != current.report_digest:
            shown = f"sha256:{r.report_digest}" if r.report_digest else "no report"
            raise FailedPrecondition(
                f"validation_report_digest ({shown}) is not the latest PASSED report of {ref} under policy "
                f"{policy.validation_policy!r} (sha256:{current.report_digest}): show the signer that report and "
                "sign again"
            )

    def _refuse_duplicate(self, principal: Principal, r: SignRequest) -> None:
        # Only a signature bound to the same report is a duplicate: after a new PASSED report the old
        # signature no longer counts, and the signer must be able to sign the report now current.
        for a in self.store.approvals_of(r.model_name, r.version, r.environment):
            if (
                a.active
                and a.signer.subject == principal.subject
                and a.meaning == r.meaning
                and a.report_digest == r.report_digest
            ):
                raise AlreadyExists(
                    f"{principal.subject} already signed model {r.model_name} version {r.version} for "
                    f"{r.environment} as {r.meaning} (approval {a.approval_id}); revoke it to sign again"
                )

    def _record_lost_race(self, principal: Principal, action: str, subject: str, digest: str) -> None:
        self.auditor.record(
            principal,
            action,
            subject,
            {"error": "not stored: a concurrent request won"},
            outcome="failure",
            payload_digest=digest,
        )

    def revoke(self, principal: Principal, approval_id: str, reason: str, request_id: str = "") -> Approval:
        """Append a signed revocation; returns the approval, now REVOKED, with its revocation.

        Codes as GovernanceService.RevokeApproval documents them.
        """
        approval_id = check_request_id(approval_id, "approval_id")
        if not approval_id:
            raise InvalidArgument("approval_id is required")
        naming.text(reason, "reason", naming.MAX_REASON, required=True)
        reason = reason.strip()
        request_id = check_request_id(request_id)
        if request_id:
            earlier = self.store.approval_by_revocation_request(request_id)
            if earlier is not None:
                return self._revoke_retried(earlier, approval_id, reason, principal, request_id)
        self._require_person(principal, "revoke an approval")
        approval = self.get(approval_id)
        if principal.subject != approval.signer.subject:
            rules = self.policies.get(approval.environment).approvals if approval.environment in self.policies else None
            if rules is None or not rules.eligible(principal.roles):
                raise PermissionDenied(
                    f"{principal.subject} neither signed approval {approval_id} nor may sign for "
                    f"{approval.environment}, so cannot revoke it"
                )
        now = self.clock()
        self._require_recent_login(principal, now)
        revocation = Revocation(
            revocation_id=self.new_id(),
            approval_id=approval_id,
            approval_record_digest=approval.record_digest,
            reason=reason,
            revoker=ActorRecord.of(principal, self.issuer),
            revoke_time=seconds(now),
            request_id=request_id,
        )
        revocation = dataclasses.replace(revocation, record_digest=revocation.computed_digest())
        with self._lock:
            current = self.get(approval_id)
            if current.revocation is not None:
                raise FailedPrecondition(
                    f"approval {approval_id} was already revoked by {current.revocation.revoker.subject} "
                    f"(revocation {current.revocation.revocation_id})"
                )
            details = {
                "revocation_id": revocation.revocation_id,
                "approval_record_digest": approval.record_digest,
                "reason": reason,
                "environment": approval.environment,
            }
            event = self.auditor.record(
                principal, "approval.revoke", approval.subject, details, payload_digest=revocation.record_digest
            )
            revocation = dataclasses.replace(revocation, audit_sequence=event.seq)
            try:
                self.store.insert_revocation(revocation)
            except Conflict:
                self._record_lost_race(principal, "approval.revoke", approval.subject, revocation.record_digest)
                earlier = self.store.approval_by_revocation_request(request_id) if request_id else None
                if earlier is not None:
                    return self._revoke_retried(earlier, approval_id, reason, principal, request_id)
                raise FailedPrecondition(f"approval {approval_id} was revoked concurrently") from None
        return dataclasses.replace(approval, revocation=revocation)

    @staticmethod
    def _revoke_retried(
        earlier: Approval, approval_id: str, reason: str, principal: Principal, request_id: str
    ) -> Approval:
        rev = earlier.revocation
        if rev is None or (rev.approval_id, rev.reason, rev.revoker.subject) != (
            approval_id,
            reason,
            principal.subject,
        ):
            raise AlreadyExists(f"request_id {request_id} was already used for a different revocation")
        return earlier

    def get(self, approval_id: str) -> Approval:
        """One approval with its revocation; NOT_FOUND if there is none with that id."""
        approval_id = check_request_id(approval_id, "approval_id")
        approval = self.store.get_approval(approval_id) if approval_id else None
        if approval is None:
            raise NotFound(f"no approval {approval_id or '(empty id)'} exists")
        return approval

    def list(
        self, name: str, version: int, environment: str, state: str, size: int, token: str
    ) -> tuple[list[Approval], str]:
        """A page of a model's (or version's) approvals, oldest first, and the next page token."""
        naming.model_name(name, "model_name")
        if version < 0:
            raise InvalidArgument("version must be 0 (all versions) or 1 or more")
        if environment and environment not in ENVIRONMENTS:
            raise InvalidArgument(f"environment must be one of {', '.join(ENVIRONMENTS)} or unset")
        if state and state not in (ACTIVE, REVOKED):
            raise InvalidArgument("state must be ACTIVE, REVOKED or unset")
        size = page_size(size)
        query = {
            "kind": "approvals",
            "name": name,
            "version": version,
            "env": environment,
            "state": state,
            "size": size,
        }
        after = decode_token(query, token)
        self.catalog.get_model(name)  # NOT_FOUND for an unknown model rather than an empty page
        found = self.store.list_approvals(name, version, environment, state, after, size + 1)
        page = found[:size]
        return page, encode_token(query, page[-1].audit_sequence) if len(found) > size else ""

    def active_for(self, name: str, version: int, environment: str) -> builtins.list[Approval]:
        """The version's active signatures for `environment`, oldest first."""
        return [a for a in self.store.approvals_of(name, version, environment) if a.active]
