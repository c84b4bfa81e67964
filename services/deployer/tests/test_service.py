"""DeployerService end to end: auth, input checks, gates from the real registry, git commits, audit."""

from __future__ import annotations

import uuid

import grpc
import pytest

from causeway.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import errors_pb2, gate_pb2, model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from causeway.registry.v1 import model_pb2 as registry_model_pb2
from libs.testing.grpc_servers import rich_status_of
from services.deployer.domain import commit_message

DEV, TEST, PROD = envpb.ENVIRONMENT_DEV, envpb.ENVIRONMENT_TEST, envpb.ENVIRONMENT_PROD
AWS, LOCAL = envpb.CLOUD_AWS, envpb.CLOUD_LOCAL


def _deploy(dep, name, version, env=DEV, cloud=AWS, md=None, **fields):
    request = svc.DeployModelRequest(
        model=model_pb2.ModelRef(name=name, version=version),
        environment=env,
        cloud=cloud,
        reason=fields.pop("reason", "release"),
        **fields,
    )
    return dep.stub.DeployModel(request, metadata=md or dep.md()).deployment


def _model(registry, prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_every_rpc_requires_a_token(deployer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.GetDeploymentStatus(svc.GetDeploymentStatusRequest(model_name="x", environment=DEV, cloud=AWS))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_deploying_needs_the_release_manager_role(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="dev")
    with pytest.raises(grpc.RpcError) as err:
        _deploy(deployer, name, version, md=deployer.md("sam", "researcher"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "deployments.write" in (err.value.details() or "")
    # Reading is for everyone authenticated.
    deployer.stub.ListDeployments(svc.ListDeploymentsRequest(), metadata=deployer.md("sam", "researcher"))


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"environment": 0}, "environment"),
        ({"cloud": 0}, "cloud"),
        ({"reason": " "}, "reason"),
        ({"name": "Not_A_Label"}, "DNS-1123"),
        ({"version": 0}, "version"),
        ({"environment": PROD}, "change_request"),
    ],
)
def test_bad_input_is_invalid_argument(deployer, fields, needle) -> None:
    request = svc.DeployModelRequest(
        model=model_pb2.ModelRef(name=fields.pop("name", "tox"), version=fields.pop("version", 1)),
        environment=fields.pop("environment", DEV),
        cloud=fields.pop("cloud", AWS),
        reason=fields.pop("reason", "why"),
    )
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.DeployModel(request, metadata=deployer.md())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (err.value.details() or "")


def test_canary_steps_must_increase(deployer) -> None:
    strategy = pb.DeploymentStrategy(
        canary=pb.CanaryStrategy(steps=[pb.CanaryStep(traffic_percent=50), pb.CanaryStep(traffic_percent=20)])
    )
    with pytest.raises(grpc.RpcError) as err:
        _deploy(deployer, "tox", 1, strategy=strategy)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_version_is_not_found(deployer, registry) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _deploy(deployer, _model(registry), 7)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _gate_failure(err: grpc.RpcError) -> errors_pb2.GateFailure:
    status = rich_status_of(err)
    detail = errors_pb2.GateFailure()
    assert status.details[0].Unpack(detail)
    return detail


def test_an_unvalidated_version_is_refused_naming_the_gate(deployer, registry) -> None:
    name = _model(registry)
    version = registry.register(name)
    with pytest.raises(grpc.RpcError) as err:
        _deploy(deployer, name, version)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    detail = _gate_failure(err.value)
    assert detail.model.name == name and detail.environment == DEV
    assert [g.gate for g in detail.failed_gates] == [gate_pb2.GATE_VALIDATION]
    assert "VALIDATION" in (err.value.details() or "")
    assert deployer.git("log", "--oneline", "main").count("\n") == 0  # only the initial commit
    refusals = [e for e in deployer.app.store.all_events() if e.action == "deployment.refuse"]
    assert refusals and refusals[-1].outcome == "FAILURE" and refusals[-1].actor.subject == "rm"


