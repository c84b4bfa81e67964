"""The registry as the runner's ModelSource: versions, gates and artifacts over gRPC.

Calls carry the runner's own service token (re-read from its file on rotation). Registry errors
become domain errors: NOT_FOUND stays NOT_FOUND (no such version), an unreachable or refusing
registry is UNAVAILABLE for the runner's caller, because nothing is wrong with their request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from causeway.common.v1 import digest_pb2, environment_pb2, gate_pb2, model_pb2, tensor_pb2
from causeway.registry.v1 import (
    artifact_pb2,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    governance_service_pb2,
    governance_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.gpu_runner.domain.source import FailedGate, GatesBlocked, ResolvedVersion
from services.gpu_runner.domain.tensors import Signature, TensorSpec

Metadata = Callable[[], tuple[tuple[str, str], ...]]

_ENVIRONMENTS = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}


def _datatype(value: tensor_pb2.DataType.ValueType) -> str:
    return tensor_pb2.DataType.Name(value).removeprefix("DATA_TYPE_")


def _signature(message) -> Signature | None:
    if not message.inputs and not message.outputs:
        return None
    return Signature(
        inputs=tuple(TensorSpec(t.name, _datatype(t.datatype), tuple(t.shape)) for t in message.inputs),
        outputs=tuple(TensorSpec(t.name, _datatype(t.datatype), tuple(t.shape)) for t in message.outputs),
    )


def _translate(err: grpc.RpcError, what: str) -> Exception:
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or f"{what}: not found in the registry")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(f"{what}: {details}")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return Unavailable(f"the registry refused the runner's credentials ({code.name}: {details}); see the RUNBOOK")
    if code == grpc.StatusCode.DATA_LOSS:
        return FailedPrecondition(f"{what}: the registry's stored bytes are corrupt ({details})")
    return Unavailable(f"{what}: the registry did not answer ({code.name}: {details}); retry later")


class RegistryClient:
    """ModelSource over the registry's RegistryService, GovernanceService and ArtifactService."""

    def __init__(self, channel: grpc.Channel, environment: str, metadata: Metadata, *, timeout: float = 30.0) -> None:
        if environment not in _ENVIRONMENTS:
            raise ValueError(f"unknown environment {environment!r}")
        self.environment = environment
        self._metadata = metadata
        self._timeout = timeout
        self._registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._governance = governance_service_pb2_grpc.GovernanceServiceStub(channel)
        self._artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(channel)

    def resolve(self, name: str, version: int) -> ResolvedVersion:
        request = registry_service_pb2.GetModelVersionRequest(model=model_pb2.ModelRef(name=name, version=version))
        try:
            found = self._registry.GetModelVersion(request, metadata=self._metadata(), timeout=self._timeout).version
        except grpc.RpcError as err:
            raise _translate(err, f"{name} version {version}") from None
        artifact = found.artifact
        if artifact.layout == artifact_pb2.ARTIFACT_LAYOUT_UNSPECIFIED or not artifact.size_bytes:
            # The version carries only the digest: ask the artifact service for size and layout.
            artifact = self._artifact(artifact.digest.hex, f"{name} version {version}")
        layout = "TAR" if artifact.layout == artifact_pb2.ARTIFACT_LAYOUT_TAR else "FILE"
        return ResolvedVersion(
            name=name,
            version=version,
            format=model_pb2.ModelFormat.Name(found.format).removeprefix("MODEL_FORMAT_"),
            digest=artifact.digest.hex,
            size_bytes=artifact.size_bytes,
            layout=layout,
            signature=_signature(found.signature),
            tags=dict(found.tags),
            filename=artifact.filename,
        )

    def _artifact(self, digest: str, what: str) -> artifact_pb2.Artifact:
        request = artifact_service_pb2.GetArtifactRequest(
            digest=digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=digest)
        )
        try:
            return self._artifacts.GetArtifact(request, metadata=self._metadata(), timeout=self._timeout).artifact
        except grpc.RpcError as err:
            raise _translate(err, f"the artifact of {what}") from None

    def check_gates(self, version: ResolvedVersion) -> None:
        request = governance_service_pb2.CheckGatesRequest(
            model=model_pb2.ModelRef(name=version.name, version=version.version),
            environment=_ENVIRONMENTS[self.environment],
        )
        try:
            answer = self._governance.CheckGates(request, metadata=self._metadata(), timeout=self._timeout)
        except grpc.RpcError as err:
            raise _translate(err, f"gates of {version.name} version {version.version}") from None
        failed = [
            FailedGate(gate_pb2.Gate.Name(g.gate).removeprefix("GATE_"), gate_pb2.GateStatus.Name(g.status), g.message)
            for g in answer.gates
            if g.status == gate_pb2.GATE_STATUS_FAILED
        ]
        if answer.decision != gate_pb2.GATE_DECISION_ALLOWED:
            raise GatesBlocked(version.name, version.version, self.environment, failed)
        if answer.artifact_digest.hex and answer.artifact_digest.hex != version.digest:
            # The gates were evaluated for other bytes than the ones we are about to fetch.
            raise FailedPrecondition(
                f"the gates of {version.name} version {version.version} were checked for artifact "
                f"sha256:{answer.artifact_digest.hex}, not sha256:{version.digest}"
            )

    def artifact_chunks(self, digest: str) -> Iterator[bytes]:
        request = artifact_service_pb2.DownloadArtifactRequest(
            digest=digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=digest)
        )
        try:
            # No deadline per message: big artifacts take long; the stream fails if the registry dies.
            for message in self._artifacts.DownloadArtifact(request, metadata=self._metadata()):
                if message.WhichOneof("content") == "chunk":
                    yield message.chunk
        except grpc.RpcError as err:
            raise _translate(err, f"artifact sha256:{digest}") from None
