"""Per-model manifests: deterministic, rendered by kustomize, schema-valid, policy-clean."""

from __future__ import annotations

import shutil

import pytest

from gitops.validation import policy
from gitops.validation.render import render
from gitops.validation.schemas import ManifestValidator
from services.deployer.domain import manifests
from services.deployer.domain.records import CanaryStep, Strategy
from services.deployer.tests.harness import gitops_source

RUNNER = "registry.causeway.example/causeway/gpu-runner@sha256:" + "c" * 64


def _release(strategy: Strategy, env: str = "prod") -> manifests.Release:
    return manifests.Release(
        "tox-net", 3, "sha256:" + "a" * 64, "dep-1", env, "aws", strategy, RUNNER, "http://prom:9090", "registry:50051"
    )


@pytest.mark.parametrize("strategy", [Strategy(), Strategy.canary((CanaryStep(20, 60), CanaryStep(60, 60)))])
def test_model_directory_renders_validates_and_meets_pod_policy(tmp_path, strategy) -> None:
    shutil.copytree(gitops_source() / "components", tmp_path / "gitops" / "components")
    directory = tmp_path / "gitops" / "models" / "aws" / "prod" / "tox-net"
    directory.mkdir(parents=True)
    for name, content in manifests.render(_release(strategy)).items():
        (directory / name).write_bytes(content)
    objects = render(directory)
    assert not ManifestValidator(gitops_source() / "schemas").all_errors(objects)
    assert not policy.violations(objects)
    kinds = sorted(o["kind"] for o in objects)
    workload = "Rollout" if strategy.kind == "canary" else "Deployment"
    assert {"ConfigMap", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", workload} <= set(kinds)
    pod = next(o for o in objects if o["kind"] == workload)["spec"]["template"]["spec"]
    # The cloud's GPU placement, one GPU, and prod's zone spread come from gitops/components.
    assert pod["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "gpu"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["topologySpreadConstraints"]
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    # The generated (hash-suffixed) pin is what the pods read: a new pin rolls them.
    assert pod["containers"][0]["envFrom"][0]["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"]["CAUSEWAY_MODEL_ARTIFACT_DIGEST"] == "sha256:" + "a" * 64
    assert config_map["data"]["CAUSEWAY_GPU_RUNNER_PRELOAD"] == "tox-net:3"
    if strategy.kind == "canary":
        analysis = next(o for o in objects if o["kind"] == "AnalysisTemplate")
        queries = [m["provider"]["prometheus"]["query"] for m in analysis["spec"]["metrics"]]
        assert all("grpc_server_handl" in q and "{{args.canary-hash}}" in q for q in queries)
        assert any("{{args.stable-hash}}" in q for q in queries)  # relative to the stable track
        weights = [
            s["setWeight"]
            for s in next(o for o in objects if o["kind"] == "Rollout")["spec"]["strategy"]["canary"]["steps"]
            if "setWeight" in s
        ]
        assert weights == [20, 60, 100]


def test_same_release_same_bytes_and_a_promotion_is_a_one_file_change() -> None:
    a = manifests.render(_release(Strategy()))
    assert a == manifests.render(_release(Strategy()))
    newer = manifests.Release(
        **{**_release(Strategy()).__dict__, "version": 4, "artifact_digest": "sha256:" + "b" * 64}
    )
    b = manifests.render(newer)
    assert [name for name in a if a[name] != b[name]] == ["release.env"]
