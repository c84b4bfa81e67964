"""Contract checks over every generated proto module (the API conventions in protos/README.md).

buf lint checks the sources; these tests check what services and clients actually import: that
every module generates and imports, that the conventions hold on the compiled descriptors, and
that representative messages survive binary and JSON round trips.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest
from google.protobuf import any_pb2, descriptor, descriptor_pb2, json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2
from causeway.common.v1 import (
    digest_pb2,
    environment_pb2,
    errors_pb2,
    gate_pb2,
    identity_pb2,
    model_pb2,
    tensor_pb2,
    validation_pb2,
)
from causeway.deployer.v1 import deployer_service_pb2, deployment_pb2
from causeway.registry.v1 import approval_pb2, artifact_pb2, artifact_service_pb2, registry_service_pb2
from causeway.registry.v1 import model_pb2 as registry_model_pb2
from causeway.runner.v1 import batch_pb2, runner_service_pb2
from causeway.validator.v1 import policy_pb2, report_pb2, validator_service_pb2

WORKSPACE = "causeway_monorepo"


def _proto_root() -> Path:
    return Path(os.environ["TEST_SRCDIR"]) / WORKSPACE / "protos"


def _proto_files() -> list[str]:
    """Import paths of every .proto in the test's runfiles (all packages are data deps)."""
    root = _proto_root()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))
    assert files, f"no .proto files under {root}"
    return files


def _module(proto_path: str, suffix: str) -> ModuleType:
    return importlib.import_module(proto_path[: -len(".proto")].replace("/", ".") + suffix)


def _files() -> list[descriptor.FileDescriptor]:
    return [_module(p, "_pb2").DESCRIPTOR for p in _proto_files()]


def _all_messages() -> list[descriptor.Descriptor]:
    out: list[descriptor.Descriptor] = []

    def walk(msg: descriptor.Descriptor) -> None:
        out.append(msg)
        for nested in msg.nested_types:
            walk(nested)

    for fd in _files():
        for msg in fd.message_types_by_name.values():
            walk(msg)
    return out


def _all_enums() -> list[descriptor.EnumDescriptor]:
    enums: list[descriptor.EnumDescriptor] = []
    for fd in _files():
        enums.extend(fd.enum_types_by_name.values())
    for msg in _all_messages():
        enums.extend(msg.enum_types)
    return enums


def _services() -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    out = {}
    for fd in _files():
        for svc in fd.services_by_name.values():
            proto = descriptor_pb2.ServiceDescriptorProto()
            svc.CopyToProto(proto)
            out[svc.full_name] = proto
    return out


EXPECTED_SERVICES = {
    "causeway.registry.v1.RegistryService",
    "causeway.registry.v1.ArtifactService",
    "causeway.registry.v1.GovernanceService",
    "causeway.audit.v1.AuditService",
    "causeway.validator.v1.ValidatorService",
    "causeway.deployer.v1.DeployerService",
    "causeway.runner.v1.RunnerService",
    "inference.GRPCInferenceService",
}

# Every streaming RPC, with (client_streaming, server_streaming); every other RPC is unary.
STREAMING = {
    "causeway.registry.v1.ArtifactService.UploadArtifact": (True, False),
    "causeway.registry.v1.ArtifactService.DownloadArtifact": (False, True),
    "causeway.audit.v1.AuditService.ExportEvents": (False, True),
    "causeway.validator.v1.ValidatorService.WatchValidationRun": (False, True),
    "causeway.runner.v1.RunnerService.WatchBatchJob": (False, True),
}


def test_every_module_generates_and_imports() -> None:
    for path in _proto_files():
        pb2 = _module(path, "_pb2")
        grpc_mod = _module(path, "_pb2_grpc")
        assert pb2.DESCRIPTOR.name == path
        # Package equals directory (buf PACKAGE_DIRECTORY_MATCH, checked here on the output too).
        assert pb2.DESCRIPTOR.package == path.rsplit("/", 1)[0].replace("/", ".")
        for svc in pb2.DESCRIPTOR.services_by_name:
            assert hasattr(grpc_mod, svc + "Stub"), f"{path}: no {svc}Stub"
            assert hasattr(grpc_mod, svc + "Servicer"), f"{path}: no {svc}Servicer"
            assert hasattr(grpc_mod, f"add_{svc}Servicer_to_server")


