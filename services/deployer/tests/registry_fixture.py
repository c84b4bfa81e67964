"""The real registry as a subprocess, and the golden path's setup through its real RPCs.

Register (upload + create version) as a researcher, record validation reports as the validator
service, sign approvals as reviewers / QA approvers: exactly the calls the other services and
people make, so the deployer's gates come from the registry's own evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, tensor_pb2, validation_pb2
from causeway.registry.v1 import (
    approval_pb2,
    artifact_pb2,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
)
from causeway.registry.v1 import (
    governance_service_pb2 as gov,
)
from causeway.registry.v1 import (
    governance_service_pb2_grpc as gov_grpc,
)
from causeway.registry.v1 import (
    registry_service_pb2 as reg,
)
from causeway.registry.v1 import (
    registry_service_pb2_grpc as reg_grpc,
)
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.testing.processes import ServerProcess
from libs.testing.registry_process import registry_process

ENV = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}


def _digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


@dataclasses.dataclass
class Registry:
    process: ServerProcess
    idp: DevIdentityProvider
    channel: grpc.Channel

    @property
    def address(self) -> str:
        return self.process.address

    def md(self, subject: str, *roles: str):
        return bearer(self.idp.issue(subject, roles, teams=["oncology"], name=subject.title()))

    def register(
        self,
        name: str,
        payload: bytes | None = None,
        submitter: str = "sam",
        model_format: model_pb2.ModelFormat.ValueType = model_pb2.MODEL_FORMAT_UNSPECIFIED,
    ) -> int:
        """Upload bytes as an artifact and create the next version of `name`; returns the version."""
        md = self.md(submitter, "researcher")
        stub = reg_grpc.RegistryServiceStub(self.channel)
        try:
            stub.CreateRegisteredModel(reg.CreateRegisteredModelRequest(name=name, owner_team="oncology"), metadata=md)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        data = payload if payload is not None else f"{name}-{uuid.uuid4()}".encode()
        digest = hashlib.sha256(data).hexdigest()
        meta = artifact_pb2.UploadArtifactMetadata(
            digest=_digest(digest), size_bytes=len(data), layout=artifact_pb2.ARTIFACT_LAYOUT_FILE, filename="model.bin"
        )
        uploads = iter(
            [
                artifact_service_pb2.UploadArtifactRequest(metadata=meta),
                artifact_service_pb2.UploadArtifactRequest(chunk=data),
            ]
        )
        artifact_service_pb2_grpc.ArtifactServiceStub(self.channel).UploadArtifact(uploads, metadata=md)
        request = reg.CreateModelVersionRequest(
            model_name=name,
            artifact_digest=_digest(digest),
            format=model_format or model_pb2.MODEL_FORMAT_SAFETENSORS,
            request_id=str(uuid.uuid4()),
        )
        request.signature.inputs.append(
            tensor_pb2.TensorSpec(name="x", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 4])
        )
        request.signature.outputs.append(
            tensor_pb2.TensorSpec(name="y", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 1])
        )
        return stub.CreateModelVersion(request, metadata=md).version.ref.version

    def version(self, name: str, version: int):
        return (
            reg_grpc.RegistryServiceStub(self.channel)
            .GetModelVersion(
                reg.GetModelVersionRequest(model=model_pb2.ModelRef(name=name, version=version)),
                metadata=self.md("sam", "researcher"),
            )
            .version
        )

    def validate(self, name: str, version: int, *environments: str, verdict: str = "PASSED") -> None:
        """Record a validation report per environment's policy, as the validator service does."""
        artifact = self.version(name, version).artifact.digest
        stub = gov_grpc.GovernanceServiceStub(self.channel)
        for env in environments or ("dev", "test", "prod"):
            run_id = f"run-{uuid.uuid4().hex[:8]}"
            body = json.dumps({"run_id": run_id, "verdict": verdict, "policy": env}, sort_keys=True).encode()
            stub.RecordValidationReport(
                gov.RecordValidationReportRequest(
                    model=model_pb2.ModelRef(name=name, version=version),
                    artifact_digest=artifact,
                    policy_name=env,
                    policy_digest=_digest(hashlib.sha256(env.encode()).hexdigest()),
                    environment=ENV[env],
                    run_id=run_id,
                    verdict=validation_pb2.ValidationVerdict.Value(f"VALIDATION_VERDICT_{verdict}"),
                    report_json=body,
                    report_digest=_digest(hashlib.sha256(body).hexdigest()),
                ),
                metadata=bearer(self.idp.service_token("validator")),
            )

    def approve(self, name: str, version: int, environment: str, signer: str, role: str = "qa-approver"):
        shown = self.version(name, version)
        report = next((v.report_digest for v in shown.validations if v.environment == ENV[environment]), None)
        request = gov.CreateApprovalRequest(
            model=model_pb2.ModelRef(name=name, version=version),
            environment=ENV[environment],
            meaning=approval_pb2.SIGNATURE_MEANING_APPROVED_FOR_RELEASE,
            reason="meets the release criteria",
            artifact_digest=shown.artifact.digest,
            request_id=str(uuid.uuid4()),
        )
        if report is not None:
            request.validation_report_digest.CopyFrom(report)
        return (
            gov_grpc.GovernanceServiceStub(self.channel)
            .CreateApproval(request, metadata=self.md(signer, role))
            .approval
        )

    def release(
        self,
        name: str,
        *,
        through: str = "prod",
        payload: bytes | None = None,
        model_format: model_pb2.ModelFormat.ValueType = model_pb2.MODEL_FORMAT_UNSPECIFIED,
    ) -> int:
        """A new version validated everywhere and approved up to `through` (test: 1, prod: 2 QA)."""
        version = self.register(name, payload, model_format=model_format)
        self.validate(name, version)
        if through in ("test", "prod"):
            self.approve(name, version, "test", "rita", "reviewer")
        if through == "prod":
            self.approve(name, version, "prod", "quinn")
            self.approve(name, version, "prod", "quentin")
        return version


@contextlib.contextmanager
def running_registry(tmp_path: Path, idp: DevIdentityProvider) -> Iterator[Registry]:
    """The real registry binary (libs/testing/registry_process) and a channel to it."""
    with registry_process(tmp_path / "registry", idp) as registry:
        channel = grpc.insecure_channel(registry.address)
        grpc.channel_ready_future(channel).result(timeout=30)
        try:
            yield Registry(registry.process, idp, channel)
        finally:
            channel.close()
