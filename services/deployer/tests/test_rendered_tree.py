"""What the deployer writes renders with kustomize and passes the same schema and policy checks as
the rest of gitops/: every environment overlay of the deployer's repository, after direct and
canary deployments on both clouds, a promotion branch and a rollback."""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from causeway.deployer.v1 import deployment_pb2 as pb
from gitops.validation import policy
from gitops.validation.render import is_component, kustomization_dirs, render
from gitops.validation.schemas import ManifestValidator


def _checkout(git_dir: Path, ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", ref], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)  # noqa: S202 - our own git archive
    return into / "gitops"


def _check_tree(root: Path) -> list[str]:
    validator = ManifestValidator(root / "schemas")
    problems: list[str] = []
    overlays = [d for d in kustomization_dirs(root, ["envs", "models"]) if not is_component(d)]
    for overlay in overlays:
        objects = render(overlay)
        problems += validator.all_errors(objects)
        problems += policy.violations(objects)
        parts = overlay.relative_to(root).parts
        if parts[0] == "models" and parts[1] in ("aws", "gcp"):
            for obj in objects:
                if obj["kind"] in ("Deployment", "Rollout"):
                    spec = obj["spec"]["template"]["spec"]
                    if (
                        not spec.get("nodeSelector")
                        or spec["containers"][0]["resources"]["limits"].get("nvidia.com/gpu") != "1"
                    ):
                        problems.append(f"{overlay}: {obj['metadata']['name']} is not placed on {parts[1]} GPU nodes")
    return problems


@pytest.fixture
def written_tree(deployer, registry, tmp_path):
    md = deployer.md()
    names = [f"tree-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    canary = pb.DeploymentStrategy(
        canary=pb.CanaryStrategy(
            steps=[pb.CanaryStep(traffic_percent=25), pb.CanaryStep(traffic_percent=100)],
            criteria=[
                pb.CanaryCriterion(metric="error_rate", max_value=0.01),
                pb.CanaryCriterion(metric="latency_p99_seconds", max_relative_increase=0.25),
            ],
        )
    )
    for i, name in enumerate(names):
        v1 = registry.release(name, through="test")
        v2 = registry.release(name, through="test")
        for cloud in (envpb.CLOUD_AWS, envpb.CLOUD_GCP):
            for version, strategy in ((v1, None), (v2, canary if i == 0 else None)):
                request = svc.DeployModelRequest(
                    model=model_pb2.ModelRef(name=name, version=version),
                    environment=envpb.ENVIRONMENT_DEV,
                    cloud=cloud,
                    reason="tree",
                )
                if strategy is not None:
                    request.strategy.CopyFrom(strategy)
                deployer.stub.DeployModel(request, metadata=md)
    deployer.stub.RollbackModel(
        svc.RollbackModelRequest(
            model_name=names[1], environment=envpb.ENVIRONMENT_DEV, cloud=envpb.CLOUD_GCP, reason="r"
        ),
        metadata=md,
    )
    promoted = deployer.stub.PromoteModel(
        svc.PromoteModelRequest(
            model_name=names[0],
            source_environment=envpb.ENVIRONMENT_DEV,
            target_environment=envpb.ENVIRONMENT_TEST,
            cloud=envpb.CLOUD_AWS,
            reason="promote",
        ),
        metadata=md,
    ).deployment
    return deployer.git_dir, promoted.git_change.branch


def test_every_overlay_the_deployer_wrote_renders_and_validates(written_tree, tmp_path) -> None:
    git_dir, branch = written_tree
    for ref in ("main", branch):
        root = _checkout(git_dir, ref, tmp_path / ref.replace("/", "_"))
        assert list((root / "models" / "aws" / "dev").iterdir())
        problems = _check_tree(root)
        assert not problems, "\n".join(problems)
    promoted = _checkout(git_dir, branch, tmp_path / "promoted")
    (model,) = list((promoted / "models" / "aws" / "test").iterdir())
    # The canary deployment became an Argo Rollout with its analysis (the promoted model's dev dir).
    kinds = {o["kind"] for o in render(promoted / "models" / "aws" / "dev" / model.name)}
    assert {"Rollout", "AnalysisTemplate"} <= kinds
