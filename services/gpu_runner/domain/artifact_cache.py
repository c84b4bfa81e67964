"""A local, content-addressed copy of artifacts, hashed on download and again before every load.

Bytes arrive from the registry into a private staging file while being hashed; only if they hash
to the version's recorded SHA-256 (and have its size) are they renamed to `blobs/<sha256>`. A
cached blob is re-hashed before each load, so a file changed on disk after download is caught
too (and fetched again). TAR artifacts (directories such as MLflow models) are unpacked into a
fresh directory per load, accepting only regular files and directories with relative paths that
stay inside the tree (Debian's Python 3.11.2 predates tarfile's extraction filters).

The cache is bounded: `prune()` removes least recently used blobs beyond `max_bytes`, never those
of models still loaded (their loaders may have mapped the file; on Linux a mapped file stays
readable after unlink, but a re-load would need the bytes again).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from libs.errors.domain_errors import FailedPrecondition
from services.gpu_runner.domain.source import DigestMismatchError, ResolvedVersion

log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as data:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactCache:
    def __init__(self, root: Path, *, max_bytes: int = 0) -> None:
        """`max_bytes` 0: no limit."""
        self.root = Path(root)
        self.max_bytes = max_bytes
        for sub in ("blobs", "staging", "trees"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Only the runner reads or writes here: nobody else can swap a verified blob.
        os.chmod(self.root, 0o700)

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest

    def _verified_blob(self, version: ResolvedVersion, fetch: Callable[[], Iterable[bytes]]) -> Path:
        path = self._blob(version.digest)
        if path.exists():
            actual, _ = _hash_file(path)
            if actual == version.digest:
                os.utime(path)  # recently used: pruned last
                return path
            log.warning("cached artifact changed on disk; fetching it again", extra={"digest": version.digest})
            path.unlink()
        fd, staging = tempfile.mkstemp(dir=self.root / "staging", prefix=version.digest[:16] + ".")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in fetch():
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != version.digest or (version.size_bytes and size != version.size_bytes):
                raise DigestMismatchError(
                    f"the artifact of {version.name} version {version.version} hashes to sha256:{actual} "
                    f"({size} bytes), not the recorded sha256:{version.digest} ({version.size_bytes} bytes); "
                    "refusing to load it",
                    declared=version.digest,
                    actual=actual,
                    declared_size=version.size_bytes,
                    actual_size=size,
                )
            os.replace(staging, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
        return path

    @contextlib.contextmanager
    def materialize(self, version: ResolvedVersion, fetch: Callable[[], Iterable[bytes]]) -> Iterator[Path]:
        """A verified local path for the version's artifact, valid inside the `with` block.

        FILE: the verified blob. TAR: a fresh directory unpacked from the verified blob, removed
        afterwards (loaders read everything they need while loading).
        """
        blob = self._verified_blob(version, fetch)
        if version.layout != "TAR":
            yield blob
            return
        tree = Path(tempfile.mkdtemp(dir=self.root / "trees", prefix=version.digest[:16] + "."))
        try:
            try:
                _safe_extract(blob, tree)
            except (tarfile.TarError, OSError, ValueError) as err:
                raise FailedPrecondition(
                    f"the artifact of {version.name} version {version.version} is not a safe tar archive: {err}"
                ) from None
            yield tree
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "blobs").iterdir() if p.is_file())

    def prune(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove least recently used blobs until the cache fits `max_bytes`; never those in `keep`
        (digests of loaded models). Returns the digests removed."""
        if not self.max_bytes:
            return []
        keep = set(keep)
        blobs = []
        for path in (self.root / "blobs").iterdir():
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                blobs.append((stat.st_mtime, path.name, stat.st_size, path))
        total = sum(size for _, _, size, _ in blobs)
        removed = []
        for _, digest, size, path in sorted(blobs):
            if total <= self.max_bytes:
                break
            if digest in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                removed.append(digest)
        if removed:
            log.info("artifact cache pruned", extra={"removed": len(removed), "cache_bytes": total})
        if total > self.max_bytes:
            log.warning(
                "artifact cache above its limit: loaded models hold the rest",
                extra={"cache_bytes": total, "max_bytes": self.max_bytes},
            )
        return removed

    def clear_staging(self) -> None:
        """Remove staging files a crashed process left behind (call at start)."""
        for leftover in (self.root / "staging").iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        for leftover in (self.root / "trees").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)


def _safe_extract(blob: Path, tree: Path) -> None:
    """Unpack regular files and directories only; anything else (links, devices, escapes) is refused."""
    root = tree.resolve()
    with tarfile.open(blob, mode="r:*") as archive:
        for member in archive:
            target = (root / member.name).resolve()
            if member.name.startswith("/") or not target.is_relative_to(root):
                raise ValueError(f"entry {member.name!r} points outside the archive")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file's member always has a body
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
            else:
                raise ValueError(f"entry {member.name!r} is a link or special file; models are plain files")
