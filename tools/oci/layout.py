"""Write an OCI image layout (oci-layout, index.json, blobs/sha256/...) from finished layers.

Contract of `write_layout`: the same layer blobs and the same `ImageConfig` give byte-identical
config, manifest and index JSON (canonical JSON, fixed `created`, no host paths), hence the same
manifest digest, wherever and whenever it runs. The index names the manifest with the
`org.opencontainers.image.ref.name` annotation, so `skopeo inspect oci:DIR:<ref>` finds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from tools.oci.layer import Descriptor, canonical_json

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# Reproducible images have no build time; the epoch says so plainly.
CREATED = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (OCI image-spec `config` object)."""

    entrypoint: Sequence[str]
    env: dict[str, str]
    user: str = ""
    workdir: str = ""
    exposed_ports: Sequence[str] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    cmd: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class Layer:
    """A finished layer: its gzipped tar on disk, its descriptor, and a history note."""

    blob: Path
    descriptor: Descriptor
    created_by: str


def _port(spec: str) -> str:
    return spec if "/" in spec else spec + "/tcp"


def config_json(config: ImageConfig, layers: Sequence[Layer]) -> bytes:
    """The image config blob. PATH is set unless the caller sets it; keys are sorted."""
    env = {"PATH": DEFAULT_PATH, **config.env}
    runtime: dict[str, object] = {
        "Entrypoint": list(config.entrypoint),
        "Env": [f"{k}={env[k]}" for k in sorted(env)],
    }
    if config.cmd:
        runtime["Cmd"] = list(config.cmd)
    if config.user:
        runtime["User"] = config.user
    if config.workdir:
        runtime["WorkingDir"] = config.workdir
    if config.exposed_ports:
        runtime["ExposedPorts"] = {_port(p): {} for p in sorted(config.exposed_ports)}
    if config.labels:
        runtime["Labels"] = dict(sorted(config.labels.items()))
    return canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [layer.descriptor.diff_id for layer in layers]},
            "history": [{"created": CREATED, "created_by": layer.created_by} for layer in layers],
        }
    )


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def _put_blob(blobs: Path, digest: str, data: bytes | None = None, source: Path | None = None) -> None:
    dest = blobs / digest.split(":", 1)[1]
    if dest.exists():
        return  # content-addressed: the same digest is the same bytes
    if data is not None:
        dest.write_bytes(data)
    else:
        assert source is not None
        shutil.copyfile(source, dest)


def write_layout(out: Path, config: ImageConfig, layers: Sequence[Layer], ref_name: str = "latest") -> str:
    """Write the layout into the (empty or missing) directory `out`; return the manifest digest."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        _put_blob(blobs, layer.descriptor.digest, source=layer.blob)

    config_blob = config_json(config, layers)
    config_desc = _descriptor(CONFIG_MEDIA_TYPE, config_blob)
    _put_blob(blobs, str(config_desc["digest"]), data=config_blob)

    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config_desc,
            "layers": [
                {"mediaType": lay.descriptor.media_type, "digest": lay.descriptor.digest, "size": lay.descriptor.size}
                for lay in layers
            ],
        }
    )
    manifest_desc = _descriptor(MANIFEST_MEDIA_TYPE, manifest)
    _put_blob(blobs, str(manifest_desc["digest"]), data=manifest)

    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            {
                **manifest_desc,
                "annotations": {REF_NAME_ANNOTATION: ref_name},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (out / "index.json").write_bytes(canonical_json(index))
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return str(manifest_desc["digest"])
