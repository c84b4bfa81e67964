"""Proto <-> domain conversions of GovernanceService, including the error details it sends.

Errors with a detail message (DigestMismatch, GateFailure) leave as a google.rpc.Status in the
`grpc-status-details-bin` trailer (libs/grpc_server/rich_status.py), as causeway.common.v1
errors.proto specifies; the detail messages are built here.
"""

from __future__ import annotations

from collections.abc import Sequence

from causeway.common.v1 import environment_pb2, errors_pb2, gate_pb2, model_pb2, validation_pb2
from causeway.registry.v1 import approval_pb2, policy_pb2, validation_report_pb2
from causeway.registry.v1 import model_pb2 as registry_model_pb2
from libs.errors.domain_errors import InvalidArgument
from services.registry.api.convert import actor, digest_proto, timestamp
from services.registry.domain.governance_records import (
    Approval,
    GateCheck,
    GateResult,
    ReportDigestMismatch,
    Revocation,
    ValidationReport,
    ValidationStatus,
)
from services.registry.domain.policies import SUBMITTER_ALLOWED, EnvironmentPolicy

_ENVIRONMENTS = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}
_ENVIRONMENT_NAMES = {v: k for k, v in _ENVIRONMENTS.items()}


def environment(
    value: environment_pb2.Environment.ValueType, field: str = "environment", *, required: bool = True
) -> str:
    """ "dev"/"test"/"prod" of an Environment enum value; "" for UNSPECIFIED unless required."""
    if value == environment_pb2.ENVIRONMENT_UNSPECIFIED:
        if required:
            raise InvalidArgument(f"{field} is required (ENVIRONMENT_DEV, ENVIRONMENT_TEST or ENVIRONMENT_PROD)")
        return ""
    try:
        return _ENVIRONMENT_NAMES[value]
    except KeyError:
        raise InvalidArgument(f"{field} {value} is not a known environment") from None


def environment_proto(name: str) -> environment_pb2.Environment.ValueType:
    return _ENVIRONMENTS.get(name, environment_pb2.ENVIRONMENT_UNSPECIFIED)


def _enum_name(enum_type, value: int, prefix: str, field: str) -> str:
    """The domain name of an enum value ("" for 0); INVALID_ARGUMENT for a number it does not know."""
    if value == 0:
        return ""
    try:
        return enum_type.Name(value).removeprefix(prefix)
    except ValueError:
        raise InvalidArgument(f"{field} {value} is not a known value") from None


def meaning(value: int) -> str:
    return _enum_name(approval_pb2.SignatureMeaning, value, "SIGNATURE_MEANING_", "meaning")


def verdict(value: int) -> str:
    return _enum_name(validation_pb2.ValidationVerdict, value, "VALIDATION_VERDICT_", "verdict")


def approval_state(value: int) -> str:
    return _enum_name(approval_pb2.ApprovalState, value, "APPROVAL_STATE_", "state")


def _verdict_proto(name: str) -> validation_pb2.ValidationVerdict.ValueType:
    if not name:
        return validation_pb2.VALIDATION_VERDICT_UNSPECIFIED
    return validation_pb2.ValidationVerdict.Value(f"VALIDATION_VERDICT_{name}")


def report_record(r: ValidationReport, *, with_json: bool = False) -> validation_report_pb2.ValidationReportRecord:
    return validation_report_pb2.ValidationReportRecord(
        model=model_pb2.ModelRef(name=r.model_name, version=r.version),
        artifact_digest=digest_proto(r.artifact_digest),
        policy_name=r.policy_name,
        policy_digest=digest_proto(r.policy_digest),
        environment=environment_proto(r.environment),
        run_id=r.run_id,
        verdict=_verdict_proto(r.verdict),
        report_digest=digest_proto(r.report_digest),
        report_json=r.report_json if with_json else b"",
        recorded_by=actor(r.recorded_by),
        record_time=timestamp(r.record_time),
    )


