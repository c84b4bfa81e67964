"""The runner against the real registry binary (subprocess): gates, digests, formats, the binary itself.

The registry runs as a subprocess with a dev IdP; versions are registered, validated and approved
through its API exactly as the golden path does. The runner serves environment `test`: a version
needs passed dev and test validation reports and one approval by a reviewer or qa-approver who
is not the submitter.
"""

import os
import signal
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2, audit_service_pb2_grpc
from causeway.common.v1 import errors_pb2, gate_pb2, model_pb2
from causeway.runner.v1 import batch_pb2
from causeway.runner.v1 import runner_service_pb2 as rpb
from causeway.runner.v1 import runner_service_pb2_grpc as rgrpc
from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.testing.grpc_servers import rich_status_of
from libs.testing.processes import ServerProcess
from libs.testing.registry_process import registry_process
from services.gpu_runner.tests import fixtures as fx
from services.gpu_runner.tests.harness import runner_env, runner_harness
from services.gpu_runner.tests.registry_world import RegistryWorld

TEAM = "oncology"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    idp = DevIdentityProvider(tmp / "idp")
    with registry_process(tmp / "registry", idp) as registry:
        channel = grpc.insecure_channel(registry.address)
        world = RegistryWorld(
            channel,
            md=lambda subject, roles, teams=(): bearer(idp.issue(subject, roles, teams=teams)),
            service_md=lambda name: bearer(idp.service_token(name)),
            team=TEAM,
        )
        with runner_harness(tmp, idp=idp, ENVIRONMENT="test", REGISTRY_ADDRESS=registry.address) as run:
            yield registry, world, run, tmp
        channel.close()


@pytest.fixture(scope="module")
def runner(stack):
    return rgrpc.RunnerServiceStub(stack[2].channel)


def _deployer(run):
    return run.service_md("deployer")


def _load(runner, run, ref):
    return runner.LoadModel(rpb.LoadModelRequest(model=ref), metadata=_deployer(run), timeout=120).model


def _error(call) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert isinstance(err.value, grpc.Call)
    return err.value


def _gate_failure(err: grpc.Call) -> errors_pb2.GateFailure:
    status = rich_status_of(err)
    detail = errors_pb2.GateFailure()
    assert status.details[0].Unpack(detail)
    return detail


