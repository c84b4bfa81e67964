"""Single-machine mode: deployments drive real gpu-runner processes; canaries are analysed locally.

Two real runners serve dev ("stable" and "canary"); a real registry holds TorchScript versions.
A direct deploy loads the version on the stable runner (the runner checks gates and digest) and
it answers Open Inference Protocol requests; a canary with lenient criteria is promoted; one
with an impossible latency bound is aborted and traffic stays on the stable version. Each
analysis decision is in the registry's audit chain. The GitOps commit is still written.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from causeway.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from causeway.runner.v1 import runner_service_pb2 as rpb
from causeway.runner.v1 import runner_service_pb2_grpc as rgrpc
from inference import grpc_service_pb2 as oip
from inference import grpc_service_pb2_grpc as oip_grpc
from libs.auth.interceptor import bearer
from libs.testing.processes import ServerProcess
from services.deployer.tests.harness import deployer_harness


def _runner_argv() -> list[str]:
    runfiles = Path(os.environ.get("TEST_SRCDIR", "/nonexistent")) / "causeway_monorepo/services/gpu_runner/gpu_runner"
    return [str(runfiles)] if runfiles.exists() else [sys.executable, "-m", "services.gpu_runner.main"]


@contextlib.contextmanager
def _runner(tmp: Path, registry, name: str):
    token = tmp / f"{name}.token"
    token.write_text(registry.idp.service_token("gpu-runner"))
    env = dict(os.environ)
    env.update(
        {
            f"CAUSEWAY_GPU_RUNNER_{k}": v
            for k, v in {
                "ENVIRONMENT": "dev",
                "REGISTRY_ADDRESS": registry.address,
                "DATA_DIR": str(tmp / name),
                "DEVICE": "cpu",
                "MEMORY_BUDGET_BYTES": str(256 * 1024 * 1024),
                "GATE_RECHECK_SECONDS": "0",
                "HOST": "127.0.0.1",
                "PORT": "0",
                "METRICS_PORT": "0",
                "GRACE_SECONDS": "0",
                "AUTH_JWKS": str(registry.idp.jwks_path),
                "AUTH_ISSUER": registry.idp.issuer,
                "AUTH_AUDIENCE": registry.idp.audience,
                "AUTH_SERVICE_TOKEN_FILE": str(token),
            }.items()
        }
    )
    with ServerProcess(_runner_argv(), env=env, ready_timeout=180) as proc:
        metrics_port = proc.log_entries("metrics")[0]["metrics_port"]
        yield proc, f"http://127.0.0.1:{metrics_port}/metrics"


def _torchscript(scale: float) -> bytes:
    import torch

    layer = torch.nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.fill_(scale)
        layer.bias.zero_()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(layer.eval()), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def local(registry, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    with (
        _runner(tmp, registry, "stable") as (stable, stable_metrics),
        _runner(tmp, registry, "canary") as (
            canary,
            canary_metrics,
        ),
    ):
        runners = f"dev/stable={stable.address}@{stable_metrics},dev/canary={canary.address}@{canary_metrics}"
        with deployer_harness(tmp, registry, LOCAL_RUNNERS=runners, CLOUDS="local") as dep:
            yield dep, stable, canary


def _wait(dep, deployment_id: str, timeout: float = 120) -> pb.Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = dep.stub.GetDeployment(svc.GetDeploymentRequest(deployment_id=deployment_id), metadata=dep.md()).deployment
        if d.state in (pb.DEPLOYMENT_STATE_SUCCEEDED, pb.DEPLOYMENT_STATE_FAILED, pb.DEPLOYMENT_STATE_ABORTED):
            return d
        time.sleep(0.1)
    raise AssertionError(f"deployment {deployment_id} did not finish: {d}")


def _loaded(runner, registry) -> list[tuple[str, int]]:
    stub = rgrpc.RunnerServiceStub(grpc.insecure_channel(runner.address))
    models = stub.ListModels(rpb.ListModelsRequest(), metadata=bearer(registry.idp.service_token("deployer"))).models
    return [(m.model.name, m.model.version) for m in models]


def _deploy(dep, name, version, strategy=None):
    request = svc.DeployModelRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=envpb.ENVIRONMENT_DEV,
        cloud=envpb.CLOUD_LOCAL,
        reason="local",
    )
    if strategy is not None:
        request.strategy.CopyFrom(strategy)
    return dep.stub.DeployModel(request, metadata=dep.md()).deployment


def _canary(*criteria: pb.CanaryCriterion) -> pb.DeploymentStrategy:
    steps = [pb.CanaryStep(traffic_percent=50), pb.CanaryStep(traffic_percent=100)]
    return pb.DeploymentStrategy(canary=pb.CanaryStrategy(steps=steps, criteria=list(criteria)))


def _audit(registry, deployment_id: str) -> list:
    stub = audit_service_pb2_grpc.AuditServiceStub(registry.channel)
    request = audit_service_pb2.ListEventsRequest(page_size=1000)
    request.filter.subject = f"deployments/{deployment_id}"
    return list(stub.ListEvents(request, metadata=registry.md("auditor", "qa-approver")).events)


def test_direct_canary_promote_and_canary_abort_on_real_runners(local, registry) -> None:
    dep, stable, canary = local
    name = f"local-{uuid.uuid4().hex[:6]}"
    fmt = model_pb2.MODEL_FORMAT_TORCHSCRIPT
    v1 = registry.release(name, through="dev", payload=_torchscript(1.0), model_format=fmt)
    v2 = registry.release(name, through="dev", payload=_torchscript(2.0), model_format=fmt)
    v3 = registry.release(name, through="dev", payload=_torchscript(3.0), model_format=fmt)

    first = _wait(dep, _deploy(dep, name, v1).deployment_id)
    assert first.state == pb.DEPLOYMENT_STATE_SUCCEEDED, first.message
    assert (name, v1) in _loaded(stable, registry)
    oip_stub = oip_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(stable.address))
    request = oip.ModelInferRequest(model_name=name, model_version=str(v1))
    request.inputs.append(oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4]))
    request.raw_input_contents.append(np.ones((1, 4), dtype=np.float32).tobytes())
    reply = oip_stub.ModelInfer(request, metadata=bearer(registry.idp.issue("ann", ["researcher"])))
    assert np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).tolist() == [4.0]
    assert dep.git("ls-tree", "--name-only", "main", f"gitops/models/local/dev/{name}/")
    status = dep.stub.GetDeploymentStatus(
        svc.GetDeploymentStatusRequest(model_name=name, environment=envpb.ENVIRONMENT_DEV, cloud=envpb.CLOUD_LOCAL),
        metadata=dep.md(),
    ).status
    assert status.sync_status == pb.SYNC_STATUS_SYNCED and status.health_status == pb.HEALTH_STATUS_HEALTHY

    lenient = _canary(
        pb.CanaryCriterion(metric="error_rate", max_value=0.5),
        pb.CanaryCriterion(metric="latency_p99_seconds", max_relative_increase=1000.0),
    )
    promoted = _wait(dep, _deploy(dep, name, v2, lenient).deployment_id)
    assert promoted.state == pb.DEPLOYMENT_STATE_SUCCEEDED, promoted.message
    assert promoted.canary_analysis.traffic_percent == 100
    assert (name, v2) in _loaded(stable, registry) and (name, v1) not in _loaded(stable, registry)
    assert not [m for m in _loaded(canary, registry) if m[0] == name]

    impossible = _canary(pb.CanaryCriterion(metric="latency_p99_seconds", max_value=1e-9))
    aborted = _wait(dep, _deploy(dep, name, v3, impossible).deployment_id)
    assert aborted.state == pb.DEPLOYMENT_STATE_ABORTED, aborted.message
    assert aborted.canary_analysis.decision == pb.CANARY_DECISION_ABORT
    assert (name, v2) in _loaded(stable, registry) and (name, v3) not in _loaded(stable, registry)
    assert not [m for m in _loaded(canary, registry) if m[0] == name]

    dep.app.audit.flush()
    decisions = [
        dict(e.details)["decision"]
        for e in _audit(registry, aborted.deployment_id)
        if e.action == "deployment.canary_analysis"
    ]
    assert decisions[-1] == "abort"
    promoted_events = _audit(registry, promoted.deployment_id)
    assert [e for e in promoted_events if e.action == "deployment.canary_analysis"]
    assert all(e.recorded_by.subject == "service:deployer" for e in promoted_events)
    commit = [e for e in promoted_events if e.action == "deployment.commit"]
    assert len(commit) == 1 and commit[0].actor.subject == "rm"
