"""The registry as the validator's domain sees it (RegistryPort), over gRPC with a service token.

Status codes become domain errors; anything that means "the registry cannot serve us right now"
(UNAVAILABLE, DEADLINE_EXCEEDED, or the registry refusing the validator's own identity) becomes
Unavailable, which ends a run as ERRORED instead of producing a report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import grpc

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, tensor_pb2
from causeway.registry.v1 import (
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    governance_service_pb2,
    governance_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from causeway.registry.v1 import model_pb2 as rm
from libs.errors import domain_errors as de
from services.validator.domain.ports import Download
from services.validator.domain.versions import FeatureBaseline, GoldenDataset, TensorSpec, VersionInfo

_ERRORS = {
    grpc.StatusCode.NOT_FOUND: de.NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: de.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: de.FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: de.AlreadyExists,
    grpc.StatusCode.DATA_LOSS: de.DataLoss,
    grpc.StatusCode.OUT_OF_RANGE: de.InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: de.ResourceExhausted,
}


def _error(err: grpc.RpcError, what: str) -> de.DomainError:
    code = err.code()
    details = err.details() or code.name
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return de.Unavailable(f"the registry refused the validator's service identity ({code.name}) {what}: {details}")
    cls = _ERRORS.get(code)
    if cls is None:
        return de.Unavailable(f"registry {code.name} {what}: {details}")
    return cls(f"registry: {details}")


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def _tensor(spec: tensor_pb2.TensorSpec) -> TensorSpec:
    return TensorSpec(spec.name, _strip(tensor_pb2.DataType.Name(spec.datatype), "DATA_TYPE_"), tuple(spec.shape))


def _baseline(stats: rm.BaselineStatistics) -> tuple[FeatureBaseline, ...]:
    out = []
    for f in stats.features:
        which = f.WhichOneof("statistics")
        if which == "numeric":
            n = f.numeric
            out.append(
                FeatureBaseline(
                    name=f.name,
                    kind="numeric",
                    missing_fraction=f.missing_fraction,
                    min=n.min,
                    max=n.max,
                    mean=n.mean,
                    stddev=n.stddev,
                    bin_edges=tuple(n.histogram.bin_edges),
                    counts=tuple(int(c) for c in n.histogram.counts),
                )
            )
        elif which == "categorical":
            cats = tuple((c.value, int(c.count)) for c in f.categorical.top_categories)
            out.append(FeatureBaseline(f.name, "categorical", f.missing_fraction, categories=cats))
        else:
            out.append(FeatureBaseline(f.name, "unknown", f.missing_fraction))
    return tuple(out)


def version_info(v: rm.ModelVersion) -> VersionInfo:
    """A registry ModelVersion as the validator's plain data."""
    golden = None
    if v.HasField("golden_dataset") and v.golden_dataset.dataset.digest.hex:
        g = v.golden_dataset
        golden = GoldenDataset(
            name=g.dataset.name,
            digest=g.dataset.digest.hex,
            format=_strip(rm.DatasetFormat.Name(g.dataset.format), "DATASET_FORMAT_").lower(),
            input_mapping=dict(g.input_mapping),
            label_key=g.label_key,
            row_count=int(g.dataset.row_count),
        )
    return VersionInfo(
        name=v.ref.name,
        version=int(v.ref.version),
        archived=v.state == rm.MODEL_VERSION_STATE_ARCHIVED,
        artifact_digest=v.artifact.digest.hex,
        artifact_size=int(v.artifact.size_bytes),
        format=_strip(model_pb2.ModelFormat.Name(v.format), "MODEL_FORMAT_").lower(),
        inputs=tuple(_tensor(t) for t in v.signature.inputs),
        outputs=tuple(_tensor(t) for t in v.signature.outputs),
        tags=dict(v.tags),
        golden=golden,
        baseline=_baseline(v.training_baseline) if v.HasField("training_baseline") else (),
        baseline_digest=v.training_baseline.dataset_digest.hex if v.HasField("training_baseline") else "",
    )


def _digest(hex_value: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_value)