def test_all_services_present() -> None:
    assert set(_services()) == EXPECTED_SERVICES


def test_versioned_packages() -> None:
    for fd in _files():
        if fd.package == "inference":  # the OIP's package is fixed by its spec
            continue
        assert re.fullmatch(r"causeway\.[a-z]+\.v[0-9]+", fd.package), fd.package


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def test_enum_zero_is_unspecified() -> None:
    enums = _all_enums()
    assert len(enums) > 30
    for enum in enums:
        first = enum.values[0]
        assert first.number == 0, enum.full_name
        assert first.name == _upper_snake(enum.name) + "_UNSPECIFIED", enum.full_name
        prefix = _upper_snake(enum.name) + "_"
        for value in enum.values:
            assert value.name.startswith(prefix), f"{enum.full_name}.{value.name}"


def test_one_request_and_one_response_per_rpc() -> None:
    used: dict[str, str] = {}
    for svc_name, svc in _services().items():
        package = svc_name.rsplit(".", 1)[0]
        for method in svc.method:
            rpc = f"{svc_name}.{method.name}"
            assert method.input_type == f".{package}.{method.name}Request", rpc
            assert method.output_type == f".{package}.{method.name}Response", rpc
            for type_name in (method.input_type, method.output_type):
                assert type_name not in used, f"{type_name} used by {used.get(type_name)} and {rpc}"
                used[type_name] = rpc


def test_streaming_shapes() -> None:
    seen = {}
    for svc_name, svc in _services().items():
        for method in svc.method:
            seen[f"{svc_name}.{method.name}"] = (method.client_streaming, method.server_streaming)
    streaming = {rpc: shape for rpc, shape in seen.items() if shape != (False, False)}
    assert streaming == STREAMING


def test_paged_lists_follow_aip_158() -> None:
    paged = 0
    for svc_name, svc in _services().items():
        for method in svc.method:
            request = _message(method.input_type)
            response = _message(method.output_type)
            if "page_token" not in request.fields_by_name:
                continue
            paged += 1
            assert request.fields_by_name["page_size"].type == descriptor.FieldDescriptor.TYPE_INT32
            assert request.fields_by_name["page_token"].type == descriptor.FieldDescriptor.TYPE_STRING
            assert "next_page_token" in response.fields_by_name, f"{svc_name}.{method.name}"
            assert any(f.is_repeated for f in response.fields), f"{svc_name}.{method.name}"
    assert paged >= 10


def _message(type_name: str) -> descriptor.Descriptor:
    for msg in _all_messages():
        if "." + msg.full_name == type_name:
            return msg
    raise KeyError(type_name)


def test_times_and_durations_are_well_known_types() -> None:
    """google.protobuf.Timestamp / Duration, never raw integers (docs/STYLE.md, Protos)."""
    for msg in _all_messages():
        if msg.full_name.startswith("inference."):
            continue
        for field in msg.fields:
            if field.name.endswith("_time") or field.name == "time":
                assert field.message_type is not None, field.full_name
                assert field.message_type.full_name == "google.protobuf.Timestamp", field.full_name
            if field.name in {"timeout", "pause", "duration", "cpu_time_limit", "wall_time_limit", "max_queue_delay"}:
                assert field.message_type is not None, field.full_name
                assert field.message_type.full_name == "google.protobuf.Duration", field.full_name


def test_datatype_enum_maps_to_oip_strings() -> None:
    oip = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    oip |= {"FP16", "FP32", "FP64", "BYTES", "BF16"}
    names = {v.name.removeprefix("DATA_TYPE_") for v in tensor_pb2.DataType.DESCRIPTOR.values if v.number}
    assert names == oip


def _digest(seed: str) -> digest_pb2.Digest:
    import hashlib

    return digest_pb2.Digest(
        algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hashlib.sha256(seed.encode()).hexdigest()
    )


def _ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=0)


def _actor(subject: str, *roles: str) -> identity_pb2.Actor:
    return identity_pb2.Actor(
        subject=subject,
        issuer="https://idp.example",
        display_name=subject.title(),
        roles=list(roles),
        kind=identity_pb2.ACTOR_KIND_HUMAN,
    )


