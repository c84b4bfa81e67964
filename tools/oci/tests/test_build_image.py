"""build_image.py end to end: the same inputs at two different paths give the same manifest
digest, and the real OCI tools (skopeo, umoci from Debian) accept the layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tools.oci
from tools.oci import layer

WORKSPACE_ROOT = Path(tools.oci.__file__).resolve().parents[2]
SKOPEO = "/usr/bin/skopeo"
UMOCI = "/usr/bin/umoci"


def _write_inputs(root: Path) -> None:
    """A tiny base layer, a fake venv with two distributions, and app sources, all under `root`."""
    layer.write_layer(
        [
            layer.Entry("usr/bin", "dir", 0o755),
            layer.Entry("bin", "symlink", 0o777, target="usr/bin"),
            layer.Entry("etc/os-release", "file", 0o644, data=b"ID=test\n"),
        ],
        root / "base.tar.gz",
    )
    site = root / "venv" / "lib" / "python3.11" / "site-packages"
    for name, requires in [("greeter", ["words"]), ("words", [])]:
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
        (info / "METADATA").write_text(metadata)
        (site / f"{name}.py").write_text(f"NAME = {name!r}\n")
        (info / "RECORD").write_text(f"{name}.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    # Bazel's venv_path.txt holds an absolute path: the digest must not depend on it.
    (root / "venv_path.txt").write_text(f"{root / 'venv'}\n")
    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "main.py").write_text("import greeter\nprint(greeter.NAME)\n")
    (root / "gen" / "causeway" / "v1").mkdir(parents=True)
    (root / "gen" / "causeway" / "v1" / "api_pb2.py").write_text("# generated\n")


def _build(root: Path) -> str:
    """Run the three build_image.py steps the way the Bazel rule does, with relative paths."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(WORKSPACE_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "tools.oci.build_image", *args], cwd=root, env=env, check=True)

    (root / "layers").mkdir()
    run(
        "site-packages",
        "--venv-path-file",
        "venv_path.txt",
        "--requirement",
        "greeter",
        "--out",
        "layers/sp.tar.gz",
        "--descriptor",
        "layers/sp.json",
    )
    params = root / "layers" / "app.params"
    params.write_text(
        "\n".join(
            [
                "app",
                "--workspace-name",
                "ws",
                "--out",
                "layers/app.tar.gz",
                "--descriptor",
                "layers/app.json",
                "--file=app/main.py\tsrc/app/main.py",
                "--root-file=ws/protos/causeway/v1/api_pb2.py\tgen/causeway/v1/api_pb2.py",
                "--empty=ws/app/__init__.py",
            ]
        )
        + "\n"
    )
    run(f"@{params.relative_to(root)}")
    spec = {
        "layers": [
            {"blob": "base.tar.gz", "descriptor": None, "created_by": "base"},
            {"blob": "layers/sp.tar.gz", "descriptor": "layers/sp.json", "created_by": "pip greeter"},
            {"blob": "layers/app.tar.gz", "descriptor": "layers/app.json", "created_by": "app"},
        ],
        "entrypoint": ["/usr/bin/python3.11", "/app/runfiles/ws/app/main.py"],
        "env": {"PYTHONPATH": "/app/runfiles/ws/protos:/app/runfiles/ws:/app/site-packages"},
        "user": "65532:65532",
        "exposed_ports": ["8080"],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    run("assemble", "--spec", "spec.json", "--out-dir", "image", "--digest-out", "image.digest")
    return (root / "image.digest").read_text()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    one = tmp_path_factory.mktemp("checkout") / "a"
    two = tmp_path_factory.mktemp("other") / "much" / "deeper" / "b"
    for root in (one, two):
        root.mkdir(parents=True)
        _write_inputs(root)
        _build(root)
    return one, two


def test_same_inputs_at_two_paths_give_the_same_digest(built: tuple[Path, Path]) -> None:
    one, two = built
    digest = (one / "image.digest").read_text()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert digest == (two / "image.digest").read_text()
    blobs_one = sorted(p.name for p in (one / "image" / "blobs" / "sha256").iterdir())
    assert blobs_one == sorted(p.name for p in (two / "image" / "blobs" / "sha256").iterdir())
    assert len(blobs_one) == 5  # 3 layers, config, manifest


def test_no_host_path_in_any_blob(built: tuple[Path, Path]) -> None:
    import gzip

    for root in built:
        for blob in (root / "image" / "blobs" / "sha256").iterdir():
            data = blob.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            assert str(root).encode() not in data, blob
            assert str(root.parent).encode() not in data, blob


def _skopeo(*args: str) -> dict:
    res = subprocess.run([SKOPEO, *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_skopeo_accepts_the_layout(built: tuple[Path, Path]) -> None:
    root = built[1]
    info = _skopeo("inspect", f"oci:{root / 'image'}:latest")
    assert info["Digest"] == (root / "image.digest").read_text()
    sp = json.loads((root / "layers" / "sp.json").read_text())
    app = json.loads((root / "layers" / "app.json").read_text())
    assert len(info["Layers"]) == 3 and info["Layers"][1:] == [sp["digest"], app["digest"]]
    assert info["Created"] == "1970-01-01T00:00:00Z"
    config = _skopeo("inspect", "--config", f"oci:{root / 'image'}:latest")
    assert config["config"]["Entrypoint"] == ["/usr/bin/python3.11", "/app/runfiles/ws/app/main.py"]
    assert config["config"]["User"] == "65532:65532"
    assert "PYTHONPATH=/app/runfiles/ws/protos:/app/runfiles/ws:/app/site-packages" in config["config"]["Env"]
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}


def test_umoci_unpacks_the_image(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    res = subprocess.run(
        [UMOCI, "unpack", "--rootless", "--image", f"{built[0] / 'image'}:latest", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "app/runfiles/ws/app/main.py").read_text().startswith("import greeter")
    assert (rootfs / "app/runfiles/ws/app/__init__.py").read_bytes() == b""
    assert (rootfs / "app/runfiles/ws/protos/causeway/v1/api_pb2.py").is_file()
    assert (rootfs / "app/site-packages/greeter.py").is_file()
    assert (rootfs / "app/site-packages/words.py").is_file()
    assert (rootfs / "usr/share/causeway/pip-packages.txt").read_text() == "greeter==1.0\nwords==1.0\n"
    assert os.readlink(rootfs / "bin") == "usr/bin"
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/usr/bin/python3.11", "/app/runfiles/ws/app/main.py"]
    shutil.rmtree(bundle)
