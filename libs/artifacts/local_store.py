"""Blob store on a local directory: the single-machine default.

Layout: <root>/sha256/<2 hex>/<64 hex> (read-only files) and <root>/staging/<random>.part.
A commit is fsync + rename, so after a crash a blob either exists completely or not at all.

Every staging file is held under an exclusive `flock` by the writer from creation until it is
renamed or removed. The kernel drops the lock when the writer dies (even by kill -9), so a
staging file nobody holds locked is abandoned by definition, however young it is, and one that is
locked is a live upload, however old. `cleanup_staging` removes exactly the unlocked ones.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from libs.artifacts.blob_store import CHUNK, BlobInfo, BlobStore, HashingCounter, check_digest

_HEX = re.compile(r"^[0-9a-f]{64}$")


class LocalBlobStore(BlobStore):
    single_writer = True

    def __init__(self, root: Path, *, max_size: int = 64 * 1024**3) -> None:
        self.root = Path(root)
        self.max_size = max_size
        self._blobs = self.root / "sha256"
        self._staging = self.root / "staging"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self._blobs / digest[:2] / digest

    def _open_locked_part(self) -> tuple[Path, BinaryIO]:
        """A new staging file, opened and exclusively locked by this writer."""
        while True:
            part = self._staging / f"{secrets.token_hex(16)}.part"
            out = open(part, "xb", buffering=0)  # noqa: SIM115 - returned to the caller, who closes it
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            # Between open and flock a concurrent cleanup may have taken the still unlocked file
            # for abandoned and unlinked it; then the name is no longer ours: start over.
            try:
                mine = os.stat(part).st_ino == os.fstat(out.fileno()).st_ino
            except FileNotFoundError:
                mine = False
            if mine:
                return part, out
            out.close()

    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        check_digest(digest)
        counter = HashingCounter(size, self.max_size, declared_digest=digest)
        part, out = self._open_locked_part()
        try:
            # The lock is held (the file stays open) until after the rename, so cleanup never
            # mistakes a finished-but-not-yet-renamed part for an abandoned one.
            with out:
                for chunk in chunks:
                    counter.update(chunk)
                    view = memoryview(chunk)
                    while view:  # raw writes may be partial
                        view = view[out.write(view) :]
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

    def cleanup_staging(self, older_than_seconds: float = 0.0) -> int:
        """Remove every staging file no writer holds locked (abandoned by a crash or kill -9).

        Locked files are live uploads and are never touched. `older_than_seconds` additionally
        spares unlocked files modified more recently than that (a grace period for operators who
        want to look at a failed upload); the default 0 removes every abandoned file.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for part in self._staging.glob("*.part"):
            try:
                fd = os.open(part, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live upload
                info = os.fstat(fd)
                if info.st_mtime > cutoff:
                    continue
                # A writer that finished between our open and our lock has renamed the file:
                # the name then no longer leads to the inode we hold, and there is nothing to do.
                try:
                    if os.stat(part).st_ino != info.st_ino:
                        continue
                    part.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
            finally:
                os.close(fd)
        return removed

    def list_digests(self) -> Iterator[str]:
        for shard in sorted(self._blobs.iterdir()):
            if shard.is_dir():
                for blob in sorted(shard.iterdir()):
                    if _HEX.match(blob.name) and blob.name[:2] == shard.name:
                        yield blob.name

    def delete(self, digest: str) -> None:
        check_digest(digest)
        self._path(digest).unlink(missing_ok=True)
