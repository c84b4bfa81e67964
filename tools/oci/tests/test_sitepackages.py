"""The third-party layer holds exactly the requested distributions and their closure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tools.oci import sitepackages


def _dist(site: Path, name: str, version: str, requires: list[str], files: dict[str, str]) -> None:
    """A minimal installed distribution: METADATA, RECORD and the files RECORD lists."""
    info = site / f"{name.lower().replace('-', '_').replace('.', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    rows = []
    for rel, content in files.items():
        path = (site / rel).resolve() if rel.startswith("..") else site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        rows.append(f"{rel},sha256={hashlib.sha256(content.encode()).hexdigest()},{len(content)}")
    rel_info = info.relative_to(site).as_posix()
    rows += [f"{rel_info}/METADATA,,", f"{rel_info}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    _dist(
        sp,
        "Top_Pkg",
        "1.0",
        ["base-lib>=1", 'extra-lib; extra == "fast"', 'py2-only; python_version < "3"'],
        {
            "top_pkg/__init__.py": "import base_lib\n",
            "top_pkg/__pycache__/__init__.cpython-311.pyc": "junk",
            "../../../bin/top": "#!/host/venv/bin/python3\n",
            "top_pkg-1.0.dist-info/direct_url.json": '{"url": "file:///host/path"}',
        },
    )
    _dist(sp, "base.lib", "2.0", [], {"base_lib.py": "X = 1\n"})
    _dist(sp, "extra-lib", "3.0", ["base-lib"], {"extra_lib/__init__.py": ""})
    _dist(sp, "unrelated", "4.0", [], {"unrelated.py": ""})
    return sp


def test_finds_the_venvs_site_packages(site: Path) -> None:
    assert sitepackages.find_site_packages(site.parents[2]) == site


def test_closure_follows_requires_dist_and_skips_false_markers(site: Path) -> None:
    dists = sitepackages.installed_distributions(site)
    assert set(sitepackages.resolve(["top-pkg"], dists)) == {"top-pkg", "base-lib"}


def test_extras_pull_in_their_requirements(site: Path) -> None:
    dists = sitepackages.installed_distributions(site)
    chosen = sitepackages.resolve(["top_pkg", "TOP-PKG[fast]"], dists)
    assert set(chosen) == {"top-pkg", "base-lib", "extra-lib"}
    assert chosen["top-pkg"] == {"fast"}


def test_missing_requirement_is_an_error(site: Path) -> None:
    dists = sitepackages.installed_distributions(site)
    with pytest.raises(SystemExit, match="not-installed"):
        sitepackages.resolve(["not-installed"], dists)


def test_files_exclude_bytecode_scripts_and_direct_url(site: Path) -> None:
    files, pins = sitepackages.closure_files(site, ["top-pkg"], "app/site-packages")
    dests = [dest for dest, _ in files]
    assert dests == sorted(dests)
    assert "app/site-packages/top_pkg/__init__.py" in dests
    assert "app/site-packages/base_lib.py" in dests
    assert "app/site-packages/top_pkg-1.0.dist-info/METADATA" in dests
    assert not any("__pycache__" in d or d.endswith(".pyc") for d in dests)
    assert not any("direct_url.json" in d or "/bin/" in d for d in dests)
    assert not any("unrelated" in d or "extra_lib" in d for d in dests)
    assert pins == ["base-lib==2.0", "top-pkg==1.0"]
    for _, src in files:
        assert src.is_file() and src.is_relative_to(site)


def test_a_file_missing_from_the_venv_is_an_error(site: Path) -> None:
    (site / "base_lib.py").unlink()
    with pytest.raises(SystemExit, match=r"base_lib\.py"):
        sitepackages.closure_files(site, ["base-lib"], "app/site-packages")


def test_top_level_pth_files_are_reported() -> None:
    assert sitepackages.top_level_pth(["a.pth", "pkg/b.pth", "c.py"]) == ["a.pth"]
