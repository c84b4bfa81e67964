"""Two deployer replicas pushing to one remote GitOps repository (fast-forward only, as a
protected branch on a git host): concurrent deployments of different models all land, nothing
is force-pushed, and each replica's history reads the other's commits."""

from __future__ import annotations

import subprocess
import threading
import uuid

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from services.deployer.storage.gitops_repo import GitopsRepo
from services.deployer.tests.harness import deployer_harness, gitops_source


def _git(git_dir, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True).stdout


def test_replicas_on_one_remote_lose_no_commit(tmp_path, registry) -> None:
    origin = GitopsRepo(tmp_path / "origin.git").open(seed=gitops_source()).path
    _git(origin, "config", "receive.denyNonFastForwards", "true")
    _git(origin, "config", "receive.denyDeletes", "true")
    models = [f"rep-{uuid.uuid4().hex[:6]}" for _ in range(10)]
    versions = {m: registry.release(m, through="dev") for m in models}
    with (
        deployer_harness(tmp_path / "a", registry, GIT_REMOTE=str(origin)) as a,
        deployer_harness(tmp_path / "b", registry, GIT_REMOTE=str(origin)) as b,
    ):
        results, errors = [], []

        def deploy(replica, name: str) -> None:
            request = svc.DeployModelRequest(
                model=model_pb2.ModelRef(name=name, version=versions[name]),
                environment=envpb.ENVIRONMENT_DEV,
                cloud=envpb.CLOUD_GCP,
                reason="replicas",
            )
            try:
                results.append(replica.stub.DeployModel(request, metadata=replica.md()).deployment)
            except Exception as err:  # noqa: BLE001 - asserted below
                errors.append(err)

        threads = [threading.Thread(target=deploy, args=((a, b)[i % 2], m)) for i, m in enumerate(models)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert all(d.state == pb.DEPLOYMENT_STATE_SUCCEEDED for d in results)
        assert _git(origin, "rev-list", "--count", "main").strip() == str(len(models) + 1)
        for d in results:  # every published commit is on the remote's main
            _git(origin, "merge-base", "--is-ancestor", d.git_change.commit_sha, "main")
        # Replica b reads what replica a wrote (its history fetches the remote).
        written_by_a = next(d for d in results if d.model.name == models[0])
        history = b.stub.ListDeploymentHistory(
            svc.ListDeploymentHistoryRequest(
                model_name=models[0], environment=envpb.ENVIRONMENT_DEV, cloud=envpb.CLOUD_GCP
            ),
            metadata=b.md(),
        ).revisions
        assert [r.revision for r in history] == [written_by_a.git_change.commit_sha]
    assert _git(origin, "fsck", "--strict", "--no-dangling").strip() == ""
