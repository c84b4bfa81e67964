"""py_oci_image as Bazel builds it (:smoke_image): layers, config, and the image really runs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

RUNFILES = Path(os.environ["TEST_SRCDIR"])
WORKSPACE = os.environ["TEST_WORKSPACE"]
IMAGE = RUNFILES / WORKSPACE / "tools/oci/tests/smoke_image"
DIGEST = RUNFILES / WORKSPACE / "tools/oci/tests/smoke_image.digest"
BASE_DESCRIPTOR = RUNFILES / "debian_base/layer.json"
APP = f"/app/runfiles/{WORKSPACE}"


def _skopeo(*args: str) -> dict:
    res = subprocess.run(["/usr/bin/skopeo", "inspect", *args, f"oci:{IMAGE}:latest"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _blob(digest: str) -> Path:
    return IMAGE / "blobs" / "sha256" / digest.split(":", 1)[1]


def test_layout_digest_and_layers() -> None:
    info = _skopeo()
    assert info["Digest"] == DIGEST.read_text()
    assert len(info["Layers"]) == 3
    assert info["Layers"][0] == json.loads(BASE_DESCRIPTOR.read_text())["digest"]


def test_config_runs_main_with_import_roots() -> None:
    config = _skopeo("--config")["config"]
    assert config["Entrypoint"] == ["/usr/bin/python3.11", f"{APP}/tools/oci/tests/smoke_main.py"]
    env = dict(e.split("=", 1) for e in config["Env"])
    # The py_library's `imports` root first (as Bazel's stub does), then the workspace, then pip.
    assert env["PYTHONPATH"] == f"{APP}/tools/oci/tests/imp:{APP}:/app/site-packages"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["GREETING"] == "hi"
    assert config["User"] == "65532:65532"
    assert config["WorkingDir"] == APP
    assert config["ExposedPorts"] == {"8080/tcp": {}}


def _layer_names(index: int) -> list[str]:
    """Non-directory members of the manifest's layer `index`, as stored."""
    manifest = _skopeo("--raw")
    with tarfile.open(_blob(manifest["layers"][index]["digest"])) as tar:
        return [m.name for m in tar.getmembers() if not m.isdir()]


def test_app_layer_is_only_the_runfiles_sources() -> None:
    assert _layer_names(2) == [
        f"app/runfiles/{WORKSPACE}/tools/oci/tests/imp/greeting/__init__.py",
        f"app/runfiles/{WORKSPACE}/tools/oci/tests/smoke_main.py",
    ]


def test_site_packages_layer_has_only_the_closure() -> None:
    names = _layer_names(1)
    assert "app/site-packages/six.py" in names
    tops = {n.split("/")[2] for n in names if n.startswith("app/site-packages/")}
    assert {t for t in tops if not t.startswith("six")} == set(), tops
    assert not any(n.endswith(".pyc") or "/bin/" in n for n in names)


def test_no_host_paths_in_the_image() -> None:
    needles = [str(RUNFILES).encode(), b"/var/cache/causeway", b"/root/.cache", b"bazel-out"]
    for blob in (IMAGE / "blobs" / "sha256").iterdir():
        if blob.stat().st_size > 1_000_000:
            continue  # the base layer: checked by debian_base_test, too slow to scan here
        data = blob.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for needle in needles:
            assert needle not in data, (blob.name, needle)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("bundle") / "b"
    res = subprocess.run(
        ["/usr/bin/umoci", "unpack", "--rootless", "--image", f"{IMAGE}:latest", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return bundle / "rootfs"


def test_image_runs_its_entrypoint_in_a_chroot(rootfs: Path) -> None:
    config = _skopeo("--config")["config"]
    env = dict(e.split("=", 1) for e in config["Env"])

    def enter() -> None:
        os.chroot(rootfs)
        os.chdir(config["WorkingDir"])

    res = subprocess.run(config["Entrypoint"], env=env, preexec_fn=enter, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["words"] == "hello from the image"
    assert report["greeting_env"] == "hi"
    assert report["six"]
    assert report["ssl_cas"] > 50, "the CA bundle must be in the base layer"
    assert report["ctypes_libc"] is True
    assert report["executable"] == "/usr/bin/python3.11"
