"""RegistryService through a real gRPC server, real MLflow (sqlite) and real tokens."""

import hashlib
import json
import os
import threading
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from causeway.common.v1 import (
    digest_pb2,
    environment_pb2,
    errors_pb2,
    gate_pb2,
    model_pb2,
    tensor_pb2,
    validation_pb2,
)
from causeway.registry.v1 import artifact_pb2
from causeway.registry.v1 import governance_service_pb2 as gov
from causeway.registry.v1 import governance_service_pb2_grpc as gov_grpc
from causeway.registry.v1 import model_pb2 as rm
from causeway.registry.v1 import registry_service_pb2 as pb
from causeway.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs.audit.store import EventFilter
from libs.testing.grpc_servers import rich_status_of
from libs.testing.postgres import postgres_server
from services.registry.storage.mlflow_registry import MlflowRegistry
from services.registry.tests.harness import registry_harness

TEAM = "oncology"


@pytest.fixture(scope="module")
def backend():
    """sqlite by default; REGISTRY_TEST_BACKEND=postgres runs the same tests on a real PostgreSQL."""
    if os.environ.get("REGISTRY_TEST_BACKEND") == "postgres":
        with postgres_server() as pg:
            # Migrate MLflow's schema once; each test copies it (CREATE DATABASE ... TEMPLATE).
            MlflowRegistry(pg.create_database("mlflow_template"))
            yield pg
    else:
        yield None


@pytest.fixture
def reg(tmp_path, backend):
    overrides = {}
    if backend is not None:
        url = backend.create_database("t" + uuid.uuid4().hex[:12], template="mlflow_template")
        (tmp_path / "db_url").write_text(url)
        overrides = {"MLFLOW_URI": url, "DB_URL_FILE": str(tmp_path / "db_url")}
    with registry_harness(tmp_path, **overrides) as harness:
        yield harness


@pytest.fixture
def stub(reg):
    return pb_grpc.RegistryServiceStub(reg.channel)


def alice(reg):
    return reg.md("alice", ["researcher"], teams=[TEAM])


def _digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def _model(stub, reg, name="tox21"):
    return stub.CreateRegisteredModel(
        pb.CreateRegisteredModelRequest(name=name, owner_team=TEAM, description="toxicity"), metadata=alice(reg)
    ).model


def _version_request(reg, name="tox21", data=b"weights", **fields):
    digest = reg.put_blob(data)
    request = pb.CreateModelVersionRequest(
        model_name=name, artifact_digest=_digest(digest), format=model_pb2.MODEL_FORMAT_SAFETENSORS, **fields
    )
    request.signature.inputs.add(name="x", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 12])
    request.signature.outputs.add(name="p", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 1])
    request.lineage.training_run_id = "run-42"
    request.lineage.code.commit_sha = "0123456789abcdef0123456789abcdef01234567"
    return request


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert isinstance(err.value, grpc.Call)
    return err.value.code(), err.value.details()


def test_register_model_and_version_with_everything_recorded(reg, stub):
    model = _model(stub, reg)
    assert (model.name, model.owner_team, model.created_by.subject) == ("tox21", TEAM, "alice")
    version = stub.CreateModelVersion(
        _version_request(reg, training_metrics={"auc": 0.91}), metadata=alice(reg)
    ).version
    assert (version.ref.name, version.ref.version) == ("tox21", 1)
    assert version.state == rm.MODEL_VERSION_STATE_READY
    assert version.format == model_pb2.MODEL_FORMAT_SAFETENSORS
    assert version.signature.inputs[0].shape == [-1, 12]
    assert version.lineage.training_run_id == "run-42"
    assert version.training_metrics["auc"] == pytest.approx(0.91)
    assert version.created_by.subject == "alice"
    assert version.artifact.size_bytes == len(b"weights")
    assert version.artifact.layout == artifact_pb2.ARTIFACT_LAYOUT_FILE
    again = stub.GetModelVersion(pb.GetModelVersionRequest(model=version.ref), metadata=alice(reg)).version
    assert again == version
    assert (
        stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name="tox21"), metadata=alice(reg)).model.latest_version
        == 1
    )
    actions = [e.action for e in reg.app.audit_log.list(EventFilter(), 100)[0]]
    assert actions == ["model.create", "model_version.create"]
    assert reg.app.audit_log.verify().ok