def test_a_released_version_loads_from_the_registry_and_serves(stack, runner):
    _, world, run, _ = stack
    module = fx.mlp(seed=11)
    ref = world.register("tox21", fx.torchscript_bytes(module), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    world.release(ref, "test")
    loaded = _load(runner, run, ref)
    assert loaded.state == 2 and loaded.artifact_digest.hex == world.artifact_digest(ref)
    x = np.random.default_rng(3).standard_normal((4, fx.IN)).astype(np.float32)
    request = pb.ModelInferRequest(model_name="tox21", model_version=str(ref.version))
    request.inputs.add(name="input", datatype="FP32", shape=[4, fx.IN])
    request.raw_input_contents.append(x.tobytes())
    stub = pb_grpc.GRPCInferenceServiceStub(run.channel)
    response = stub.ModelInfer(request, metadata=run.md("alice", ["researcher"]))
    y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(4, fx.OUT)
    np.testing.assert_allclose(y, fx.reference(module, x), rtol=1e-5, atol=1e-6)


def test_an_unvalidated_version_is_refused_with_each_failing_gate(stack, runner):
    _, world, run, _ = stack
    ref = world.register("unvalidated", fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    err = _error(lambda: _load(runner, run, ref))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"unvalidated version {ref.version} may not be loaded in test" in err.details()
    assert "VALIDATION:" in err.details() and "APPROVALS:" in err.details()
    detail = _gate_failure(err)
    assert detail.model.name == "unvalidated" and detail.environment == 2
    failed = {g.gate for g in detail.failed_gates}
    assert {gate_pb2.GATE_VALIDATION, gate_pb2.GATE_APPROVALS} <= failed
    assert all(g.message for g in detail.failed_gates)
    listed = runner.ListModels(rpb.ListModelsRequest(), metadata=run.md("alice", ["researcher"])).models
    assert "unvalidated" not in {m.model.name for m in listed}


def test_a_validated_but_unapproved_version_is_refused(stack, runner):
    _, world, run, _ = stack
    ref = world.register("unapproved", fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    world.validate(ref, ["dev", "test"])
    err = _error(lambda: _load(runner, run, ref))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "APPROVALS:" in err.details() and "VALIDATION:" not in err.details()


def test_unknown_versions_and_unservable_formats(stack, runner):
    _, world, run, _ = stack
    missing = model_pb2.ModelRef(name="tox21", version=99)
    assert _error(lambda: _load(runner, run, missing)).code() == grpc.StatusCode.NOT_FOUND
    ref = world.register("pickled", b"\x80\x04K\x01.", "PICKLE", fx.MLP_SIGNATURE)
    world.release(ref, "test")
    err = _error(lambda: _load(runner, run, ref))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "never deserializes pickle" in err.details()


def test_safetensors_and_an_mlflow_model_directory_from_the_registry(stack, runner):
    _, world, run, _ = stack
    st = world.register("sft", fx.safetensors_bytes(fx.mlp(seed=4)), "SAFETENSORS")
    mlf = world.register("mlf", fx.mlflow_onnx_tar(), "MLFLOW_MODEL", tar=True)
    for ref in (st, mlf):
        world.release(ref, "test")
        assert _load(runner, run, ref).state == 2
    meta = pb_grpc.GRPCInferenceServiceStub(run.channel).ModelMetadata(
        pb.ModelMetadataRequest(name="mlf"), metadata=run.md("alice", ["researcher"])
    )
    assert meta.platform == "mlflow_pyfunc" and [i.name for i in meta.inputs] == ["x"]


def test_bytes_corrupted_in_the_registry_are_never_loaded(stack, runner):
    registry, world, run, _ = stack
    ref = world.register("corrupt", fx.torchscript_bytes(fx.mlp(seed=5)), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    world.release(ref, "test")
    digest = world.artifact_digest(ref)
    blobs = [p for p in registry.data_dir.rglob(digest) if p.is_file()]
    assert blobs, "the registry's blob for the digest"
    for blob in blobs:
        os.chmod(blob, 0o644)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    err = _error(lambda: _load(runner, run, ref))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "corrupt" in err.details() or "hashes to" in err.details()


def test_batch_jobs_check_the_gates_at_submission(stack, runner):
    _, world, run, _ = stack
    ref = world.register("jobs-unreleased", fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    np.save(run.data_dir / "x.npy", np.zeros((3, fx.IN), np.float32))
    request = rpb.SubmitBatchJobRequest(
        model=ref,
        team=TEAM,
        input=batch_pb2.BatchInput(uri=f"file://{run.data_dir}/x.npy", format=batch_pb2.BATCH_DATA_FORMAT_NUMPY),
        output=batch_pb2.BatchOutput(uri=f"file://{run.data_dir}/out", format=batch_pb2.BATCH_DATA_FORMAT_NUMPY),
        batch_size=2,
    )
    err = _error(lambda: runner.SubmitBatchJob(request, metadata=run.md("alice", ["researcher"], teams=[TEAM])))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _gate_failure(err).model.name == "jobs-unreleased"


def runner_binary() -> str:
    for root in filter(None, [os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")]):
        candidate = os.path.join(
            root, os.environ.get("TEST_WORKSPACE", "causeway_monorepo"), "services/gpu_runner/gpu_runner"
        )
        if os.path.exists(candidate):
            return candidate
    return os.environ.get("CAUSEWAY_GPU_RUNNER_BINARY", "bazel-bin/services/gpu_runner/gpu_runner")


def _chain(run, world, subject: str):
    """The runner's events about `subject` in the registry's audit chain, read as an auditor."""
    stub = audit_service_pb2_grpc.AuditServiceStub(world.channel)
    query = audit_event_pb2.EventFilter(subject=subject, service="gpu-runner")
    request = audit_service_pb2.ListEventsRequest(filter=query, page_size=100)
    return list(stub.ListEvents(request, metadata=run.md("auditor", ["reviewer"])).events)


def test_load_decisions_and_unloads_are_in_the_registry_audit_chain(stack, runner):
    _, world, run, _ = stack
    ref = world.register("audited", fx.torchscript_bytes(fx.mlp(seed=11)), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    assert _error(lambda: _load(runner, run, ref)).code() == grpc.StatusCode.FAILED_PRECONDITION
    world.release(ref, "test")
    _load(runner, run, ref)
    runner.UnloadModel(rpb.UnloadModelRequest(model=ref), metadata=_deployer(run))
    assert run.app.audit_publisher.flush() == 0
    events = _chain(run, world, f"models/audited/versions/{ref.version}")
    assert [(e.action, e.outcome) for e in events] == [
        ("model.load", audit_event_pb2.AUDIT_OUTCOME_FAILURE),
        ("model.load", audit_event_pb2.AUDIT_OUTCOME_SUCCESS),
        ("model.unload", audit_event_pb2.AUDIT_OUTCOME_SUCCESS),
    ]
    refused = events[0]
    assert "VALIDATION:" in refused.details["reason"] and refused.details["environment"] == "test"
    assert all(e.service == "gpu-runner" and e.actor.subject == "service:deployer" for e in events)
    assert all(e.request_id for e in events) and events[1].details["digest"] == world.artifact_digest(ref)


def test_the_runner_binary_preloads_flips_health_logs_json_and_stops_on_sigterm(stack):
    registry, world, run, tmp = stack
    ref = world.register("preloaded", fx.torchscript_bytes(fx.mlp(seed=9)), "TORCHSCRIPT", fx.MLP_SIGNATURE)
    world.release(ref, "test")
    env = dict(os.environ)
    env.update(runner_env(tmp / "binary", run.idp, ENVIRONMENT="test", REGISTRY_ADDRESS=registry.address))
    env.update({"CAUSEWAY_GPU_RUNNER_PRELOAD": f"preloaded:{ref.version}", "CAUSEWAY_GPU_RUNNER_GRACE_SECONDS": "1"})
    with ServerProcess([runner_binary()], env=env, ready_timeout=120) as proc:
        channel = grpc.insecure_channel(proc.address)
        health = health_pb2_grpc.HealthStub(channel)
        oip = pb_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + 120
        while not oip.ServerReady(pb.ServerReadyRequest()).ready:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.1)
        # types-grpcio-health-checking declares HealthStub without its RPC attributes.
        serving = health.Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        )
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
        assert oip.ModelReady(pb.ModelReadyRequest(name="preloaded"), metadata=run.md("a", ["researcher"])).ready
        channel.close()
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    serving_line = proc.log_entries("serving")[0]
    assert serving_line["service"] == "gpu-runner" and serving_line["environment"] == "test"
    loaded = proc.log_entries("model loaded")[0]
    subject = f"models/preloaded/versions/{ref.version}"
    assert loaded["subject"] == subject and loaded["digest"] == world.artifact_digest(ref)
    # The binary appended the event to the registry's audit chain (the preload is its own action).
    (chained,) = _chain(run, world, subject)
    assert chained.action == "model.load" and chained.outcome == audit_event_pb2.AUDIT_OUTCOME_SUCCESS
    assert chained.service == "gpu-runner" and chained.actor.subject == "service:gpu-runner"  # its own action
    assert chained.details["digest"] == world.artifact_digest(ref)
    assert any(e.get("grpc_method", "").endswith("/ModelReady") for e in proc.log_entries("rpc"))
    assert proc.log_entries("stopped")
