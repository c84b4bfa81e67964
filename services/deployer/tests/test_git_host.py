"""Pull requests through the git host API (against FakeGitHubServer: no git host runs here)."""

from __future__ import annotations

import uuid

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from services.deployer.tests.fake_git_host import FakeGitHubServer
from services.deployer.tests.harness import deployer_harness


def test_a_pull_request_is_opened_with_the_evidence_and_closed_on_abort(tmp_path, registry) -> None:
    token = tmp_path / "git-token"
    token.write_text("fake-token\n")
    name = f"pr-{uuid.uuid4().hex[:6]}"
    version = registry.release(name, through="prod")
    with (
        FakeGitHubServer() as host,
        deployer_harness(
            tmp_path,
            registry,
            GIT_HOST="github",
            GIT_HOST_API_URL=host.url,
            GIT_HOST_REPOSITORY="platform/causeway",
            GIT_TOKEN_FILE=str(token),
        ) as dep,
    ):
        d = dep.stub.DeployModel(
            svc.DeployModelRequest(
                model=model_pb2.ModelRef(name=name, version=version),
                environment=envpb.ENVIRONMENT_PROD,
                cloud=envpb.CLOUD_GCP,
                reason="quarterly release",
                change_request="CR-2211",
            ),
            metadata=dep.md("rhea", "release-manager"),
        ).deployment
        assert d.state == pb.DEPLOYMENT_STATE_AWAITING_MERGE
        assert d.git_change.pull_request_url == "https://github.example/platform/causeway/pull/1"
        pull = host.pulls[1]
        assert pull["head"] == d.git_change.branch and pull["base"] == "main"
        assert pull["title"] == f"deploy: {name} v{version} to prod/gcp"
        for needle in ("CR-2211", "rhea", d.artifact_digest.hex, "APPROVALS", "quarterly release"):
            assert needle in pull["body"]
        assert dep.git("rev-list", "--count", "main") == "1"  # nothing on main until merged
        dep.stub.AbortDeployment(
            svc.AbortDeploymentRequest(deployment_id=d.deployment_id, reason="postponed"), metadata=dep.md()
        )
        assert pull["state"] == "closed" and "postponed" in pull["comments"][0]


def test_gitlab_merge_requests_open_and_close() -> None:
    from services.deployer.clients.git_host import GitHostError, GitLabMergeRequests
    from services.deployer.tests.fake_git_host import FakeGitLabServer

    with FakeGitLabServer() as host:
        client = GitLabMergeRequests(host.url, "platform/causeway", lambda: "fake-token")
        url = client.open("causeway/deploy/x", "main", "deploy: tox v3 to prod/aws", "evidence")
        assert url.endswith("/merge_requests/1")
        request = host.merge_requests[1]
        assert (request["source_branch"], request["target_branch"], request["description"]) == (
            "causeway/deploy/x",
            "main",
            "evidence",
        )
        client.close(url, "aborted")
        assert request["state"] == "closed" and request["notes"] == ["aborted"]
        bad = GitLabMergeRequests(host.url, "platform/causeway", lambda: "wrong")
        try:
            bad.open("b", "main", "t", "d")
        except GitHostError as err:
            assert "401" in str(err)
        else:
            raise AssertionError("a wrong token must fail")
