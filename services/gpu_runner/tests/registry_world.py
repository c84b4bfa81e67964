"""Registering, validating and approving model versions through a real registry's API.

What a scientist, the validator and approvers do before a runner may load a version: create the
model (owner team), stream the artifact up, create the version, record passed validation reports
(the validator's service token) and sign approvals (fresh qa-approver tokens of other people).
Used by the runner's registry tests and by the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable

import grpc

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, tensor_pb2
from causeway.common.v1 import validation_pb2 as verdicts
from causeway.registry.v1 import (
    approval_pb2,
    artifact_pb2,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    governance_service_pb2,
    governance_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from services.gpu_runner.domain.tensors import Signature

ENVIRONMENTS = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}
Metadata = Callable[..., tuple[tuple[str, str], ...]]


def _digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


class RegistryWorld:
    """`md(subject, roles, teams=...)` and `service_md(name)` mint tokens from the registry's IdP."""

    def __init__(self, channel: grpc.Channel, md: Metadata, service_md: Callable[[str], tuple], team: str) -> None:
        self.channel = channel
        self.registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self.artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        self.governance = governance_service_pb2_grpc.GovernanceServiceStub(channel)
        self.md = md
        self.service_md = service_md
        self.team = team

    def scientist(self):
        return self.md("alice", ["researcher"], teams=[self.team])

    def upload(self, data: bytes, *, tar: bool = False) -> str:
        digest = hashlib.sha256(data).hexdigest()
        layout = artifact_pb2.ARTIFACT_LAYOUT_TAR if tar else artifact_pb2.ARTIFACT_LAYOUT_FILE
        meta = artifact_pb2.UploadArtifactMetadata(
            digest=_digest(digest), size_bytes=len(data), layout=layout, filename="model.tar" if tar else "model.bin"
        )

        def requests():
            yield artifact_service_pb2.UploadArtifactRequest(metadata=meta)
            for start in range(0, len(data), 1024 * 1024):
                yield artifact_service_pb2.UploadArtifactRequest(chunk=data[start : start + 1024 * 1024])

        self.artifacts.UploadArtifact(requests(), metadata=self.scientist())
        return digest

    def register(
        self,
        name: str,
        data: bytes,
        fmt: str,
        signature: Signature | None = None,
        *,
        tar: bool = False,
        tags: dict[str, str] | None = None,
    ) -> model_pb2.ModelRef:
        """A new version of `name` (the model is created on first use)."""
        try:
            self.registry.CreateRegisteredModel(
                registry_service_pb2.CreateRegisteredModelRequest(name=name, owner_team=self.team),
                metadata=self.scientist(),
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        request = registry_service_pb2.CreateModelVersionRequest(
            model_name=name,
            artifact_digest=_digest(self.upload(data, tar=tar)),
            format=model_pb2.ModelFormat.Value(f"MODEL_FORMAT_{fmt}"),
            tags=tags or {},
            request_id=str(uuid.uuid4()),
        )
        if signature is not None:
            for specs, target in (
                (signature.inputs, request.signature.inputs),
                (signature.outputs, request.signature.outputs),
            ):
                for spec in specs:
                    datatype = tensor_pb2.DataType.Value(f"DATA_TYPE_{spec.datatype}")
                    target.add(name=spec.name, datatype=datatype, shape=spec.shape)
        return self.registry.CreateModelVersion(request, metadata=self.scientist()).version.ref

    def artifact_digest(self, ref: model_pb2.ModelRef) -> str:
        request = registry_service_pb2.GetModelVersionRequest(model=ref)
        return self.registry.GetModelVersion(request, metadata=self.scientist()).version.artifact.digest.hex

    def validate(self, ref: model_pb2.ModelRef, policies: Iterable[str] = ("dev",)) -> dict[str, str]:
        """Passed validation reports (as the validator records them); policy -> report digest."""
        out = {}
        for policy in policies:
            body = json.dumps({"policy": policy, "verdict": "PASSED", "run": uuid.uuid4().hex}, sort_keys=True).encode()
            request = governance_service_pb2.RecordValidationReportRequest(
                model=ref,
                artifact_digest=_digest(self.artifact_digest(ref)),
                policy_name=policy,
                policy_digest=_digest(hashlib.sha256(policy.encode()).hexdigest()),
                run_id=f"run-{uuid.uuid4().hex[:8]}",
                verdict=verdicts.VALIDATION_VERDICT_PASSED,
                report_json=body,
                report_digest=_digest(hashlib.sha256(body).hexdigest()),
            )
            record = self.governance.RecordValidationReport(request, metadata=self.service_md("validator")).record
            out[policy] = record.report_digest.hex
        return out

    def approve(self, ref: model_pb2.ModelRef, environment: str, report_digest: str, signer: str) -> str:
        """An APPROVED_FOR_RELEASE e-signature by `signer` (a qa-approver, not the submitter)."""
        request = governance_service_pb2.CreateApprovalRequest(
            model=ref,
            environment=ENVIRONMENTS[environment],
            meaning=approval_pb2.SIGNATURE_MEANING_APPROVED_FOR_RELEASE,
            reason="meets the release criteria",
            artifact_digest=_digest(self.artifact_digest(ref)),
            validation_report_digest=_digest(report_digest),
            request_id=str(uuid.uuid4()),
        )
        return self.governance.CreateApproval(request, metadata=self.md(signer, ["qa-approver"])).approval.approval_id

    def release(self, ref: model_pb2.ModelRef, environment: str) -> None:
        """Make `ref` pass the gates of `environment` (validation for each stage, approvals as required)."""
        stages = {"dev": ["dev"], "test": ["dev", "test"], "prod": ["dev", "test", "prod"]}[environment]
        reports = self.validate(ref, stages)
        if "test" in stages:
            self.approve(ref, "test", reports["test"], "quinn")
        if "prod" in stages:
            for signer in ("quinn", "otto"):
                self.approve(ref, "prod", reports["prod"], signer)