def test_only_owner_team_members_register(reg, stub):
    _model(stub, reg)
    outsider = reg.md("bob", ["researcher"], teams=["cardio"])
    code, details = _code(lambda: stub.CreateModelVersion(_version_request(reg), metadata=outsider))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not a member of team 'oncology'" in details
    code, _ = _code(
        lambda: stub.CreateRegisteredModel(
            pb.CreateRegisteredModelRequest(name="x", owner_team=TEAM), metadata=outsider
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("name", ["../etc", "Tox21", "a/b", "", "x" * 64, "-lead", "tail-", "a\x00b"])
def test_bad_model_names_are_refused_and_nothing_is_created(reg, stub, name):
    code, details = _code(
        lambda: stub.CreateRegisteredModel(
            pb.CreateRegisteredModelRequest(name=name, owner_team=TEAM), metadata=alice(reg)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid model name" in details
    page = stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(), metadata=alice(reg))
    assert list(page.models) == []
    assert reg.app.audit_log.list(EventFilter(), 10)[0] == []


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        ({"../../etc/passwd": "x"}, "tag key"),
        ({"causeway.state": "ARCHIVED"}, "reserved prefix"),
        ({"mlflow.user": "x"}, "reserved prefix"),
        ({"ok": "v\x07"}, "control characters"),
        ({"ok": "v" * 5001}, "longer than 5000"),
    ],
)
def test_bad_tags_are_refused(reg, stub, tags, fragment):
    _model(stub, reg)
    request = _version_request(reg, tags=tags)
    code, details = _code(lambda: stub.CreateModelVersion(request, metadata=alice(reg)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in details
    assert (
        stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name="tox21"), metadata=alice(reg)).model.latest_version
        == 0
    )


def test_malformed_version_requests(reg, stub):
    _model(stub, reg)
    cases = []
    r = _version_request(reg)
    r.artifact_digest.hex = "ABC"
    cases.append((r, "artifact_digest.hex"))
    r = _version_request(reg)
    r.ClearField("format")
    cases.append((r, "format is required"))
    r = _version_request(reg)
    r.signature.inputs.add(name="x", datatype=tensor_pb2.DATA_TYPE_FP32)
    cases.append((r, "duplicate tensor name"))
    r = _version_request(reg)
    r.lineage.code.path = "../../secrets"
    cases.append((r, "lineage.code.path"))
    r = _version_request(reg)
    r.training_baseline.features.add(name="f", missing_fraction=1.5)
    cases.append((r, "missing_fraction"))
    r = _version_request(reg)
    for i in range(2000):
        f = r.training_baseline.features.add(name=f"feature_{i}")
        f.numeric.histogram.bin_edges.extend(float(b) for b in range(11))
        f.numeric.histogram.counts.extend(range(10))
    cases.append((r, "more than the limit"))
    for request, fragment in cases:
        code, details = _code(lambda request=request: stub.CreateModelVersion(request, metadata=alice(reg)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (fragment, details)
        assert fragment in details
    missing = _version_request(reg)
    missing.artifact_digest.hex = "f" * 64
    code, details = _code(lambda: stub.CreateModelVersion(missing, metadata=alice(reg)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "upload it with ArtifactService" in details
    assert (
        stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name="tox21"), metadata=alice(reg)).model.latest_version
        == 0
    )


def test_retry_with_the_same_request_id_returns_the_same_version(reg, stub):
    _model(stub, reg)
    request = _version_request(reg, request_id="6f1c0d1e-retry")
    first = stub.CreateModelVersion(request, metadata=alice(reg)).version
    second = stub.CreateModelVersion(request, metadata=alice(reg)).version
    assert first.ref.version == second.ref.version == 1
    assert (
        stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name="tox21"), metadata=alice(reg)).model.latest_version
        == 1
    )


def test_concurrent_registrations_get_distinct_gap_free_versions(reg, stub):
    _model(stub, reg)
    got, errors = [], []

    def register(worker: int) -> None:
        for i in range(4):
            try:
                v = stub.CreateModelVersion(
                    _version_request(reg, data=f"w{worker}-{i}".encode()), metadata=alice(reg)
                ).version
                got.append(v.ref.version)
            except grpc.RpcError as err:
                errors.append(err)

    threads = [threading.Thread(target=register, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(1, 33))


def test_search_paging_and_foreign_tokens(reg, stub):
    for name in ["alpha", "beta", "gamma", "delta", "epsilon"]:
        _model(stub, reg, name)
    seen, token = [], ""
    while True:
        page = stub.SearchRegisteredModels(
            pb.SearchRegisteredModelsRequest(page_size=2, page_token=token), metadata=alice(reg)
        )
        seen += [m.name for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(["alpha", "beta", "gamma", "delta", "epsilon"])
    first = stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(page_size=2), metadata=alice(reg))
    code, details = _code(
        lambda: stub.SearchRegisteredModels(
            pb.SearchRegisteredModelsRequest(page_size=3, page_token=first.next_page_token), metadata=alice(reg)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "different query" in details
    code, _ = _code(
        lambda: stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(page_size=-1), metadata=alice(reg))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    text = stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(query="toxic"), metadata=alice(reg))
    assert len(text.models) == 5  # every description says "toxicity"


def test_search_versions_by_lineage_and_format(reg, stub):
    _model(stub, reg)
    stub.CreateModelVersion(_version_request(reg, data=b"a"), metadata=alice(reg))
    other = _version_request(reg, data=b"b")
    other.lineage.training_run_id = "run-7"
    other.lineage.datasets.add(name="train", digest=_digest("1" * 64))
    stub.CreateModelVersion(other, metadata=alice(reg))
    by_run = stub.SearchModelVersions(pb.SearchModelVersionsRequest(training_run_id="run-7"), metadata=alice(reg))
    assert [v.ref.version for v in by_run.versions] == [2]
    by_data = stub.SearchModelVersions(
        pb.SearchModelVersionsRequest(dataset_digest=_digest("1" * 64)), metadata=alice(reg)
    )
    assert [v.ref.version for v in by_data.versions] == [2]
    by_format = stub.SearchModelVersions(
        pb.SearchModelVersionsRequest(model_name="tox21", format=model_pb2.MODEL_FORMAT_ONNX), metadata=alice(reg)
    )
    assert list(by_format.versions) == []
    newest_first = stub.SearchModelVersions(pb.SearchModelVersionsRequest(model_name="tox21"), metadata=alice(reg))
    assert [v.ref.version for v in newest_first.versions] == [2, 1]


def test_lineage_walks_parents_and_children(reg, stub):
    _model(stub, reg)
    stub.CreateModelVersion(_version_request(reg, data=b"base"), metadata=alice(reg))
    child = _version_request(reg, data=b"fine-tuned")
    child.lineage.parent.name, child.lineage.parent.version = "tox21", 1
    stub.CreateModelVersion(child, metadata=alice(reg))
    grandchild = _version_request(reg, data=b"distilled")
    grandchild.lineage.parent.name, grandchild.lineage.parent.version = "tox21", 2
    stub.CreateModelVersion(grandchild, metadata=alice(reg))
    lineage = stub.GetModelVersionLineage(
        pb.GetModelVersionLineageRequest(model=model_pb2.ModelRef(name="tox21", version=2)), metadata=alice(reg)
    )
    assert [(n.model.version, n.distance) for n in lineage.ancestors] == [(1, 1)]
    assert [(n.model.version, n.distance) for n in lineage.descendants] == [(3, 1)]
    orphan = _version_request(reg, data=b"x")
    orphan.lineage.parent.name, orphan.lineage.parent.version = "tox21", 99
    code, _ = _code(lambda: stub.CreateModelVersion(orphan, metadata=alice(reg)))
    assert code == grpc.StatusCode.NOT_FOUND


def _record_passing_report(reg, version: int, environment=environment_pb2.ENVIRONMENT_DEV, policy="dev"):
    stub = gov_grpc.GovernanceServiceStub(reg.channel)
    shown = (
        pb_grpc.RegistryServiceStub(reg.channel)
        .GetModelVersion(
            pb.GetModelVersionRequest(model=model_pb2.ModelRef(name="tox21", version=version)), metadata=alice(reg)
        )
        .version
    )
    report = json.dumps({"verdict": "PASSED", "run": f"run-{version}"}, sort_keys=True).encode()
    stub.RecordValidationReport(
        gov.RecordValidationReportRequest(
            model=shown.ref,
            artifact_digest=shown.artifact.digest,
            policy_name=policy,
            policy_digest=_digest("2" * 64),
            environment=environment,
            run_id=f"run-{version}",
            verdict=validation_pb2.VALIDATION_VERDICT_PASSED,
            report_json=report,
            report_digest=_digest(hashlib.sha256(report).hexdigest()),
        ),
        metadata=reg.service_md("validator"),
    )


def _gate_failure(err: grpc.RpcError) -> errors_pb2.GateFailure:
    detail = errors_pb2.GateFailure()
    rich_status_of(err).details[0].Unpack(detail)
    return detail


def test_alias_rules(reg, stub):
    _model(stub, reg)
    stub.CreateModelVersion(_version_request(reg), metadata=alice(reg))
    champion = pb.SetModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_CHAMPION, version=1, reason="best AUC")
    code, _ = _code(lambda: stub.SetModelAlias(champion, metadata=alice(reg)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    rm_md = reg.md("rita", ["release-manager"])
    assert stub.SetModelAlias(champion, metadata=rm_md).previous_version == 0
    dev = pb.SetModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_DEV, version=1, reason="deployed")
    code, details = _code(lambda: stub.SetModelAlias(dev, metadata=rm_md))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "only the deployer service" in details

    # The deployer may move it only to a version that passes the environment's gates.
    with pytest.raises(grpc.RpcError) as err:
        stub.SetModelAlias(dev, metadata=reg.service_md("deployer"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = _gate_failure(err.value)
    assert failure.model.name == "tox21" and failure.environment == environment_pb2.ENVIRONMENT_DEV
    assert gate_pb2.GATE_VALIDATION in [g.gate for g in failure.failed_gates]
    _record_passing_report(reg, 1)
    assert stub.SetModelAlias(dev, metadata=reg.service_md("deployer")).previous_version == 0

    by_alias = stub.GetModelVersionByAlias(
        pb.GetModelVersionByAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_DEV), metadata=alice(reg)
    )
    assert by_alias.version.ref.version == 1
    assert set(by_alias.version.aliases) == {rm.MODEL_ALIAS_DEV, rm.MODEL_ALIAS_CHAMPION}
    model = stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name="tox21"), metadata=alice(reg)).model
    assert {(a.alias, a.assigned_by.subject) for a in model.aliases} == {
        (rm.MODEL_ALIAS_CHAMPION, "rita"),
        (rm.MODEL_ALIAS_DEV, "service:deployer"),
    }
    prod = pb.SetModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_PROD, version=1, reason="deploy")
    code, _ = _code(lambda: stub.SetModelAlias(prod, metadata=reg.service_md("deployer")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # prod needs a prod report and two approvals
    no_reason = pb.SetModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_CHAMPION, version=1)
    code, _ = _code(lambda: stub.SetModelAlias(no_reason, metadata=rm_md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_archive_needs_a_reason_and_no_alias(reg, stub):
    _model(stub, reg)
    stub.CreateModelVersion(_version_request(reg), metadata=alice(reg))
    ref = model_pb2.ModelRef(name="tox21", version=1)
    code, _ = _code(lambda: stub.ArchiveModelVersion(pb.ArchiveModelVersionRequest(model=ref), metadata=alice(reg)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    stub.SetModelAlias(
        pb.SetModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_CHAMPION, version=1, reason="r"),
        metadata=reg.md("rita", ["release-manager"]),
    )
    code, details = _code(
        lambda: stub.ArchiveModelVersion(
            pb.ArchiveModelVersionRequest(model=ref, reason="superseded"), metadata=alice(reg)
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "move the alias first" in details
    stub.DeleteModelAlias(
        pb.DeleteModelAliasRequest(model_name="tox21", alias=rm.MODEL_ALIAS_CHAMPION, reason="r"),
        metadata=reg.md("rita", ["release-manager"]),
    )
    archived = stub.ArchiveModelVersion(
        pb.ArchiveModelVersionRequest(model=ref, reason="superseded"), metadata=alice(reg)
    ).version
    assert archived.state == rm.MODEL_VERSION_STATE_ARCHIVED
    assert archived.archival.reason == "superseded" and archived.archival.archived_by.subject == "alice"


def test_tags_and_updates(reg, stub):
    _model(stub, reg)
    stub.CreateModelVersion(_version_request(reg), metadata=alice(reg))
    ref = model_pb2.ModelRef(name="tox21", version=1)
    tags = stub.SetTag(pb.SetTagRequest(model_version=ref, key="stage/qa", value="pending"), metadata=alice(reg)).tags
    assert tags == {"stage/qa": "pending"}
    assert stub.DeleteTag(pb.DeleteTagRequest(model_version=ref, key="stage/qa"), metadata=alice(reg)).tags == {}
    code, _ = _code(lambda: stub.DeleteTag(pb.DeleteTagRequest(model_name="tox21", key="nope"), metadata=alice(reg)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(
        lambda: stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                model=ref, description="x", update_mask=field_mask_pb2.FieldMask(paths=["format"])
            ),
            metadata=alice(reg),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    updated = stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            model=ref, description="better docs", update_mask=field_mask_pb2.FieldMask(paths=["description"])
        ),
        metadata=alice(reg),
    ).version
    assert updated.description == "better docs"


def test_every_rpc_refuses_unauthenticated_and_unauthorized_callers(reg):
    service = pb.DESCRIPTOR.services_by_name["RegistryService"]
    no_role = reg.md("nobody", [])
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        call = reg.channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=lambda b: b,
        )
        code, _ = _code(lambda call=call, request_cls=request_cls: call(request_cls()))
        assert code == grpc.StatusCode.UNAUTHENTICATED, method.name
        code, _ = _code(lambda call=call, request_cls=request_cls: call(request_cls(), metadata=no_role))
        assert code == grpc.StatusCode.PERMISSION_DENIED, method.name
