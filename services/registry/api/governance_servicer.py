"""causeway.registry.v1.GovernanceService: validate the request, call the domain, map the result.

Authentication and the per-RPC permission are the auth interceptor's (api/permissions.py); domain
errors become status codes in libs/grpc_server. Only the errors that carry a detail message
(DigestMismatch, GateFailure) are turned into statuses here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from causeway.registry.v1 import governance_service_pb2 as pb
from causeway.registry.v1 import governance_service_pb2_grpc as pb_grpc
from libs.auth import principal as principal_ctx
from libs.auth.principal import Principal
from libs.errors.domain_errors import InvalidArgument, Unauthenticated
from libs.grpc_server.rich_status import rich_status
from libs.grpc_server.server import ServiceBinding
from services.registry.api import governance_convert as conv
from services.registry.api.convert import digest_hex, timestamp
from services.registry.domain.approvals import SignRequest
from services.registry.domain.governance import Governance
from services.registry.domain.governance_records import GatesBlocked, ReportDigestMismatch
from services.registry.domain.reports import ReportSubmission

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GovernanceService"].full_name
F = TypeVar("F", bound=Callable[..., Any])


def _caller() -> Principal:
    principal = principal_ctx.current()
    if principal is None:  # only if the server was assembled without the auth interceptor
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
    return principal


def with_details(method: F) -> F:
    """Errors with a detail message leave as google.rpc.Status; all others go to the bootstrap."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ReportDigestMismatch as err:
            context.abort_with_status(
                rich_status(grpc.StatusCode.INVALID_ARGUMENT, err.message, conv.digest_mismatch(err))
            )
        except GatesBlocked as err:
            context.abort_with_status(
                rich_status(grpc.StatusCode.FAILED_PRECONDITION, err.message, conv.gate_failure(err.check))
            )

    return wrapper  # type: ignore[return-value]


def _model(request) -> tuple[str, int]:
    if not request.HasField("model"):
        raise InvalidArgument("model is required (name and version)")
    return request.model.name, request.model.version


class GovernanceServicer(pb_grpc.GovernanceServiceServicer):
    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    @with_details
    def RecordValidationReport(self, request, context):
        name, version = _model(request)
        submission = ReportSubmission(
            model_name=name,
            version=version,
            artifact_digest=digest_hex(request.artifact_digest, "artifact_digest"),
            policy_name=request.policy_name,
            policy_digest=digest_hex(request.policy_digest, "policy_digest"),
            environment=conv.environment(request.environment, required=False),
            run_id=request.run_id,
            verdict=conv.verdict(request.verdict),
            report_json=request.report_json,
            report_digest=digest_hex(request.report_digest, "report_digest"),
        )
        record = self.governance.reports.record(_caller(), submission)
        return pb.RecordValidationReportResponse(record=conv.report_record(record))

    def GetValidationReport(self, request, context):
        report = self.governance.reports.get(digest_hex(request.report_digest, "report_digest"))
        return pb.GetValidationReportResponse(record=conv.report_record(report, with_json=True))

    def ListValidationReports(self, request, context):
        reports, token = self.governance.reports.list(
            request.model_name,
            request.version,
            request.policy_name,
            conv.verdict(request.verdict),
            request.page_size,
            request.page_token,
        )
        return pb.ListValidationReportsResponse(records=[conv.report_record(r) for r in reports], next_page_token=token)

    def CreateApproval(self, request, context):
        name, version = _model(request)
        sign = SignRequest(
            model_name=name,
            version=version,
            environment=conv.environment(request.environment),
            meaning=conv.meaning(request.meaning),
            reason=request.reason,
            artifact_digest=digest_hex(request.artifact_digest, "artifact_digest"),
            report_digest=digest_hex(request.validation_report_digest, "validation_report_digest", required=False),
            request_id=request.request_id,
        )
        approval = self.governance.approvals.create(_caller(), sign)
        return pb.CreateApprovalResponse(approval=conv.approval(approval))

    def RevokeApproval(self, request, context):
        approval = self.governance.approvals.revoke(_caller(), request.approval_id, request.reason, request.request_id)
        assert approval.revocation is not None  # revoke() returns the revoked approval
        return pb.RevokeApprovalResponse(
            revocation=conv.revocation(approval.revocation), approval=conv.approval(approval)
        )

    def GetApproval(self, request, context):
        return pb.GetApprovalResponse(approval=conv.approval(self.governance.approvals.get(request.approval_id)))

    def ListApprovals(self, request, context):
        approvals, token = self.governance.approvals.list(
            request.model_name,
            request.version,
            conv.environment(request.environment, required=False),
            conv.approval_state(request.state),
            request.page_size,
            request.page_token,
        )
        return pb.ListApprovalsResponse(approvals=[conv.approval(a) for a in approvals], next_page_token=token)

    def GetEnvironmentPolicy(self, request, context):
        policy = self.governance.policies.get(conv.environment(request.environment))
        return pb.GetEnvironmentPolicyResponse(policy=conv.policy(policy))

    def ListEnvironmentPolicies(self, request, context):
        return pb.ListEnvironmentPoliciesResponse(policies=[conv.policy(p) for p in self.governance.policies.all()])

    def CheckGates(self, request, context):
        name, version = _model(request)
        check = self.governance.check_gates(name, version, conv.environment(request.environment))
        response = pb.CheckGatesResponse(
            decision=conv.gate_decision(check),
            gates=[conv.gate_result(g) for g in check.gates],
            policy=conv.policy(check.policy),
            approval_ids=list(check.approval_ids),
            evaluate_time=timestamp(check.evaluate_time),
        )
        response.artifact_digest.CopyFrom(conv.digest_proto(check.artifact_digest))
        if check.report_digest:
            response.validation_report_digest.CopyFrom(conv.digest_proto(check.report_digest))
        return response


def binding(governance: Governance) -> ServiceBinding:
    """The GovernanceService as a libs.grpc_server binding."""
    servicer = GovernanceServicer(governance)
    return ServiceBinding(
        SERVICE_NAME, lambda server: pb_grpc.add_GovernanceServiceServicer_to_server(servicer, server)
    )
