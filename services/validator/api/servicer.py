"""ValidatorService: requests -> domain calls -> responses. Errors are domain errors (mapped by
libs.grpc_server to status codes); authentication and the per-RPC permission are the interceptor's."""

from __future__ import annotations

import grpc

from causeway.common.v1 import environment_pb2
from causeway.validator.v1 import run_pb2
from causeway.validator.v1 import validator_service_pb2 as pb
from causeway.validator.v1 import validator_service_pb2_grpc as pb_grpc
from libs.auth import principal as principal_ctx
from libs.errors.domain_errors import InvalidArgument, Unauthenticated
from services.validator.api import convert
from services.validator.domain import report as reports
from services.validator.domain import runs as r
from services.validator.domain.policies import PolicySet
from services.validator.domain.validation import StartRequest, ValidationService


class ValidatorServicer(pb_grpc.ValidatorServiceServicer):
    def __init__(self, service: ValidationService, policies: PolicySet, issuer: str) -> None:
        self.service = service
        self.policies = policies
        self.issuer = issuer

    def _actor(self) -> r.Actor:
        principal = principal_ctx.current()
        if principal is None:  # the auth interceptor always sets it; never serve without one
            raise Unauthenticated("no verified caller")
        return convert.actor_from_principal(principal, self.issuer)

    def _run(self, run: r.Run) -> run_pb2.ValidationRun:
        return convert.run(run, self.service.queue_position(run.run_id))

    def StartValidation(self, request: pb.StartValidationRequest, context: grpc.ServicerContext):
        target = request.WhichOneof("target")
        environment = ""
        if target == "environment":
            if request.environment == environment_pb2.ENVIRONMENT_UNSPECIFIED:
                raise InvalidArgument("environment must be DEV, TEST or PROD")
            environment = environment_pb2.Environment.Name(request.environment).removeprefix("ENVIRONMENT_").lower()
        elif target == "policy_name" and not request.policy_name:
            raise InvalidArgument("policy_name must not be empty")
        champion = (request.champion.name, int(request.champion.version)) if request.HasField("champion") else None
        start = StartRequest(
            model_name=request.model.name,
            version=int(request.model.version),
            policy_name=request.policy_name if target == "policy_name" else "",
            environment=environment,
            champion=champion,
            request_id=request.request_id,
        )
        run = self.service.start(self._actor(), start)
        return pb.StartValidationResponse(run=self._run(run))

    def GetValidationRun(self, request: pb.GetValidationRunRequest, context: grpc.ServicerContext):
        return pb.GetValidationRunResponse(run=self._run(self.service.get(request.run_id)))

    def WatchValidationRun(self, request: pb.WatchValidationRunRequest, context: grpc.ServicerContext):
        for event in self.service.watch(request.run_id, int(request.after_sequence), context.is_active):
            yield pb.WatchValidationRunResponse(event=convert.event(event))

    def CancelValidationRun(self, request: pb.CancelValidationRunRequest, context: grpc.ServicerContext):
        run = self.service.cancel(self._actor(), request.run_id, request.reason)
        return pb.CancelValidationRunResponse(run=self._run(run))

    def ListValidationRuns(self, request: pb.ListValidationRunsRequest, context: grpc.ServicerContext):
        flt = r.RunFilter(
            model_name=request.model_name,
            version=int(request.version),
            state=convert.run_state_name(request.state),
            policy_name=request.policy_name,
        )
        runs, token = self.service.list(flt, int(request.page_size), request.page_token)
        return pb.ListValidationRunsResponse(runs=[self._run(run) for run in runs], next_page_token=token)

    def GetValidationReport(self, request: pb.GetValidationReportRequest, context: grpc.ServicerContext):
        body, digest = self.service.report(request.run_id)
        return pb.GetValidationReportResponse(
            report=reports.parse(body), report_json=body, report_digest=reports.digest(digest)
        )

    def ListPolicies(self, request: pb.ListPoliciesRequest, context: grpc.ServicerContext):
        return pb.ListPoliciesResponse(policies=[convert.policy(p) for p in self.policies.all()])

    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext):
        if not request.name:
            raise InvalidArgument("name is required")
        return pb.GetPolicyResponse(policy=convert.policy(self.policies.get(request.name)))
