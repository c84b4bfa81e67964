"""Every overlay renders with kustomize and every object validates against its schema."""

from __future__ import annotations

import copy

import pytest

from gitops.tests.tree import ROOT, find, overlays, rendered, validator


def test_the_tree_has_the_expected_overlays() -> None:
    found = set(overlays())
    expected = {f"envs/{c}/{e}" for c in ("aws", "gcp") for e in ("dev", "test", "prod")}
    expected |= {f"apps/{s}/base" for s in ("registry", "validator", "deployer", "gpu-runner")}
    expected |= {"argocd", "argocd/projects", "argocd/applicationsets", "platform/kueue"}
    assert expected <= found, f"missing overlays: {sorted(expected - found)}"


@pytest.mark.parametrize("overlay", overlays())
def test_overlay_renders_and_validates(overlay: str) -> None:
    objects = rendered(overlay)
    errors = validator().all_errors(objects)
    assert not errors, "\n".join(errors)


def test_unknown_fields_are_errors_for_kubernetes_kinds() -> None:
    deployment = copy.deepcopy(find(rendered("envs/aws/dev"), "Deployment", "registry")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["resoures"] = {}
    assert any("resoures" in e for e in validator().errors(deployment))


def test_unknown_fields_are_errors_for_custom_resources() -> None:
    queue = copy.deepcopy(find(rendered("platform/kueue"), "ClusterQueue")[0])
    queue["spec"]["cohortName"] = queue["spec"].pop("cohort")
    assert validator().errors(queue)
    appset = copy.deepcopy(find(rendered("argocd"), "ApplicationSet")[0])
    appset["spec"]["template"]["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    assert any("selfheal" in e for e in validator().errors(appset))


def test_a_kind_without_schema_is_an_error() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in validator().errors(obj)[0]


def test_schemas_are_in_this_repository() -> None:
    # CI runs from a fresh clone: nothing may point outside the repository.
    kinds = {kind for _, kind in validator().crds.kinds()}
    assert {"ApplicationSet", "AppProject", "Application", "Rollout", "AnalysisTemplate"} <= kinds
    assert {"ClusterQueue", "LocalQueue", "ResourceFlavor", "ExternalSecret", "ClusterSecretStore"} <= kinds
    assert (ROOT / "schemas" / "README.md").is_file()