def test_deploy_to_dev_is_one_direct_commit_naming_version_evidence_and_requester(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="dev")
    d = _deploy(deployer, name, version, md=deployer.md("rhea", "release-manager"), reason="first  release\nof tox")
    assert d.state == pb.DEPLOYMENT_STATE_SUCCEEDED
    assert d.git_change.mode == pb.GIT_CHANGE_MODE_DIRECT_COMMIT and d.git_change.branch == "main"
    assert deployer.git("rev-parse", "main") == d.git_change.commit_sha
    assert deployer.git("rev-parse", f"{d.git_change.commit_sha}^") == d.git_change.base_commit_sha
    message = deployer.git("log", "-1", "--format=%B", "main")
    trailers = commit_message.parse_trailers(message)
    assert trailers["Model"] == name and trailers["Version"] == str(version)
    assert trailers["Artifact-Digest"] == "sha256:" + d.artifact_digest.hex
    assert trailers["Validation-Report"].startswith("sha256:")
    assert trailers["Requested-By"] == "rhea (Rhea)" and trailers["Deployment-Id"] == d.deployment_id
    assert deployer.git("log", "-1", "--format=%an|%cn", "main") == "Rhea|Causeway Deployer"
    changed = deployer.git("show", "--name-only", "--format=", "main").splitlines()
    assert all(p.startswith("gitops/models/aws/dev/") for p in changed)
    # One commit, one commit event in the audit outbox (plus acceptance), with the requester.
    commits = [e for e in deployer.app.store.all_events() if e.action == "deployment.commit"]
    assert len(commits) == 1 and commits[0].details["commit"] == d.git_change.commit_sha
    assert commits[0].actor.subject == "rhea"
    # The registry's dev alias follows the deployment.
    assert registry_model_pb2.MODEL_ALIAS_DEV in registry.version(name, version).aliases
    # ... and the events reach the registry's audit chain, appended by the deployer's identity.
    assert deployer.app.audit.flush() == 0
    listing = audit_service_pb2.ListEventsRequest(page_size=100)
    listing.filter.subject = f"deployments/{d.deployment_id}"
    chained = (
        audit_service_pb2_grpc.AuditServiceStub(registry.channel)
        .ListEvents(listing, metadata=registry.md("auditor", "qa-approver"))
        .events
    )
    assert [e.action for e in chained] == ["deployment.accept", "deployment.commit"]
    assert {e.recorded_by.subject for e in chained} == {"service:deployer"}
    assert chained[1].actor.subject == "rhea" and chained[1].payload_digest.hex == d.artifact_digest.hex


def test_the_same_request_id_returns_the_first_deployment(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="dev")
    rid = str(uuid.uuid4())
    first = _deploy(deployer, name, version, request_id=rid)
    again = _deploy(deployer, name, version, request_id=rid)
    assert again.deployment_id == first.deployment_id
    assert deployer.git("rev-list", "--count", "main") == "2"


def test_promotion_without_the_required_approvals_is_refused(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="dev")  # validated, no approvals
    _deploy(deployer, name, version)
    request = svc.PromoteModelRequest(
        model_name=name, source_environment=DEV, target_environment=TEST, cloud=AWS, reason="to test"
    )
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.PromoteModel(request, metadata=deployer.md())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert gate_pb2.GATE_APPROVALS in [g.gate for g in _gate_failure(err.value).failed_gates]
    # With the approval the same promotion goes through, as a pull request (test is not direct).
    registry.approve(name, version, "test", "rita", "reviewer")
    d = deployer.stub.PromoteModel(request, metadata=deployer.md()).deployment
    assert d.kind == pb.DEPLOYMENT_KIND_PROMOTE and d.source_environment == DEV
    assert d.state == pb.DEPLOYMENT_STATE_AWAITING_MERGE
    assert d.git_change.mode == pb.GIT_CHANGE_MODE_PULL_REQUEST and d.git_change.branch != "main"
    assert deployer.git("rev-parse", d.git_change.branch) == d.git_change.commit_sha
    changed = deployer.git("show", "--name-only", "--format=", d.git_change.commit_sha).splitlines()
    assert f"gitops/models/aws/test/{name}/release.env" in changed


def test_a_second_deployment_while_one_is_in_progress_is_aborted(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="test")
    first = _deploy(deployer, name, version, env=TEST)
    assert first.state == pb.DEPLOYMENT_STATE_AWAITING_MERGE
    with pytest.raises(grpc.RpcError) as err:
        _deploy(deployer, name, version, env=TEST)
    assert err.value.code() == grpc.StatusCode.ABORTED
    aborted = deployer.stub.AbortDeployment(
        svc.AbortDeploymentRequest(deployment_id=first.deployment_id, reason="wrong day"), metadata=deployer.md()
    ).deployment
    assert aborted.state == pb.DEPLOYMENT_STATE_ABORTED
    again = _deploy(deployer, name, version, env=TEST)
    assert again.state == pb.DEPLOYMENT_STATE_AWAITING_MERGE