def _model_version() -> registry_model_pb2.ModelVersion:
    ref = model_pb2.ModelRef(name="tox21-classifier", version=7)
    return registry_model_pb2.ModelVersion(
        ref=ref,
        state=registry_model_pb2.MODEL_VERSION_STATE_READY,
        description="GNN toxicity classifier",
        artifact=artifact_pb2.Artifact(
            digest=_digest("weights"),
            size_bytes=123_456_789,
            layout=artifact_pb2.ARTIFACT_LAYOUT_FILE,
            filename="model.safetensors",
            uploaded_by=_actor("jdoe", "researcher"),
            upload_time=_ts(1_700_000_000),
        ),
        format=model_pb2.MODEL_FORMAT_SAFETENSORS,
        signature=registry_model_pb2.ModelSignature(
            inputs=[tensor_pb2.TensorSpec(name="features", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 128])],
            outputs=[tensor_pb2.TensorSpec(name="probs", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 12])],
        ),
        lineage=registry_model_pb2.Lineage(
            training_run_id="a1b2c3",
            datasets=[
                registry_model_pb2.DatasetRef(
                    name="tox21-train",
                    digest=_digest("train"),
                    uri="s3://data/tox21/train.parquet",
                    role=registry_model_pb2.DATASET_ROLE_TRAINING,
                    format=registry_model_pb2.DATASET_FORMAT_PARQUET,
                    row_count=7831,
                )
            ],
            code=registry_model_pb2.SourceCode(
                repository_url="https://git.example/research/tox.git", commit_sha="0" * 40
            ),
            parent=model_pb2.ModelRef(name="tox21-classifier", version=6),
        ),
        training_baseline=registry_model_pb2.BaselineStatistics(
            dataset_digest=_digest("train"),
            sample_count=7831,
            features=[
                registry_model_pb2.FeatureStatistics(
                    name="mol_weight",
                    missing_fraction=0.01,
                    numeric=registry_model_pb2.NumericStatistics(
                        mean=350.2,
                        stddev=80.1,
                        min=40.0,
                        max=900.0,
                        quantiles=[registry_model_pb2.Quantile(quantile=0.5, value=340.0)],
                        histogram=registry_model_pb2.Histogram(bin_edges=[0, 300, 600, 900], counts=[3000, 4500, 331]),
                    ),
                ),
                registry_model_pb2.FeatureStatistics(
                    name="assay",
                    categorical=registry_model_pb2.CategoricalStatistics(
                        top_categories=[registry_model_pb2.CategoryCount(value="NR-AR", count=900)], distinct_count=12
                    ),
                ),
            ],
            compute_time=_ts(1_700_000_100),
        ),
        golden_dataset=registry_model_pb2.GoldenDataset(
            dataset=registry_model_pb2.DatasetRef(name="tox21-golden", digest=_digest("golden")),
            input_mapping={"features": "fp"},
            label_key="labels",
        ),
        training_metrics={"auroc": 0.91},
        tags={"therapeutic_area": "toxicology"},
        aliases=[registry_model_pb2.MODEL_ALIAS_CHAMPION],
        validations=[
            registry_model_pb2.EnvironmentValidation(
                environment=environment_pb2.ENVIRONMENT_PROD,
                policy_name="gxp-prod",
                verdict=validation_pb2.VALIDATION_VERDICT_PASSED,
                report_digest=_digest("report"),
                run_id="run-1",
                record_time=_ts(1_700_000_200),
            )
        ],
        created_by=_actor("jdoe", "researcher"),
        create_time=_ts(1_700_000_000),
    )


M = TypeVar("M", bound=Message)


def _roundtrip(msg: M) -> M:
    """The message survives binary and JSON encoding unchanged; returns the decoded copy."""
    again = type(msg).FromString(msg.SerializeToString())
    assert again == msg
    from_json = json_format.Parse(json_format.MessageToJson(msg), type(msg)())
    assert from_json == msg
    return again


def test_model_version_roundtrip() -> None:
    mv = _roundtrip(_model_version())
    assert mv.training_baseline.features[0].WhichOneof("statistics") == "numeric"
    assert mv.training_baseline.features[1].WhichOneof("statistics") == "categorical"
    # The JSON names are what the CLI and the report files show.
    as_json = json_format.MessageToDict(mv)
    assert as_json["format"] == "MODEL_FORMAT_SAFETENSORS"
    assert as_json["signature"]["inputs"][0]["shape"] == ["-1", "128"]


