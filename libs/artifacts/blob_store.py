"""Content-addressed blob storage: the interface and the verification every implementation shares.

Blobs are stored under their SHA-256. `put` hashes while streaming to a staging location and
commits under the digest only if digest and size match what the caller declared, so a
half-written or corrupted upload is never visible. `read` hashes while streaming out and raises
`DataLoss` at the end if the stored bytes no longer match their name. Nothing here holds a whole
blob in memory.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator

from libs.errors.domain_errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted

CHUNK = 1024 * 1024
_HEX = re.compile(r"^[0-9a-f]{64}$")


def check_digest(hex_digest: str) -> str:
    """Return `hex_digest` if it is a lowercase SHA-256 hex string, else InvalidArgument."""
    if not isinstance(hex_digest, str) or not _HEX.match(hex_digest):
        raise InvalidArgument("digest must be 64 lowercase hexadecimal characters (a SHA-256)")
    return hex_digest


@dataclasses.dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


class DigestMismatch(InvalidArgument):
    def __init__(self, declared: str, actual: str) -> None:
        super().__init__(f"the bytes received hash to sha256:{actual}, not the declared sha256:{declared}")
        self.declared = declared
        self.actual = actual


class HashingCounter:
    """Feeds chunks to SHA-256 while counting bytes and enforcing the declared/maximum size."""

    def __init__(self, expected_size: int, max_size: int) -> None:
        if expected_size < 0:
            raise InvalidArgument("size must not be negative")
        if expected_size > max_size:
            raise ResourceExhausted(f"artifact of {expected_size} bytes is above the limit of {max_size} bytes")
        self.expected_size = expected_size
        self.size = 0
        self.sha = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.expected_size:
            raise InvalidArgument(f"more bytes received than the declared {self.expected_size}")
        self.sha.update(chunk)

    def finish(self, declared_digest: str) -> str:
        if self.size != self.expected_size:
            raise InvalidArgument(f"{self.size} bytes received, {self.expected_size} declared")
        actual = self.sha.hexdigest()
        if actual != declared_digest:
            raise DigestMismatch(declared_digest, actual)
        return actual


def verified(chunks: Iterable[bytes], digest: str, offset: int, on_mismatch=None) -> Iterator[bytes]:
    """Yield the bytes from `offset` on while hashing all of them; DataLoss if the hash is wrong.

    `chunks` must start at byte 0: the prefix before `offset` is hashed but not yielded.
    """
    sha = hashlib.sha256()
    position = 0
    for chunk in chunks:
        sha.update(chunk)
        end = position + len(chunk)
        if end > offset:
            yield chunk[max(0, offset - position) :]
        position = end
    if sha.hexdigest() != digest:
        if on_mismatch is not None:
            on_mismatch(digest, sha.hexdigest())
        raise DataLoss(f"stored bytes of sha256:{digest} no longer match their digest; the copy is corrupt")


class BlobStore(abc.ABC):
    """Where artifact bytes live. Implementations: local directory, S3, GCS."""

    max_size: int

    @abc.abstractmethod
    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        """Store the streamed bytes under `digest` if they match it and `size`; idempotent."""

    @abc.abstractmethod
    def stat(self, digest: str) -> BlobInfo | None:
        """Size of the stored blob, or None."""

    @abc.abstractmethod
    def _read_raw(self, digest: str) -> Iterator[bytes]:
        """The stored bytes from the start, in chunks of at most CHUNK."""

    def read(self, digest: str, offset: int = 0) -> Iterator[bytes]:
        """Stream a blob from `offset`, verifying its digest (DataLoss at the end on mismatch)."""
        check_digest(digest)
        info = self.stat(digest)
        if info is None:
            raise NotFound(f"no artifact sha256:{digest}")
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        if offset > info.size:
            raise InvalidArgument(f"offset {offset} is beyond the end of the artifact ({info.size} bytes)")
        return verified(self._read_raw(digest), digest, offset)

    def cleanup_staging(self, older_than_seconds: float) -> int:
        """Remove abandoned partial uploads (e.g. after a crash); returns how many."""
        return 0
