"""causeway.deployer.v1.DeployerService: validate the request, call the domain, map the result."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from causeway.common.v1 import environment_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployer_service_pb2_grpc as svc_grpc
from causeway.deployer.v1 import deployment_pb2 as pb
from libs.auth import principal as principal_ctx
from libs.errors.domain_errors import InvalidArgument, Unauthenticated
from libs.grpc_server.rich_status import rich_status
from libs.grpc_server.server import ServiceBinding
from services.deployer.api import convert as conv
from services.deployer.domain.deployer import Deployer, Request
from services.deployer.domain.ports import GatesBlocked, ListFilter
from services.deployer.domain.queries import Queries
from services.deployer.domain.records import ModelRef

F = TypeVar("F", bound=Callable[..., Any])


def with_gate_failure(method: F) -> F:
    """A gate refusal leaves as FAILED_PRECONDITION with a GateFailure detail; all else to the bootstrap."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except GatesBlocked as err:
            context.abort_with_status(
                rich_status(grpc.StatusCode.FAILED_PRECONDITION, err.message, conv.gate_failure(err.check))
            )

    return wrapper  # type: ignore[return-value]


class DeployerServicer(svc_grpc.DeployerServiceServicer):
    def __init__(self, deployer: Deployer, queries: Queries, issuer: str, clouds: tuple[str, ...]) -> None:
        self.deployer = deployer
        self.queries = queries
        self.issuer = issuer
        self.clouds = clouds

    def _actor(self):
        principal = principal_ctx.current()
        if principal is None:  # only if the server was assembled without the auth interceptor
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
        return conv.actor(principal, self.issuer)

    def _cloud(self, value: environment_pb2.Cloud.ValueType) -> str:
        cloud = conv.cloud(value)
        if cloud not in self.clouds:
            raise InvalidArgument(f"this deployer does not serve cloud {cloud} (it serves {', '.join(self.clouds)})")
        return cloud

    def _request(self, request, environment: environment_pb2.Environment.ValueType, strategy=None) -> Request:
        return Request(
            environment=conv.environment(environment),
            cloud=self._cloud(request.cloud),
            reason=request.reason,
            change_request=request.change_request,
            request_id=request.request_id,
            strategy=conv.strategy(strategy) if strategy is not None else conv.strategy(pb.DeploymentStrategy()),
        )

    @with_gate_failure
    def DeployModel(self, request: svc.DeployModelRequest, context) -> svc.DeployModelResponse:
        if not request.HasField("model") or not request.model.name:
            raise InvalidArgument("model is required (name and version)")
        req = self._request(request, request.environment, request.strategy)
        d = self.deployer.deploy(self._actor(), ModelRef(request.model.name, request.model.version), req)
        return svc.DeployModelResponse(deployment=conv.deployment(d))

    @with_gate_failure
    def PromoteModel(self, request: svc.PromoteModelRequest, context) -> svc.PromoteModelResponse:
        source = conv.environment(request.source_environment, "source_environment")
        req = self._request(request, request.target_environment, request.strategy)
        d = self.deployer.promote(self._actor(), request.model_name, source, req)
        return svc.PromoteModelResponse(deployment=conv.deployment(d))

    @with_gate_failure
    def RollbackModel(self, request: svc.RollbackModelRequest, context) -> svc.RollbackModelResponse:
        req = self._request(request, request.environment)
        d = self.deployer.rollback(self._actor(), request.model_name, request.target_revision.strip().lower(), req)
        return svc.RollbackModelResponse(deployment=conv.deployment(d))

    def AbortDeployment(self, request: svc.AbortDeploymentRequest, context) -> svc.AbortDeploymentResponse:
        d = self.deployer.abort(self._actor(), request.deployment_id, request.reason)
        return svc.AbortDeploymentResponse(deployment=conv.deployment(d))

    def GetDeployment(self, request: svc.GetDeploymentRequest, context) -> svc.GetDeploymentResponse:
        self.deployer.progress.reconcile()  # a merged pull request advances on the next look
        return svc.GetDeploymentResponse(deployment=conv.deployment(self.queries.get(request.deployment_id)))

    def GetDeploymentStatus(self, request, context) -> svc.GetDeploymentStatusResponse:
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        env, cloud = conv.environment(request.environment), self._cloud(request.cloud)
        s = self.queries.status(request.model_name, env, cloud)
        status = pb.DeploymentStatus(
            model_name=request.model_name,
            environment=request.environment,
            cloud=request.cloud,
            revision=s.get("revision", ""),
            sync_status={"synced": pb.SYNC_STATUS_SYNCED, "out_of_sync": pb.SYNC_STATUS_OUT_OF_SYNC}.get(
                s["sync"], pb.SYNC_STATUS_UNSPECIFIED
            ),
            health_status={
                "healthy": pb.HEALTH_STATUS_HEALTHY,
                "progressing": pb.HEALTH_STATUS_PROGRESSING,
                "degraded": pb.HEALTH_STATUS_DEGRADED,
                "missing": pb.HEALTH_STATUS_MISSING,
            }.get(s["health"], pb.HEALTH_STATUS_UNSPECIFIED),
            traffic=[
                pb.TrafficTarget(model=conv.model_ref(ModelRef(request.model_name, v)), percent=p)
                for v, p in s["traffic"]
            ],
            active_deployment_id=s["active_deployment_id"],
            observe_time=conv._ts(s["observe_time"]),
        )
        if s["live"] is not None:
            status.live_model.CopyFrom(conv.model_ref(s["live"]))
            artifact = conv.digest(s["artifact_digest"])
            if artifact is not None:
                status.artifact_digest.CopyFrom(artifact)
        return svc.GetDeploymentStatusResponse(status=status)

    def ListDeployments(self, request: svc.ListDeploymentsRequest, context) -> svc.ListDeploymentsResponse:
        flt = ListFilter(
            model_name=request.model_name,
            environment=conv.environment(request.environment, required=False),
            cloud=conv.cloud(request.cloud, required=False),
            state=conv.STATE_FROM_PB.get(request.state),
            kind=conv.KIND_FROM_PB[request.kind].value if request.kind in conv.KIND_FROM_PB else "",
        )
        self.deployer.progress.reconcile()
        rows, token = self.queries.list(flt, request.page_size, request.page_token)
        return svc.ListDeploymentsResponse(deployments=[conv.deployment(d) for d in rows], next_page_token=token)

    def ListDeploymentHistory(self, request, context) -> svc.ListDeploymentHistoryResponse:
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        env, cloud = conv.environment(request.environment), self._cloud(request.cloud)
        rows, token = self.queries.history(request.model_name, env, cloud, request.page_size, request.page_token)
        return svc.ListDeploymentHistoryResponse(
            revisions=[conv.revision(r, allowed) for r, allowed in rows], next_page_token=token
        )


def binding(servicer: DeployerServicer) -> ServiceBinding:
    name = svc.DESCRIPTOR.services_by_name["DeployerService"].full_name
    return ServiceBinding(name, lambda server: svc_grpc.add_DeployerServiceServicer_to_server(servicer, server))