def test_upload_stream_is_metadata_then_chunks() -> None:
    first = artifact_service_pb2.UploadArtifactRequest(
        metadata=artifact_pb2.UploadArtifactMetadata(
            digest=_digest("weights"), size_bytes=3, layout=artifact_pb2.ARTIFACT_LAYOUT_FILE
        )
    )
    chunk = artifact_service_pb2.UploadArtifactRequest(chunk=b"abc")
    assert _roundtrip(first).WhichOneof("content") == "metadata"
    assert _roundtrip(chunk).WhichOneof("content") == "chunk"
    both = artifact_service_pb2.UploadArtifactRequest()
    both.CopyFrom(first)
    both.chunk = b"x"  # setting one member of a oneof clears the other
    assert not both.HasField("metadata")


def test_register_request_references_uploaded_digest() -> None:
    mv = _model_version()
    req = registry_service_pb2.CreateModelVersionRequest(
        model_name=mv.ref.name,
        artifact_digest=mv.artifact.digest,
        format=mv.format,
        signature=mv.signature,
        lineage=mv.lineage,
        request_id="5f0c6a4e-1f7e-4a53-9a8e-0a4b5d3c2e1f",
    )
    assert _roundtrip(req).artifact_digest.hex == mv.artifact.digest.hex


def test_approval_binds_both_digests_and_revocation_is_a_new_record() -> None:
    approval = approval_pb2.Approval(
        approval_id="ap-1",
        model=model_pb2.ModelRef(name="tox21-classifier", version=7),
        environment=environment_pb2.ENVIRONMENT_PROD,
        meaning=approval_pb2.SIGNATURE_MEANING_APPROVED_FOR_RELEASE,
        statement="Quinn Approver (qa1) approved tox21-classifier v7 for release to PROD",
        reason="Reviewed report and release checklist",
        signer=_actor("qa1", "qa-approver"),
        sign_time=_ts(1_700_001_000),
        artifact_digest=_digest("weights"),
        validation_report_digest=_digest("report"),
        record_digest=_digest("record"),
        audit_sequence=42,
        state=approval_pb2.APPROVAL_STATE_ACTIVE,
    )
    _roundtrip(approval)
    revocation = approval_pb2.Revocation(
        revocation_id="rv-1",
        approval_id=approval.approval_id,
        approval_record_digest=approval.record_digest,
        reason="Signed the wrong version",
        revoker=_actor("qa1", "qa-approver"),
        revoke_time=_ts(1_700_002_000),
    )
    _roundtrip(revocation)
    # There is no RPC that edits or deletes an approval.
    governance = {m.name for m in _services()["causeway.registry.v1.GovernanceService"].method}
    assert {"CreateApproval", "RevokeApproval"} <= governance
    assert not {m for m in governance if m.startswith(("Update", "Delete"))}


def test_gate_failure_travels_as_a_status_detail() -> None:
    from google.rpc import code_pb2, status_pb2

    detail = errors_pb2.GateFailure(
        model=model_pb2.ModelRef(name="tox21-classifier", version=7),
        environment=environment_pb2.ENVIRONMENT_PROD,
        failed_gates=[
            gate_pb2.GateResult(
                gate=gate_pb2.GATE_APPROVALS,
                status=gate_pb2.GATE_STATUS_FAILED,
                message="1 of 2 approvals by role qa-approver",
                evidence=["ap-1"],
            )
        ],
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    assert packed.type_url == "type.googleapis.com/causeway.common.v1.GateFailure"
    status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="gates not met", details=[packed])
    parsed = status_pb2.Status.FromString(status.SerializeToString())
    out = errors_pb2.GateFailure()
    assert parsed.details[0].Unpack(out)
    assert out == detail


def test_audit_event_roundtrip() -> None:
    details = Struct()
    details.update({"previous_version": 6, "reason": "promotion"})
    event = audit_event_pb2.AuditEvent(
        sequence=1,
        event_id="e-1",
        record_time=_ts(1_700_000_000),
        actor=_actor("rm1", "release-manager"),
        recorded_by=identity_pb2.Actor(subject="svc-deployer", kind=identity_pb2.ACTOR_KIND_SERVICE),
        service="deployer",
        action="deployment.commit",
        subject="deployments/d-1",
        outcome=audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        details=details,
        previous_hash=digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex="0" * 64),
        hash=_digest("event-1"),
    )
    _roundtrip(event)
    verify = audit_service_pb2.VerifyChainResponse(
        verdict=audit_event_pb2.CHAIN_VERDICT_BROKEN,
        events_verified=10,
        first_break=audit_event_pb2.ChainBreak(sequence=4, kind=audit_event_pb2.CHAIN_BREAK_KIND_EDITED),
    )
    _roundtrip(verify)
    export = [
        audit_service_pb2.ExportEventsResponse(json_line=b'{"sequence":"1"}\n'),
        audit_service_pb2.ExportEventsResponse(summary=audit_event_pb2.ExportSummary(event_count=1)),
    ]
    assert [_roundtrip(m).WhichOneof("content") for m in export] == ["json_line", "summary"]


