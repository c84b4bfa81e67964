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
from collections.abc import Callable, Iterable, Iterator

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
    """The bytes received do not match the declared digest or size.

    `actual` is the digest of what was received, or "" when reading stopped early because more
    bytes arrived than declared (the rest of the stream is never read, so there is no whole to
    hash). Sizes are -1 when unknown.
    """

    def __init__(
        self,
        declared: str,
        actual: str,
        *,
        declared_size: int = -1,
        actual_size: int = -1,
        message: str = "",
    ) -> None:
        super().__init__(message or f"the bytes received hash to sha256:{actual}, not the declared sha256:{declared}")
        self.declared = declared
        self.actual = actual
        self.declared_size = declared_size
        self.actual_size = actual_size


class SizeLimitExceeded(ResourceExhausted):
    """A declared size above the store's maximum; carries both numbers for a QuotaFailure detail."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"artifact of {size} bytes is above the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class HashingCounter:
    """Feeds chunks to SHA-256 while counting bytes and enforcing the declared/maximum size."""

    def __init__(self, expected_size: int, max_size: int, *, declared_digest: str = "") -> None:
        if expected_size < 0:
            raise InvalidArgument("size must not be negative")
        if expected_size > max_size:
            raise SizeLimitExceeded(expected_size, max_size)
        self.expected_size = expected_size
        self.declared_digest = declared_digest
        self.size = 0
        self.sha = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.expected_size:
            raise DigestMismatch(
                self.declared_digest,
                "",
                declared_size=self.expected_size,
                actual_size=self.size,
                message=f"more bytes received than the declared {self.expected_size}",
            )
        self.sha.update(chunk)

    def finish(self, declared_digest: str) -> str:
        actual = self.sha.hexdigest()
        if self.size != self.expected_size:
            raise DigestMismatch(
                declared_digest,
                actual,
                declared_size=self.expected_size,
                actual_size=self.size,
                message=f"{self.size} bytes received, {self.expected_size} declared",
            )
        if actual != declared_digest:
            raise DigestMismatch(declared_digest, actual, declared_size=self.expected_size, actual_size=self.size)
        return actual


MismatchHook = Callable[[str, str], None]


def verified(
    chunks: Iterable[bytes], digest: str, offset: int, on_mismatch: MismatchHook | None = None
) -> Iterator[bytes]:
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
    # True when only this process writes the store (a local directory), so that at start it may
    # list and remove blobs nobody recorded. Shared buckets are written by several replicas at
    # once; there a start-up sweep could delete a blob another replica is about to record.
    single_writer: bool = False

    @abc.abstractmethod
    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        """Store the streamed bytes under `digest` if they match it and `size`; idempotent."""

    @abc.abstractmethod
    def stat(self, digest: str) -> BlobInfo | None:
        """Size of the stored blob, or None."""

    @abc.abstractmethod
    def _read_raw(self, digest: str) -> Iterator[bytes]:
        """The stored bytes from the start, in chunks of at most CHUNK."""

    def read(self, digest: str, offset: int = 0, on_mismatch: MismatchHook | None = None) -> Iterator[bytes]:
        """Stream a blob from `offset`, verifying its digest (DataLoss at the end on mismatch).

        `on_mismatch(expected, actual)` is called before DataLoss is raised, e.g. to audit it.
        """
        check_digest(digest)
        info = self.stat(digest)
        if info is None:
            raise NotFound(f"no artifact sha256:{digest}")
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        if offset > info.size:
            raise InvalidArgument(f"offset {offset} is beyond the end of the artifact ({info.size} bytes)")
        return verified(self._read_raw(digest), digest, offset, on_mismatch)

    def cleanup_staging(self, older_than_seconds: float = 0.0) -> int:
        """Remove abandoned partial uploads (e.g. after a crash) at least that old; returns how many."""
        return 0

    def list_digests(self) -> Iterator[str]:
        """Every stored digest (only stores with `single_writer` need to support this)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its blobs")

    def delete(self, digest: str) -> None:
        """Remove a blob (only for blobs that were never recorded: see `single_writer`)."""
        raise NotImplementedError(f"{type(self).__name__} does not delete blobs")
