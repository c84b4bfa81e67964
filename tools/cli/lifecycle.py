"""The golden path as CLI commands: register, validate, approve, deploy, promote, roll back, infer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, tensor_pb2
from causeway.deployer.v1 import deployer_service_pb2 as dep
from causeway.deployer.v1 import deployer_service_pb2_grpc as dep_grpc
from causeway.registry.v1 import approval_pb2
from causeway.registry.v1 import governance_service_pb2 as gov
from causeway.registry.v1 import governance_service_pb2_grpc as gov_grpc
from causeway.registry.v1 import model_pb2 as rm
from causeway.registry.v1 import registry_service_pb2 as reg
from causeway.registry.v1 import registry_service_pb2_grpc as reg_grpc
from causeway.validator.v1 import run_pb2
from causeway.validator.v1 import validator_service_pb2 as val
from causeway.validator.v1 import validator_service_pb2_grpc as val_grpc
from tools.cli.context import CliError, Context
from tools.cli.upload import upload

ENVIRONMENTS = {
    "dev": environment_pb2.ENVIRONMENT_DEV,
    "test": environment_pb2.ENVIRONMENT_TEST,
    "prod": environment_pb2.ENVIRONMENT_PROD,
}
CLOUDS = {"local": environment_pb2.CLOUD_LOCAL, "aws": environment_pb2.CLOUD_AWS, "gcp": environment_pb2.CLOUD_GCP}
MEANINGS = {
    "reviewed": approval_pb2.SIGNATURE_MEANING_REVIEWED,
    "approved-for-release": approval_pb2.SIGNATURE_MEANING_APPROVED_FOR_RELEASE,
    "rejected": approval_pb2.SIGNATURE_MEANING_REJECTED,
}


def _digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def _tensor(spec: str) -> tensor_pb2.TensorSpec:
    """NAME:DATATYPE:DIM,DIM  e.g. features:FP32:-1,12"""
    try:
        name, datatype, dims = spec.split(":")
        shape = [int(d) for d in dims.split(",") if d]
        return tensor_pb2.TensorSpec(
            name=name, datatype=tensor_pb2.DataType.Value("DATA_TYPE_" + datatype), shape=shape
        )
    except ValueError:
        raise CliError(f"tensor spec {spec!r}: expected NAME:DATATYPE:DIMS, e.g. features:FP32:-1,12") from None


def create_model(ctx: Context, name: str, team: str, description: str) -> rm.RegisteredModel:
    stub = reg_grpc.RegistryServiceStub(ctx.channel("registry"))
    request = reg.CreateRegisteredModelRequest(name=name, owner_team=team, description=description)
    return stub.CreateRegisteredModel(request, metadata=ctx.metadata()).model


def register(ctx: Context, args) -> rm.ModelVersion:
    """Upload the model (and golden set) and create the next version with its lineage."""
    channel = ctx.channel("registry")
    artifact = upload(channel, ctx.metadata(), Path(args.path))
    request = reg.CreateModelVersionRequest(
        model_name=args.name,
        artifact_digest=artifact.digest,
        format=model_pb2.ModelFormat.Value("MODEL_FORMAT_" + args.format.upper()),
        description=args.description,
        request_id=str(uuid.uuid4()),
        tags=dict(t.split("=", 1) for t in args.tag),
    )
    request.signature.inputs.extend(_tensor(s) for s in args.input)
    request.signature.outputs.extend(_tensor(s) for s in args.output)
    if args.training_run:
        request.lineage.training_run_id = args.training_run
    if args.commit:
        request.lineage.code.commit_sha = args.commit
    if args.parent:
        parent_name, parent_version = args.parent.split("/")
        request.lineage.parent.name, request.lineage.parent.version = parent_name, int(parent_version)
    if args.golden:
        golden = upload(channel, ctx.metadata(), Path(args.golden))
        dataset = request.golden_dataset.dataset
        dataset.name = Path(args.golden).name
        dataset.digest.CopyFrom(golden.digest)
        dataset.role = rm.DATASET_ROLE_GOLDEN
        dataset.format = rm.DatasetFormat.Value("DATASET_FORMAT_" + args.golden_format.upper())
        request.golden_dataset.label_key = args.label_key
        for mapping in args.map:
            input_name, columns = mapping.split("=", 1)
            request.golden_dataset.input_mapping[input_name] = columns
        request.lineage.datasets.append(dataset)
    if args.baseline:
        from tools.cli.baseline import baseline_from

        request.training_baseline.CopyFrom(baseline_from(Path(args.baseline), exclude=[args.label_key]))
    for metric in args.metric:
        key, value = metric.split("=", 1)
        request.training_metrics[key] = float(value)
    stub = reg_grpc.RegistryServiceStub(channel)
    return stub.CreateModelVersion(request, metadata=ctx.metadata()).version


def validate(ctx: Context, name: str, version: int, environment: str, printer) -> run_pb2.ValidationRun:
    """Start a validation run and stream its progress until it finishes."""
    stub = val_grpc.ValidatorServiceStub(ctx.channel("validator"))
    request = val.StartValidationRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=ENVIRONMENTS[environment],
        request_id=str(uuid.uuid4()),
    )
    run = stub.StartValidation(request, metadata=ctx.metadata()).run
    for message in stub.WatchValidationRun(val.WatchValidationRunRequest(run_id=run.run_id), metadata=ctx.metadata()):
        printer(message.event)
    return stub.GetValidationRun(val.GetValidationRunRequest(run_id=run.run_id), metadata=ctx.metadata()).run


def approve(
    ctx: Context, name: str, version: int, environment: str, meaning: str, reason: str
) -> approval_pb2.Approval:
    """Sign the version for an environment, bound to what the signer is shown: its digests."""
    channel = ctx.channel("registry")
    ref = model_pb2.ModelRef(name=name, version=version)
    shown = (
        reg_grpc.RegistryServiceStub(channel)
        .GetModelVersion(reg.GetModelVersionRequest(model=ref), metadata=ctx.metadata())
        .version
    )
    report = next((v.report_digest for v in shown.validations if v.environment == ENVIRONMENTS[environment]), None)
    request = gov.CreateApprovalRequest(
        model=ref,
        environment=ENVIRONMENTS[environment],
        meaning=MEANINGS[meaning],
        reason=reason,
        artifact_digest=shown.artifact.digest,
        request_id=str(uuid.uuid4()),
    )
    if report is not None:
        request.validation_report_digest.CopyFrom(report)
    return gov_grpc.GovernanceServiceStub(channel).CreateApproval(request, metadata=ctx.metadata()).approval


def gates(ctx: Context, name: str, version: int, environment: str):
    stub = gov_grpc.GovernanceServiceStub(ctx.channel("registry"))
    request = gov.CheckGatesRequest(
        model=model_pb2.ModelRef(name=name, version=version), environment=ENVIRONMENTS[environment]
    )
    return stub.CheckGates(request, metadata=ctx.metadata())


def deploy(ctx: Context, name: str, version: int, environment: str, cloud: str, reason: str):
    stub = dep_grpc.DeployerServiceStub(ctx.channel("deployer"))
    request = dep.DeployModelRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=ENVIRONMENTS[environment],
        cloud=CLOUDS[cloud],
        reason=reason,
        request_id=str(uuid.uuid4()),
    )
    return stub.DeployModel(request, metadata=ctx.metadata()).deployment


_FINAL = {"DEPLOYMENT_STATE_SUCCEEDED", "DEPLOYMENT_STATE_FAILED", "DEPLOYMENT_STATE_AWAITING_MERGE"}


def wait(ctx: Context, deployment, timeout: float = 300.0):
    """Poll a deployment until it succeeded, failed or waits for a merge (CliError on timeout)."""
    import time

    from causeway.deployer.v1 import deployment_pb2

    stub = dep_grpc.DeployerServiceStub(ctx.channel("deployer"))
    deadline = time.monotonic() + timeout
    while deployment_pb2.DeploymentState.Name(deployment.state) not in _FINAL:
        if time.monotonic() > deadline:
            raise CliError(f"deployment {deployment.deployment_id} still {deployment.state} after {timeout:.0f} s")
        time.sleep(0.5)
        request = dep.GetDeploymentRequest(deployment_id=deployment.deployment_id)
        deployment = stub.GetDeployment(request, metadata=ctx.metadata()).deployment
    return deployment


def promote(ctx: Context, name: str, source: str, target: str, cloud: str, reason: str):
    stub = dep_grpc.DeployerServiceStub(ctx.channel("deployer"))
    request = dep.PromoteModelRequest(
        model_name=name,
        source_environment=ENVIRONMENTS[source],
        target_environment=ENVIRONMENTS[target],
        cloud=CLOUDS[cloud],
        reason=reason,
        request_id=str(uuid.uuid4()),
    )
    return stub.PromoteModel(request, metadata=ctx.metadata()).deployment


def rollback(ctx: Context, name: str, environment: str, cloud: str, reason: str):
    stub = dep_grpc.DeployerServiceStub(ctx.channel("deployer"))
    request = dep.RollbackModelRequest(
        model_name=name,
        environment=ENVIRONMENTS[environment],
        cloud=CLOUDS[cloud],
        reason=reason,
        request_id=str(uuid.uuid4()),
    )
    return stub.RollbackModel(request, metadata=ctx.metadata()).deployment


def infer(ctx: Context, name: str, version: str, inputs: dict[str, list], service: str = "runner") -> dict:
    """One Open Inference Protocol call with FP32 inputs given as nested lists; returns outputs."""
    from inference import grpc_service_pb2 as oip
    from inference import grpc_service_pb2_grpc as oip_grpc

    request = oip.ModelInferRequest(model_name=name, model_version=version)
    for input_name, values in inputs.items():
        array = np.asarray(values, dtype=np.float32)
        tensor = request.inputs.add(name=input_name, datatype="FP32", shape=list(array.shape))
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    stub = oip_grpc.GRPCInferenceServiceStub(ctx.channel(service))
    response = stub.ModelInfer(request, metadata=ctx.metadata())
    outputs = {}
    for i, output in enumerate(response.outputs):
        if response.raw_output_contents:
            values = np.frombuffer(response.raw_output_contents[i], dtype=np.float32).tolist()
        else:
            values = list(output.contents.fp32_contents)
        outputs[output.name] = {"shape": list(output.shape), "data": values}
    return outputs


def dumps(message) -> str:
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2)
