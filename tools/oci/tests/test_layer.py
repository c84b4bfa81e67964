"""The layer and layout writers are deterministic and leak nothing of the host."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from tools.oci import layer, layout


def _make_tree(root: Path, mtime: int, umask_mode: int) -> Path:
    """The same content, written with a different mtime, file mode and owner each time."""
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(os.urandom(16))
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "pkg" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (root / "pkg" / "run.sh").chmod(0o700 if umask_mode else 0o755)
    (root / "pkg" / "__init__.py").chmod(umask_mode or 0o644)
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime))
        # In a user namespace only root is mapped: then mtimes and modes still differ.
        with contextlib.suppress(OSError):
            os.chown(path, 1000 + mtime % 7, 1000 + mtime % 5)
    return root


def _entries(root: Path) -> list[layer.Entry]:
    entries = layer.tree_entries("app/lib", root, skip=frozenset({"__pycache__"}))
    entries.append(layer.Entry("usr/bin/tool", "symlink", 0o777, target="../lib/tool"))
    entries.append(layer.Entry("etc/motd", "file", 0o644, data=b"hello\n"))
    # Listed out of order on purpose: the writer sorts.
    entries.insert(0, layer.Entry("tmp", "dir", 0o1777))
    return entries


@pytest.fixture
def two_trees(tmp_path: Path) -> tuple[Path, Path]:
    a = _make_tree(tmp_path / "first" / "checkout", mtime=1_700_000_000, umask_mode=0)
    b = _make_tree(tmp_path / "second-place" / "deeper" / "checkout", mtime=12345, umask_mode=0o600)
    return a, b


def test_same_inputs_at_two_paths_give_identical_bytes(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_trees
    desc_a = layer.write_layer(_entries(a), tmp_path / "a.tar.gz")
    desc_b = layer.write_layer(_entries(b), tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert desc_a == desc_b


def test_descriptor_matches_the_bytes(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "l.tar.gz"
    desc = layer.write_layer(_entries(two_trees[0]), out)
    blob = out.read_bytes()
    assert desc.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert desc.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert desc.size == len(blob)
    assert layer.describe_existing(out) == desc
    assert layer.Descriptor.from_json(desc.to_json()) == desc


def test_members_sorted_with_parents_and_no_host_metadata(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "l.tar.gz"
    layer.write_layer(_entries(two_trees[1]), out)
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
        parent = os.path.dirname(m.name)
        assert not parent or parent in names, f"{m.name} has no parent entry"
    by_name = {m.name: m for m in members}
    assert "app/lib/pkg/__pycache__" not in by_name
    assert by_name["tmp"].mode == 0o1777 and by_name["tmp"].isdir()
    assert by_name["usr/bin/tool"].issym() and by_name["usr/bin/tool"].linkname == "../lib/tool"
    # Host modes 0600 / 0700 are normalized by the executable bit only.
    assert by_name["app/lib/pkg/__init__.py"].mode == 0o644
    assert by_name["app/lib/pkg/run.sh"].mode == 0o755


def test_gzip_header_has_no_name_and_no_time(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "named-output.tar.gz"
    layer.write_layer(_entries(two_trees[0]), out)
    header = out.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0, "FLG must be 0: no FNAME, no FEXTRA, no comment"
    assert header[4:8] == b"\0\0\0\0", "MTIME must be 0"


def test_no_host_path_strings_anywhere(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_trees
    out = tmp_path / "l.tar.gz"
    desc = layer.write_layer(_entries(a), out)
    raw = gzip.decompress(out.read_bytes())
    for needle in [str(a), str(tmp_path), "first", "checkout"]:
        assert needle.encode() not in raw
    lay = layout.Layer(out, desc, "test layer")
    digest = layout.write_layout(tmp_path / "oci", layout.ImageConfig(["/bin/true"], {"A": "1"}), [lay])
    for path in (tmp_path / "oci").rglob("*"):
        if path.is_file() and path.name != desc.digest.split(":")[1]:
            assert str(tmp_path).encode() not in path.read_bytes(), path
    assert digest.startswith("sha256:")


def test_later_entry_replaces_earlier(tmp_path: Path) -> None:
    entries = [
        layer.Entry("etc/passwd", "file", 0o644, data=b"from a package\n"),
        layer.Entry("etc/passwd", "file", 0o644, data=b"ours\n"),
    ]
    layer.write_layer(entries, tmp_path / "l.tar.gz")
    with tarfile.open(tmp_path / "l.tar.gz") as tar:
        assert [m.name for m in tar.getmembers()] == ["etc", "etc/passwd"]
        assert tar.extractfile("etc/passwd").read() == b"ours\n"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["/abs/path", "a/../../b", "a//b", "a/./b", ""])
def test_paths_must_be_normalized_and_relative(bad: str) -> None:
    with pytest.raises(ValueError):
        layer.Entry(bad, "dir", 0o755)


def test_layout_is_canonical_and_stable(two_trees: tuple[Path, Path], tmp_path: Path) -> None:
    config = layout.ImageConfig(
        entrypoint=["/usr/bin/python3.11", "/app/main.py"],
        env={"B": "2", "A": "1"},
        user="65532:65532",
        exposed_ports=["8080", "9090/udp"],
    )
    digests = []
    for i, tree in enumerate(two_trees):
        blob = tmp_path / f"in{i}" / "layer.tar.gz"
        blob.parent.mkdir()
        lay = layout.Layer(blob, layer.write_layer(_entries(tree), blob), "app")
        digests.append(layout.write_layout(tmp_path / f"out{i}", config, [lay]))
    assert digests[0] == digests[1]
    out = tmp_path / "out0"
    index = json.loads((out / "index.json").read_bytes())
    manifest_digest = index["manifests"][0]["digest"]
    assert manifest_digest == digests[0]
    assert index["manifests"][0]["annotations"] == {layout.REF_NAME_ANNOTATION: "latest"}
    manifest_bytes = (out / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_bytes()
    assert manifest_bytes == layer.canonical_json(json.loads(manifest_bytes))
    cfg_digest = json.loads(manifest_bytes)["config"]["digest"]
    cfg = json.loads((out / "blobs" / "sha256" / cfg_digest.split(":")[1]).read_bytes())
    assert cfg["created"] == "1970-01-01T00:00:00Z"
    assert cfg["config"]["Env"][:2] == ["A=1", "B=2"]
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for blob in (out / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    shutil.rmtree(out)
