"""Client-side helpers for artifact tests and benchmarks: stream up and down without holding bytes.

Generated artifacts are deterministic streams of 1 MiB blocks (a random block with the block
number in front), so a test can hash one first and upload it afterwards without keeping it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator

import grpc
from google.rpc import status_pb2

from causeway.common.v1 import digest_pb2
from causeway.registry.v1 import artifact_pb2, artifact_service_pb2
from libs.testing.grpc_servers import trailers

MIB = 1024 * 1024


def digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def blocks(size: int, seed: bytes | None = None, block: int = MIB) -> Callable[[], Iterator[bytes]]:
    """A re-playable stream of `size` pseudo-random bytes in `block`-sized pieces."""
    base = seed or os.urandom(block)
    base = (base * (block // len(base) + 1))[:block]

    def replay() -> Iterator[bytes]:
        sent, number = 0, 0
        while sent < size:
            piece = (number.to_bytes(8, "big") + base[8:])[: min(block, size - sent)]
            yield piece
            sent += len(piece)
            number += 1

    return replay


def sha256_of(chunks: Iterable[bytes]) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def upload_requests(
    chunks: Iterable[bytes],
    hex_digest: str,
    size: int,
    *,
    layout: artifact_pb2.ArtifactLayout.ValueType = artifact_pb2.ARTIFACT_LAYOUT_FILE,
    filename: str = "model.bin",
) -> Iterator[artifact_service_pb2.UploadArtifactRequest]:
    meta = artifact_pb2.UploadArtifactMetadata(
        digest=digest(hex_digest), size_bytes=size, layout=layout, filename=filename
    )
    yield artifact_service_pb2.UploadArtifactRequest(metadata=meta)
    for chunk in chunks:
        yield artifact_service_pb2.UploadArtifactRequest(chunk=chunk)


def download(stub, hex_digest: str, metadata, offset: int = 0) -> tuple[artifact_pb2.Artifact, str, int, int]:
    """(metadata message, sha256 of the received bytes, byte count, largest chunk) without keeping them."""
    responses = stub.DownloadArtifact(
        artifact_service_pb2.DownloadArtifactRequest(digest=digest(hex_digest), offset=offset), metadata=metadata
    )
    first = next(responses)
    assert first.WhichOneof("content") == "metadata"
    sha, size, largest = hashlib.sha256(), 0, 0
    for response in responses:
        assert response.WhichOneof("content") == "chunk"
        sha.update(response.chunk)
        size += len(response.chunk)
        largest = max(largest, len(response.chunk))
    return first.metadata, sha.hexdigest(), size, largest


def status_details(err: grpc.RpcError, message_type):
    """The detail of `message_type` in an error's grpc-status-details-bin trailer, or None."""
    for key, value in trailers(err).items():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(message_type.DESCRIPTOR):
                    message = message_type()
                    detail.Unpack(message)
                    return message
    return None


def make_tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """`entries`: (name, kind, payload) with kind file/dir/symlink/hardlink/chr/blk/fifo; payload is
    the bytes of a file or the target of a link. Written in the order given (tarfile never sorts)."""
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kinds[kind]
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
                tar.addfile(info)
            elif kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()
