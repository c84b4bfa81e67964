"""Pick the files of some distributions, and of everything they require, out of a locked venv.

Contract of `closure_files`: given a site-packages directory and requirement strings
("grpcio", "tritonclient[grpc]"), return (image path, host file) pairs for exactly the files the
installed distributions' RECORDs list inside site-packages, for the named distributions and the
transitive closure of their Requires-Dist (markers evaluated for this interpreter and the
requested extras). Left out: __pycache__/*.pyc (timestamp-based, rebuilt at run time or not at
all), anything RECORD places outside site-packages (the venv's bin/ scripts with host-path
shebangs), and direct_url.json (it can hold a file:// URL of the host). A required distribution
that is not installed is an error: the image would fail at import time instead.
"""

from __future__ import annotations

import importlib.metadata
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

_EXCLUDED_NAMES = frozenset({"direct_url.json"})


def canonical_name(name: str) -> str:
    """PEP 503 normalization: 'Foo_Bar.baz' -> 'foo-bar-baz'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_site_packages(venv: Path) -> Path:
    """The venv's single lib/python3.X/site-packages directory."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"expected one site-packages under {venv}, found {found}")
    return found[0]


def installed_distributions(site_packages: Path) -> dict[str, importlib.metadata.Distribution]:
    """Distributions installed in `site_packages` (and only there), by canonical name."""
    dists: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        name = canonical_name(dist.metadata["Name"])
        dists.setdefault(name, dist)
    return dists


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in sorted(extras | {""}))


def resolve(requirements: Iterable[str], dists: dict[str, importlib.metadata.Distribution]) -> dict[str, set[str]]:
    """Canonical names of the requirements' closure, each with the extras it was asked for."""
    chosen: dict[str, set[str]] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonical_name(req.name)
        if name not in dists:
            raise SystemExit(f"{req} is required but not installed in the venv (is it in the lock?)")
        if name in chosen and set(req.extras) <= chosen[name]:
            continue
        extras = chosen[name] = chosen.get(name, set()) | set(req.extras)
        # Re-queuing what an earlier visit already queued is harmless: it is skipped above.
        todo += [d for d in map(Requirement, dists[name].requires or []) if _wanted(d, extras)]
    return chosen


def dist_files(dist: importlib.metadata.Distribution, site_packages: Path) -> list[str]:
    """Site-packages-relative paths of the files `dist` installed (per RECORD), filtered."""
    if dist.files is None:
        raise SystemExit(f"{dist.metadata['Name']} has no RECORD: cannot tell which files are its own")
    rels = []
    for entry in dist.files:
        rel = posixpath.normpath(entry.as_posix())
        parts = rel.split("/")
        if rel.startswith("../") or "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        if parts[-1] in _EXCLUDED_NAMES:
            continue
        if not (site_packages / rel).is_file():
            raise SystemExit(f"{dist.metadata['Name']}: RECORD lists {rel}, missing from the venv")
        rels.append(rel)
    return rels


def closure_files(
    site_packages: Path, requirements: Iterable[str], prefix: str
) -> tuple[list[tuple[str, Path]], list[str]]:
    """(image path under `prefix`, host path) for every file of the closure, and the closure's
    "name==version" list, both sorted."""
    dists = installed_distributions(site_packages)
    chosen = resolve(requirements, dists)
    files: dict[str, Path] = {}
    for name in sorted(chosen):
        for rel in dist_files(dists[name], site_packages):
            files[posixpath.join(prefix, rel)] = site_packages / rel
    pins = sorted(f"{name}=={dists[name].version}" for name in chosen)
    return sorted(files.items()), pins


def top_level_pth(rels: Iterable[str]) -> list[str]:
    """.pth files directly in site-packages: Python runs them only in a site dir, not from
    PYTHONPATH, so an image that needs one must say so (see docs/adr/0002-oci-images.md)."""
    return sorted(r for r in rels if r.endswith(".pth") and "/" not in r)
