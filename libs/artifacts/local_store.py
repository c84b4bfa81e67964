"""Blob store on a local directory: the single-machine default.

Layout: <root>/sha256/<2 hex>/<64 hex> (read-only files) and <root>/staging/<random>.part.
A commit is fsync + rename, so after a crash a blob either exists completely or not at all;
leftover staging files are removed by `cleanup_staging` at start.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from libs.artifacts.blob_store import CHUNK, BlobInfo, BlobStore, HashingCounter, check_digest


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path, *, max_size: int = 64 * 1024**3) -> None:
        self.root = Path(root)
        self.max_size = max_size
        self._blobs = self.root / "sha256"
        self._staging = self.root / "staging"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self._blobs / digest[:2] / digest

    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        check_digest(digest)
        counter = HashingCounter(size, self.max_size)
        part = self._staging / f"{secrets.token_hex(16)}.part"
        try:
            with open(part, "xb", buffering=0) as out:
                for chunk in chunks:
                    counter.update(chunk)
                    out.write(chunk)
                os.fsync(out.fileno())
            counter.finish(digest)
            final = self._path(digest)
            final.parent.mkdir(exist_ok=True)
            os.chmod(part, 0o444)
            os.replace(part, final)  # same bytes under the same name: replacing is harmless
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            part.unlink(missing_ok=True)
        return BlobInfo(digest, size)

    def stat(self, digest: str) -> BlobInfo | None:
        check_digest(digest)
        try:
            return BlobInfo(digest, self._path(digest).stat().st_size)
        except FileNotFoundError:
            return None

    def _read_raw(self, digest: str) -> Iterator[bytes]:
        with open(self._path(digest), "rb") as src:
            while chunk := src.read(CHUNK):
                yield chunk

    def cleanup_staging(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for part in self._staging.glob("*.part"):
            try:
                if part.stat().st_mtime <= cutoff:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
