"""Argo CD: one AppProject per environment, one ApplicationSet generating an Application per
(cloud, environment) with manifest-generate-paths covering everything the overlay renders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gitops.tests.tree import CLOUDS, ENVIRONMENTS, ROOT, find, rendered, validator

REPO_ROOT = ROOT.parent


def _appset() -> dict:
    (appset,) = find(rendered("argocd"), "ApplicationSet")
    return appset


def _fill(template, params: dict[str, Any]):
    """Expand the Go-template expressions this ApplicationSet uses; unknown keys fail (missingkey=error)."""
    if isinstance(template, dict):
        return {_fill(k, params): _fill(v, params) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, params) for v in template]
    if not isinstance(template, str):
        return template

    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        index = re.fullmatch(r"index \.path\.segments (\d+)", expr)
        if index:
            return str(params["path.segments"][int(index.group(1))])
        key = expr.lstrip(".")
        if key not in params:
            raise KeyError(f"missingkey=error: {expr}")
        return str(params[key])

    return re.sub(r"\{\{(.*?)\}\}", one, template)


def _merge(base: dict, override: dict) -> dict:
    """A generator's template over the ApplicationSet's (maps merged key by key)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _generated(root: Path = REPO_ROOT) -> list[dict]:
    """The Applications each matrix generator yields for its directories and one cluster per pair."""
    appset = _appset()
    apps = []
    for generator in appset["spec"]["generators"]:
        git, clusters = generator["matrix"]["generators"]
        template = _merge(appset["spec"]["template"], generator["matrix"].get("template", {}))
        for directory in sorted(p for p in root.glob(git["git"]["directories"][0]["path"]) if p.is_dir()):
            rel = directory.relative_to(root).as_posix()
            params = {"path.path": rel, "path.basename": directory.name, "path.segments": rel.split("/")}
            selector = _fill(clusters["clusters"]["selector"]["matchLabels"], params)
            if selector["causeway.io/cloud"] not in CLOUDS:
                continue  # no cluster carries that label (models/local is the single machine's)
            params["name"] = f"causeway-{selector['causeway.io/cloud']}-{selector['causeway.io/environment']}"
            app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"}
            app |= _fill(template, params)
            apps.append(app)
    return apps


def test_one_project_per_environment() -> None:
    projects = {p["metadata"]["name"]: p for p in find(rendered("argocd"), "AppProject")}
    assert set(projects) == {f"causeway-{e}" for e in ENVIRONMENTS}
    for env in ENVIRONMENTS:
        spec = projects[f"causeway-{env}"]["spec"]
        assert all(d["name"].endswith(f"-{env}") for d in spec["destinations"])
        # Plain Secrets never sync: they only come from ExternalSecrets in the cluster.
        assert not any(k["kind"] == "Secret" for k in spec["namespaceResourceWhitelist"])


def test_applicationset_uses_go_templates_strictly() -> None:
    spec = _appset()["spec"]
    assert spec["goTemplate"] is True and "missingkey=error" in spec["goTemplateOptions"]
    kinds = [next(iter(g)) for g in spec["generators"][0]["matrix"]["generators"]]
    assert kinds == ["git", "clusters"]


def test_one_valid_application_per_cloud_and_environment() -> None:
    apps = _generated()
    names = sorted(a["metadata"]["name"] for a in apps)
    assert names == sorted(f"causeway-{c}-{e}" for c in CLOUDS for e in ENVIRONMENTS)
    projects = {p["metadata"]["name"] for p in find(rendered("argocd"), "AppProject")}
    for app in apps:
        assert not validator().errors(app), validator().errors(app)
        assert app["spec"]["project"] in projects
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_each_model_directory_is_its_own_application(tmp_path) -> None:
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "gitops", root / "gitops")
    for cloud, env in (("aws", "prod"), ("gcp", "dev"), ("local", "dev")):
        model = root / "gitops" / "models" / cloud / env / "tox"
        model.mkdir(parents=True)
        (model / "kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
    apps = {a["metadata"]["name"]: a for a in _generated(root)}
    assert set(apps) == {f"causeway-{c}-{e}" for c in CLOUDS for e in ENVIRONMENTS} | {
        "causeway-aws-prod-model-tox",
        "causeway-gcp-dev-model-tox",
    }
    model = apps["causeway-aws-prod-model-tox"]
    assert model["spec"]["project"] == "causeway-prod" and model["spec"]["destination"]["name"] == "causeway-aws-prod"
    assert model["spec"]["source"]["path"] == "gitops/models/aws/prod/tox"
    assert model["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"] == ".;/gitops/components"
    assert model["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert not validator().errors(model)


def _referenced_dirs(directory: Path, seen: set[Path]) -> set[Path]:
    """Every directory an overlay reads, following resources and components."""
    if directory in seen:
        return seen
    seen.add(directory)
    doc = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    for entry in (doc.get("resources") or []) + (doc.get("components") or []):
        target = (directory / entry).resolve()
        if target.is_dir():
            _referenced_dirs(target, seen)
    return seen


def test_manifest_generate_paths_cover_everything_the_overlay_renders() -> None:
    for app in _generated():
        source = (REPO_ROOT / app["spec"]["source"]["path"]).resolve()
        paths = app["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"].split(";")
        covered = [
            (REPO_ROOT / p.lstrip("/")).resolve() if p.startswith("/") else (source / p).resolve() for p in paths
        ]
        assert all(c.exists() for c in covered), covered
        for used in _referenced_dirs(source, set()):
            assert any(used == c or c in used.parents for c in covered), (
                f"{app['metadata']['name']}: {used} not covered"
            )
