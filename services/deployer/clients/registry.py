"""The registry as the deployer sees it: gates (CheckGates) and environment aliases (SetModelAlias).

Calls carry the deployer's own service token: the registry lets only that identity move the
dev/test/prod aliases, and checks the gates again before it does.
"""

from __future__ import annotations

import grpc

from causeway.common.v1 import environment_pb2, gate_pb2, model_pb2
from causeway.registry.v1 import (
    governance_service_pb2,
    governance_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from causeway.registry.v1 import (
    model_pb2 as registry_model_pb2,
)
from libs.auth.client_tokens import FileTokenSource
from services.deployer.clients.grpc_errors import translate
from services.deployer.domain.records import GateCheck, GateResult, ModelRef

ENVIRONMENTS = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}
ALIASES = {
    "dev": registry_model_pb2.MODEL_ALIAS_DEV,
    "test": registry_model_pb2.MODEL_ALIAS_TEST,
    "prod": registry_model_pb2.MODEL_ALIAS_PROD,
}


def _digest(d) -> str:
    return f"sha256:{d.hex}" if d is not None and d.hex else ""


class RegistryClient:
    def __init__(self, channel: grpc.Channel, tokens: FileTokenSource, timeout: float = 10.0) -> None:
        self._governance = governance_service_pb2_grpc.GovernanceServiceStub(channel)
        self._registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._tokens = tokens
        self._timeout = timeout

    def check(self, model: ModelRef, environment: str) -> GateCheck:
        request = governance_service_pb2.CheckGatesRequest(
            model=model_pb2.ModelRef(name=model.name, version=model.version), environment=ENVIRONMENTS[environment]
        )
        try:
            response = self._governance.CheckGates(request, metadata=self._tokens.metadata(), timeout=self._timeout)
        except grpc.RpcError as err:
            raise translate(err, "registry CheckGates") from None
        return GateCheck(
            model=model,
            environment=environment,
            allowed=response.decision == gate_pb2.GATE_DECISION_ALLOWED,
            gates=tuple(
                GateResult(
                    gate=gate_pb2.Gate.Name(g.gate).removeprefix("GATE_"),
                    status=gate_pb2.GateStatus.Name(g.status).removeprefix("GATE_STATUS_"),
                    message=g.message,
                    evidence=tuple(g.evidence),
                )
                for g in response.gates
            ),
            artifact_digest=_digest(response.artifact_digest),
            validation_report_digest=_digest(response.validation_report_digest),
            approval_ids=tuple(response.approval_ids),
            policy_digest=_digest(response.policy.policy_digest),
        )

    def move(self, model: ModelRef, environment: str, reason: str) -> int:
        request = registry_service_pb2.SetModelAliasRequest(
            model_name=model.name, alias=ALIASES[environment], version=model.version, reason=reason
        )
        try:
            response = self._registry.SetModelAlias(request, metadata=self._tokens.metadata(), timeout=self._timeout)
        except grpc.RpcError as err:
            raise translate(err, "registry SetModelAlias") from None
        return response.previous_version