class RegistryClient:
    """RegistryPort over one channel; `credentials()` gives the call metadata (the service token)."""

    def __init__(
        self,
        channel: grpc.Channel,
        credentials: Callable[[], tuple[tuple[str, str], ...]],
        *,
        timeout: float = 15.0,
        download_timeout: float = 3600.0,
    ) -> None:
        self.registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self.artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        self.governance = governance_service_pb2_grpc.GovernanceServiceStub(channel)
        self.credentials = credentials
        self.timeout = timeout
        self.download_timeout = download_timeout

    def _call(self, method, request, what: str):
        try:
            return method(request, metadata=self.credentials(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise _error(err, what) from err

    def get_version(self, name: str, version: int) -> VersionInfo:
        request = registry_service_pb2.GetModelVersionRequest(model=model_pb2.ModelRef(name=name, version=version))
        return version_info(self._call(self.registry.GetModelVersion, request, f"getting {name}/{version}").version)

    def get_champion(self, name: str) -> VersionInfo | None:
        request = registry_service_pb2.GetModelVersionByAliasRequest(model_name=name, alias=rm.MODEL_ALIAS_CHAMPION)
        try:
            response = self._call(self.registry.GetModelVersionByAlias, request, f"resolving {name}'s champion")
        except de.NotFound:
            return None
        return version_info(response.version)

    def owner_team(self, name: str) -> str:
        request = registry_service_pb2.GetRegisteredModelRequest(name=name)
        return self._call(self.registry.GetRegisteredModel, request, f"getting model {name}").model.owner_team

    def environment_policy(self, environment: str) -> str:
        try:
            env = environment_pb2.Environment.Value("ENVIRONMENT_" + environment.upper())
        except ValueError:
            raise de.InvalidArgument(f"unknown environment {environment!r}") from None
        request = governance_service_pb2.GetEnvironmentPolicyRequest(environment=env)
        policy = self._call(self.governance.GetEnvironmentPolicy, request, f"getting the {environment} policy").policy
        if not policy.validation.policy_name:
            raise de.NotFound(f"environment {environment} requires no validation policy")
        return policy.validation.policy_name

    def download(self, digest: str, dest: Path) -> Download:
        """Stream the artifact into `dest` (created 0600), hashing it; the caller compares digests."""
        request = artifact_service_pb2.DownloadArtifactRequest(digest=_digest(digest))
        hasher = hashlib.sha256()
        size = 0
        declared = -1
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                stream = self.artifacts.DownloadArtifact(
                    request, metadata=self.credentials(), timeout=self.download_timeout
                )
                for message in stream:
                    if message.WhichOneof("content") == "metadata":
                        declared = int(message.metadata.size_bytes)
                        continue
                    hasher.update(message.chunk)
                    size += len(message.chunk)
                    out.write(message.chunk)
        except grpc.RpcError as err:
            dest.unlink(missing_ok=True)
            raise _error(err, f"downloading sha256:{digest}") from err
        if declared >= 0 and declared != size:
            dest.unlink(missing_ok=True)
            raise de.DataLoss(f"registry: sha256:{digest} declared {declared} bytes but sent {size}")
        return Download(path=dest, digest=hasher.hexdigest(), size=size)

    def record_report(
        self,
        *,
        model: tuple[str, int],
        artifact_digest: str,
        policy_name: str,
        policy_digest: str,
        environment: str,
        run_id: str,
        verdict: str,
        report_json: bytes,
        report_digest: str,
    ) -> dt.datetime:
        from causeway.common.v1 import validation_pb2

        request = governance_service_pb2.RecordValidationReportRequest(
            model=model_pb2.ModelRef(name=model[0], version=model[1]),
            artifact_digest=_digest(artifact_digest),
            policy_name=policy_name,
            policy_digest=_digest(policy_digest),
            environment=environment_pb2.Environment.Value("ENVIRONMENT_" + environment.upper())
            if environment
            else environment_pb2.ENVIRONMENT_UNSPECIFIED,
            run_id=run_id,
            verdict=validation_pb2.ValidationVerdict.Value("VALIDATION_VERDICT_" + verdict),
            report_json=report_json,
            report_digest=_digest(report_digest),
        )
        record = self._call(self.governance.RecordValidationReport, request, f"recording run {run_id}'s report").record
        if record.HasField("record_time"):
            return record.record_time.ToDatetime(tzinfo=dt.UTC)
        return dt.datetime.now(dt.UTC)
