"""The committed GitOps tree, rendered once per test process (rendering is the slow part)."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gitops.validation.render import is_component, kustomization_dirs, render
from gitops.validation.schemas import ManifestValidator


def gitops_root() -> Path:
    """gitops/ in the runfiles (Bazel) or the checkout (pytest from the repo root)."""
    for base in (os.environ.get("TEST_SRCDIR", ""), "."):
        for candidate in (Path(base) / "causeway_monorepo" / "gitops", Path(base) / "gitops"):
            if (candidate / "envs").is_dir():
                return candidate.resolve()
    raise FileNotFoundError("gitops/ not found; run from the repository root")


def _real_copy(source: Path) -> Path:
    """A copy with real files: Bazel's runfiles are symlinks out of the tree, which kustomize's
    default load restriction (the one Argo CD uses too) refuses to follow."""
    target = Path(tempfile.mkdtemp(prefix="gitops-")) / "gitops"
    shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns("tests", "validation", "*.py"))
    return target


ROOT = _real_copy(gitops_root())
CLOUDS = ("aws", "gcp")
ENVIRONMENTS = ("dev", "test", "prod")
SERVICES = ("registry", "validator", "deployer", "gpu-runner")


def overlays() -> list[str]:
    """Every renderable kustomization (components render inside the overlays that use them)."""
    dirs = kustomization_dirs(ROOT, ["apps", "envs", "models", "argocd", "platform"])
    return [str(d.relative_to(ROOT)) for d in dirs if not is_component(d)]


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(ROOT / overlay))


def env_objects(cloud: str, env: str) -> tuple[dict[str, Any], ...]:
    return rendered(f"envs/{cloud}/{env}")


def all_env_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{c}/{e}", obj) for c in CLOUDS for e in ENVIRONMENTS for obj in env_objects(c, e)]


@functools.cache
def validator() -> ManifestValidator:
    return ManifestValidator(ROOT / "schemas")


def find(objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
