"""kill -9 in the middle of a deployment leaves the GitOps repository and the records consistent.

The deployer runs as a real subprocess; a failpoint freezes it at a chosen step, the test kills
it with SIGKILL, restarts it, and checks: git fsck is clean, the branch points at either the old
or the new commit (never anything in between), no lock is left behind, the interrupted
deployment is reconciled from git (FAILED before the commit, SUCCEEDED after), and the next
deployment of the same model goes through.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid

import grpc
import pytest

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployer_service_pb2_grpc as svc_grpc
from causeway.deployer.v1 import deployment_pb2 as pb
from libs.auth.interceptor import bearer
from libs.testing.processes import ServerProcess
from services.deployer.domain import commit_message
from services.deployer.tests.harness import deployer_argv, deployer_env


def _git(git_dir, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def _deployer(tmp_path, registry, failpoints: str = ""):
    env = dict(os.environ) | deployer_env(tmp_path, registry, HOST="127.0.0.1", PORT="0", GRACE_SECONDS="0")
    env["CAUSEWAY_DEPLOYER_FAILPOINTS"] = failpoints
    with ServerProcess(deployer_argv(), env=env, ready_timeout=120) as proc:
        channel = grpc.insecure_channel(proc.address)
        try:
            yield proc, svc_grpc.DeployerServiceStub(channel)
        finally:
            channel.close()


def _request(name: str, version: int) -> svc.DeployModelRequest:
    return svc.DeployModelRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=envpb.ENVIRONMENT_DEV,
        cloud=envpb.CLOUD_AWS,
        reason="crash test",
    )


@pytest.mark.parametrize(
    ("failpoint", "committed"),
    [("deployment-stored", False), ("git-objects-written", False), ("git-published", True)],
)
def test_kill_9_mid_deploy_leaves_a_consistent_repository(tmp_path, registry, failpoint, committed) -> None:
    name = f"crash-{uuid.uuid4().hex[:6]}"
    v1 = registry.release(name, through="dev")
    v2 = registry.release(name, through="dev")
    md = bearer(registry.idp.issue("rm", ["release-manager"], name="Rm"))
    git_dir = tmp_path / "deployer" / "gitops.git"
    with _deployer(tmp_path, registry) as (_proc, stub):
        stub.DeployModel(_request(name, v1), metadata=md)
    before = _git(git_dir, "rev-parse", "main").strip()

    with _deployer(tmp_path, registry, failpoint) as (proc, stub):
        outcome: dict = {}

        def call() -> None:
            try:
                outcome["response"] = stub.DeployModel(_request(name, v2), metadata=md, timeout=60)
            except grpc.RpcError as err:
                outcome["error"] = err

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 60
        while not proc.log_entries("failpoint") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.log_entries("failpoint"), proc.output()
        proc.kill()  # SIGKILL
        caller.join(timeout=30)
        assert outcome["error"].code() == grpc.StatusCode.UNAVAILABLE

    assert _git(git_dir, "fsck", "--strict", "--no-dangling").strip() == ""
    assert not list(git_dir.glob("refs/heads/**/*.lock"))
    head = _git(git_dir, "rev-parse", "main").strip()
    if committed:
        assert _git(git_dir, "rev-parse", "main^").strip() == before
        trailers = commit_message.parse_trailers(_git(git_dir, "log", "-1", "--format=%B", "main"))
        assert trailers["Version"] == str(v2)
    else:
        assert head == before

    with _deployer(tmp_path, registry) as (_proc, stub):  # restart: recovery runs before serving
        listed = stub.ListDeployments(svc.ListDeploymentsRequest(model_name=name), metadata=md).deployments
        interrupted = listed[0]
        assert interrupted.model.version == v2
        if committed:
            assert interrupted.state == pb.DEPLOYMENT_STATE_SUCCEEDED
            assert interrupted.git_change.commit_sha == head
        else:
            assert interrupted.state == pb.DEPLOYMENT_STATE_FAILED
            assert "interrupted" in interrupted.message
            # Nothing blocks the target: the same deployment now goes through.
            again = stub.DeployModel(_request(name, v2), metadata=md).deployment
            assert again.state == pb.DEPLOYMENT_STATE_SUCCEEDED
            assert _git(git_dir, "rev-parse", "main^").strip() == before
    assert _git(git_dir, "fsck", "--strict", "--no-dangling").strip() == ""
