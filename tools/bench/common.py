"""What the benchmarks share: a real registry process, tokens, streamed uploads, percentiles.

The registry runs as its own process (the `//services/registry:registry` binary in the runfiles),
so every figure includes the real gRPC server, the auth interceptor and the process boundary.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from causeway.common.v1 import digest_pb2
from causeway.registry.v1 import artifact_pb2, artifact_service_pb2
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.testing.registry_process import READY_TIMEOUT, RegistryProcess, registry_process

MIB = 1024 * 1024


@contextlib.contextmanager
def running_registry(
    workdir: Path | None = None, **overrides: str
) -> Iterator[tuple[RegistryProcess, DevIdentityProvider]]:
    """A registry process on a fresh data directory (under `workdir`, else a temporary one)."""
    # `bazel run` does not export RUNFILES_DIR (`bazel test` does); this file sits in the runfiles
    # at <runfiles>/<workspace>/tools/bench/, which is where registry_process looks for the binary.
    os.environ.setdefault("RUNFILES_DIR", str(Path(__file__).parents[3]))
    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        idp = DevIdentityProvider(root / "idp")
        # ready_timeout by name: otherwise `overrides` (settings, all str) could be taken for it.
        registry = stack.enter_context(
            registry_process(root / "registry", idp, ready_timeout=READY_TIMEOUT, **overrides)
        )
        yield registry, idp


def token(idp: DevIdentityProvider, subject: str = "bench", roles: Iterable[str] = ("researcher",), teams=("bench",)):
    """Call metadata with a bearer token valid for the whole run (minted once, as a client would)."""
    return bearer(idp.issue(subject, list(roles), teams=list(teams)))


def sha256_digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def file_sha256(path: Path, chunk: int = MIB) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def upload_requests(
    chunks: Iterable[bytes], hex_digest: str, size: int, filename: str = "model.bin"
) -> Iterator[artifact_service_pb2.UploadArtifactRequest]:
    meta = artifact_pb2.UploadArtifactMetadata(
        digest=sha256_digest(hex_digest), size_bytes=size, layout=artifact_pb2.ARTIFACT_LAYOUT_FILE, filename=filename
    )
    yield artifact_service_pb2.UploadArtifactRequest(metadata=meta)
    for chunk in chunks:
        yield artifact_service_pb2.UploadArtifactRequest(chunk=chunk)


def file_chunks(path: Path, chunk: int = MIB) -> Iterator[bytes]:
    with open(path, "rb") as src:
        while block := src.read(chunk):
            yield block


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