def test_validation_report_roundtrip() -> None:
    threshold = policy_pb2.MetricThreshold(
        metric="auroc", comparator=policy_pb2.COMPARATOR_GREATER_OR_EQUAL, max_relative_degradation=0.01
    )
    report = report_pb2.ValidationReport(
        run_id="run-1",
        model=model_pb2.ModelRef(name="tox21-classifier", version=7),
        artifact_digest=_digest("weights"),
        policy_name="gxp-prod",
        verdict=validation_pb2.VALIDATION_VERDICT_PASSED,
        checks=[
            report_pb2.CheckResult(
                name="auroc_vs_champion",
                type=policy_pb2.CHECK_TYPE_METRIC_GATE,
                status=report_pb2.CHECK_STATUS_PASSED,
                severity=policy_pb2.CHECK_SEVERITY_REQUIRED,
                metrics=[report_pb2.Metric(name="auroc", value=0.912)],
                thresholds=[
                    report_pb2.ThresholdResult(
                        threshold=threshold,
                        candidate_value=0.912,
                        champion_value=0.915,
                        effective_bound=0.90585,
                        status=report_pb2.CHECK_STATUS_PASSED,
                    )
                ],
                duration=Duration(seconds=3),
            )
        ],
    )
    again = _roundtrip(report)
    assert again.checks[0].thresholds[0].HasField("champion_value")
    assert again.checks[0].thresholds[0].threshold.WhichOneof("bound") == "max_relative_degradation"
    start = validator_service_pb2.StartValidationRequest(
        model=report.model, environment=environment_pb2.ENVIRONMENT_PROD
    )
    assert _roundtrip(start).WhichOneof("target") == "environment"


def test_deploy_and_batch_requests_roundtrip() -> None:
    canary = deployment_pb2.DeploymentStrategy(
        canary=deployment_pb2.CanaryStrategy(
            steps=[
                deployment_pb2.CanaryStep(traffic_percent=10, pause=Duration(seconds=300)),
                deployment_pb2.CanaryStep(traffic_percent=100),
            ],
            criteria=[deployment_pb2.CanaryCriterion(metric="error_rate", max_relative_increase=0.1)],
        )
    )
    deploy = deployer_service_pb2.DeployModelRequest(
        model=model_pb2.ModelRef(name="tox21-classifier", version=7),
        environment=environment_pb2.ENVIRONMENT_PROD,
        cloud=environment_pb2.CLOUD_AWS,
        strategy=canary,
        reason="Q3 release",
        change_request="CHG-1234",
    )
    assert _roundtrip(deploy).strategy.WhichOneof("strategy") == "canary"
    rollback = deployer_service_pb2.RollbackModelRequest(
        model_name="tox21-classifier",
        environment=environment_pb2.ENVIRONMENT_PROD,
        cloud=environment_pb2.CLOUD_GCP,
        reason="error rate",
    )
    assert _roundtrip(rollback).target_revision == ""  # empty: last approved revision
    submit = runner_service_pb2.SubmitBatchJobRequest(
        model=deploy.model,
        team="oncology-ml",
        input=batch_pb2.BatchInput(uri="s3://in/", format=batch_pb2.BATCH_DATA_FORMAT_PARQUET),
        output=batch_pb2.BatchOutput(uri="s3://out/", format=batch_pb2.BATCH_DATA_FORMAT_PARQUET),
        batch_size=64,
        priority=batch_pb2.BATCH_JOB_PRIORITY_HIGH,
    )
    _roundtrip(submit)


@pytest.mark.parametrize("path", ["causeway/common/v1/digest.proto", "inference/grpc_service.proto"])
def test_sources_are_in_runfiles(path: str) -> None:
    # The .proto sources travel with the generated code (buf lint and IDEs read them).
    assert (_proto_root() / path).is_file()