def revocation(r: Revocation) -> approval_pb2.Revocation:
    return approval_pb2.Revocation(
        revocation_id=r.revocation_id,
        approval_id=r.approval_id,
        approval_record_digest=digest_proto(r.approval_record_digest),
        reason=r.reason,
        revoker=actor(r.revoker),
        revoke_time=timestamp(r.revoke_time),
        record_digest=digest_proto(r.record_digest),
        audit_sequence=r.audit_sequence,
    )


def approval(a: Approval) -> approval_pb2.Approval:
    out = approval_pb2.Approval(
        approval_id=a.approval_id,
        model=model_pb2.ModelRef(name=a.model_name, version=a.version),
        environment=environment_proto(a.environment),
        meaning=approval_pb2.SignatureMeaning.Value(f"SIGNATURE_MEANING_{a.meaning}"),
        statement=a.statement,
        reason=a.reason,
        signer=actor(a.signer),
        sign_time=timestamp(a.sign_time),
        artifact_digest=digest_proto(a.artifact_digest),
        record_digest=digest_proto(a.record_digest),
        audit_sequence=a.audit_sequence,
        state=approval_pb2.ApprovalState.Value(f"APPROVAL_STATE_{a.state}"),
    )
    if a.report_digest:
        out.validation_report_digest.CopyFrom(digest_proto(a.report_digest))
    if a.revocation is not None:
        out.revocation.CopyFrom(revocation(a.revocation))
    return out


def policy(p: EnvironmentPolicy) -> policy_pb2.EnvironmentPolicy:
    out = policy_pb2.EnvironmentPolicy(
        environment=environment_proto(p.environment),
        requires_environment=environment_proto(p.requires_environment),
        policy_digest=digest_proto(p.digest),
    )
    if p.validation_policy:
        out.validation.policy_name = p.validation_policy
    if p.approvals_required:
        rules = p.approvals
        out.approvals.CopyFrom(
            policy_pb2.ApprovalRequirement(
                min_approvals=rules.min_approvals,
                approver_roles=list(rules.approver_roles),
                submitter_rule=policy_pb2.SUBMITTER_RULE_ALLOWED
                if rules.submitter_rule == SUBMITTER_ALLOWED
                else policy_pb2.SUBMITTER_RULE_EXCLUDED,
            )
        )
    return out


def gate_result(g: GateResult) -> gate_pb2.GateResult:
    return gate_pb2.GateResult(
        gate=gate_pb2.Gate.Value(f"GATE_{g.gate}"),
        status=gate_pb2.GateStatus.Value(f"GATE_STATUS_{g.status}"),
        message=g.message,
        evidence=list(g.evidence),
    )


def gate_decision(check: GateCheck) -> gate_pb2.GateDecision.ValueType:
    return gate_pb2.GATE_DECISION_ALLOWED if check.allowed else gate_pb2.GATE_DECISION_BLOCKED


def gate_failure(check: GateCheck) -> errors_pb2.GateFailure:
    """The GateFailure detail of a refusal based on `check` (failed gates only)."""
    return errors_pb2.GateFailure(
        model=model_pb2.ModelRef(name=check.model_name, version=check.version),
        environment=environment_proto(check.environment),
        failed_gates=[gate_result(g) for g in check.failed],
    )


def environment_validations(statuses: Sequence[ValidationStatus]) -> list[registry_model_pb2.EnvironmentValidation]:
    """ModelVersion.validations from Governance.latest_validations (for the registry servicer)."""
    return [
        registry_model_pb2.EnvironmentValidation(
            environment=environment_proto(s.environment),
            policy_name=s.policy_name,
            verdict=_verdict_proto(s.verdict),
            report_digest=digest_proto(s.report_digest),
            run_id=s.run_id,
            record_time=timestamp(s.record_time),
        )
        for s in statuses
    ]


def digest_mismatch(err: ReportDigestMismatch) -> errors_pb2.DigestMismatch:
    return errors_pb2.DigestMismatch(
        declared=digest_proto(err.declared),
        actual=digest_proto(err.actual),
        declared_size_bytes=err.size,
        actual_size_bytes=err.size,
    )
