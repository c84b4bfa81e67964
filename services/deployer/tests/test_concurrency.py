"""Concurrent requests through the service: different models all land; the same target is refused."""

from __future__ import annotations

import threading
import uuid

import grpc

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from services.deployer.domain import commit_message


def _request(name: str, version: int) -> svc.DeployModelRequest:
    return svc.DeployModelRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=envpb.ENVIRONMENT_DEV,
        cloud=envpb.CLOUD_AWS,
        reason="concurrent",
    )


def _run_all(calls) -> tuple[list, list[grpc.RpcError]]:
    results, errors = [], []
    lock = threading.Lock()

    def run(call) -> None:
        try:
            out = call()
            with lock:
                results.append(out)
        except grpc.RpcError as err:
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_concurrent_deployments_of_different_models_lose_no_commit(deployer, registry) -> None:
    models = [(f"conc-{uuid.uuid4().hex[:6]}", 0) for _ in range(12)]
    models = [(name, registry.release(name, through="dev")) for name, _ in models]
    md = deployer.md()
    results, errors = _run_all(
        [lambda n=n, v=v: deployer.stub.DeployModel(_request(n, v), metadata=md).deployment for n, v in models]
    )
    assert not errors, [e.details() for e in errors]
    assert all(d.state == pb.DEPLOYMENT_STATE_SUCCEEDED for d in results)
    log = deployer.git("log", "--format=%H%x00%B%x1e", "main")
    landed = {
        commit_message.parse_trailers(entry.split("\0", 1)[1]).get("Model")
        for entry in log.split("\x1e")
        if "\0" in entry
    }
    assert {n for n, _ in models} <= landed
    assert deployer.git("rev-list", "--count", "main") == str(len(models) + 1)
    # Each model is a directory of its own: nothing shared to lose in a race.
    listing = deployer.git("ls-tree", "--name-only", "main", "gitops/models/aws/dev/").splitlines()
    assert {f"gitops/models/aws/dev/{n}" for n, _ in models} <= set(listing)
    deployer.git("fsck", "--strict", "--no-dangling")


def test_concurrent_deployments_of_the_same_model_one_wins_the_rest_are_refused_cleanly(deployer, registry) -> None:
    name = f"same-{uuid.uuid4().hex[:6]}"
    versions = [registry.release(name, through="test") for _ in range(4)]
    md = deployer.md()
    calls = [
        lambda v=v: (
            deployer.stub.DeployModel(
                svc.DeployModelRequest(
                    model=model_pb2.ModelRef(name=name, version=v),
                    environment=envpb.ENVIRONMENT_TEST,
                    cloud=envpb.CLOUD_AWS,
                    reason="race",
                ),
                metadata=md,
            ).deployment
        )
        for v in versions
    ]
    results, errors = _run_all(calls)
    assert len(results) == 1 and results[0].state == pb.DEPLOYMENT_STATE_AWAITING_MERGE
    assert len(errors) == 3 and {e.code() for e in errors} == {grpc.StatusCode.ABORTED}
    branches = deployer.git("for-each-ref", "--format=%(refname:short)", "refs/heads/causeway").splitlines()
    assert branches == [results[0].git_change.branch]