def test_a_merged_pull_request_completes_the_deployment(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="test")
    d = _deploy(deployer, name, version, env=TEST)
    # A reviewer merges the branch (fast-forward here; the host may also merge or squash).
    deployer.git("update-ref", "refs/heads/main", d.git_change.commit_sha, d.git_change.base_commit_sha)
    got = deployer.stub.GetDeployment(svc.GetDeploymentRequest(deployment_id=d.deployment_id), metadata=deployer.md())
    assert got.deployment.state == pb.DEPLOYMENT_STATE_SUCCEEDED


def test_rollback_restores_exactly_the_previous_manifests(deployer, registry) -> None:
    name = _model(registry)
    v1 = registry.release(name, through="dev")
    v2 = registry.release(name, through="dev")
    first = _deploy(deployer, name, v1)
    canary = pb.DeploymentStrategy(canary=pb.CanaryStrategy())
    second = _deploy(deployer, name, v2, strategy=canary)
    directory = f"gitops/models/aws/dev/{name}"
    before = deployer.git("rev-parse", f"{first.git_change.commit_sha}:{directory}")
    assert deployer.git("rev-parse", f"main:{directory}") != before
    d = deployer.stub.RollbackModel(
        svc.RollbackModelRequest(model_name=name, environment=DEV, cloud=AWS, reason="latency regression"),
        metadata=deployer.md(),
    ).deployment
    assert d.kind == pb.DEPLOYMENT_KIND_ROLLBACK and d.model.version == v1
    assert d.target_revision == first.git_change.commit_sha and d.previous_model.version == v2
    # The same tree object: byte for byte the directory v1's deployment wrote, canary files gone.
    assert deployer.git("rev-parse", f"main:{directory}") == before
    # A new commit on top (never a rewrite): both earlier commits are still ancestors of main.
    for sha in (first.git_change.commit_sha, second.git_change.commit_sha):
        deployer.git("merge-base", "--is-ancestor", sha, "main")
    history = deployer.stub.ListDeploymentHistory(
        svc.ListDeploymentHistoryRequest(model_name=name, environment=DEV, cloud=AWS), metadata=deployer.md()
    ).revisions
    assert [r.model.version for r in history] == [v1, v2, v1]
    assert history[0].kind == pb.DEPLOYMENT_KIND_ROLLBACK
    assert all(r.current_gate_decision == gate_pb2.GATE_DECISION_ALLOWED for r in history)
    assert history[1].end_time.seconds and not history[0].HasField("end_time")


def test_rollback_only_to_revisions_of_this_environment(deployer, registry) -> None:
    name = _model(registry)
    v1 = registry.release(name, through="dev")
    _deploy(deployer, name, v1)
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.RollbackModel(
            svc.RollbackModelRequest(model_name=name, environment=DEV, cloud=AWS, reason="r"), metadata=deployer.md()
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.RollbackModel(
            svc.RollbackModelRequest(model_name=name, environment=DEV, cloud=AWS, reason="r", target_revision="xyz!"),
            metadata=deployer.md(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_status_and_listing(deployer, registry) -> None:
    name = _model(registry)
    version = registry.release(name, through="dev")
    d = _deploy(deployer, name, version)
    status = deployer.stub.GetDeploymentStatus(
        svc.GetDeploymentStatusRequest(model_name=name, environment=DEV, cloud=AWS), metadata=deployer.md()
    ).status
    assert status.live_model.version == version and status.revision == d.git_change.commit_sha
    assert [(t.model.version, t.percent) for t in status.traffic] == [(version, 100)]
    page = deployer.stub.ListDeployments(
        svc.ListDeploymentsRequest(model_name=name, page_size=1), metadata=deployer.md()
    )
    assert [x.deployment_id for x in page.deployments] == [d.deployment_id]
    with pytest.raises(grpc.RpcError) as err:
        deployer.stub.ListDeployments(
            svc.ListDeploymentsRequest(model_name="other", page_token=page.next_page_token or "e30="),
            metadata=deployer.md(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
