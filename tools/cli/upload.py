"""Streaming a file (or a directory packed as a canonical tar) to the registry's ArtifactService."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from causeway.common.v1 import digest_pb2
from causeway.registry.v1 import artifact_pb2, artifact_service_pb2, artifact_service_pb2_grpc

CHUNK = 1024 * 1024


def canonical_tar(directory: Path) -> Path:
    """Pack `directory` as the registry's canonical tar: sorted paths, mtime 0, uid/gid 0."""
    fd, name = tempfile.mkstemp(suffix=".tar")
    os.close(fd)
    entries = sorted(p for p in directory.rglob("*"))
    with tarfile.open(name, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in entries:
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(directory)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with open(path, "rb") as src:
                    tar.addfile(info, src)
            elif info.isdir() or info.issym():
                tar.addfile(info)
    return Path(name)


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _requests(
    path: Path, digest: str, layout: artifact_pb2.ArtifactLayout.ValueType, filename: str
) -> Iterator[artifact_service_pb2.UploadArtifactRequest]:
    size = path.stat().st_size
    yield artifact_service_pb2.UploadArtifactRequest(
        metadata=artifact_pb2.UploadArtifactMetadata(
            digest=digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=digest),
            size_bytes=size,
            layout=layout,
            filename=filename,
        )
    )
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            yield artifact_service_pb2.UploadArtifactRequest(chunk=chunk)


def upload(channel, metadata, path: Path) -> artifact_pb2.Artifact:
    """Upload a file or a directory; returns the stored artifact (digest, size, layout)."""
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
    packed = None
    if path.is_dir():
        packed = canonical_tar(path)
        source, layout = packed, artifact_pb2.ARTIFACT_LAYOUT_TAR
    else:
        source, layout = path, artifact_pb2.ARTIFACT_LAYOUT_FILE
    try:
        digest = file_digest(source)
        return stub.UploadArtifact(_requests(source, digest, layout, path.name), metadata=metadata).artifact
    finally:
        if packed is not None:
            packed.unlink(missing_ok=True)
