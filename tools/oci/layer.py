"""Deterministic OCI layer writer: the same entries always give byte-identical `.tar.gz` files.

Contract of `write_layer`:
  * entries are sorted by path (a parent always sorts before its children), missing parent
    directories are added (0755), and a later entry for the same path replaces an earlier one;
  * every member has mtime 0, uname/gname empty, uid/gid from the entry (0 unless the caller
    asks otherwise), PAX format, and no hard links (each file is stored in full);
  * the gzip stream has mtime 0 and no file name, so where or when it was written never shows;
  * nothing about the source file is recorded except its bytes and, for files, whether it is
    executable (mode 0755 or 0644): host umask, owners and timestamps never leak in.
The returned `Descriptor` carries the blob digest (of the gzip bytes), the diffID (of the tar
bytes) and the size, computed in the same single pass that writes the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_COMPRESSLEVEL = 6
_COPY_BUFSIZE = 1 << 20

Kind = Literal["file", "dir", "symlink"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One member of a layer. `path` is relative to the image root ("usr/bin/x", no leading /).

    A file takes its bytes from `data` or else from the host file `source` (symlinks followed).
    """

    path: str
    kind: Kind
    mode: int
    source: str | None = None
    data: bytes | None = None
    target: str | None = None
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        if self.path != normalize(self.path):
            raise ValueError(f"layer path must be normalized and relative: {self.path!r}")
        if self.kind == "file" and (self.source is None) == (self.data is None):
            raise ValueError(f"{self.path}: a file needs exactly one of source or data")
        if self.kind == "symlink" and not self.target:
            raise ValueError(f"{self.path}: a symlink needs a target")


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """What an OCI manifest and config need to know about a layer blob."""

    digest: str
    diff_id: str
    size: int
    media_type: str = LAYER_MEDIA_TYPE

    def to_json(self) -> str:
        return canonical_json(dataclasses.asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Descriptor:
        return cls(**json.loads(text))


def canonical_json(value: object) -> bytes:
    """JSON with sorted keys and no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def normalize(path: str) -> str:
    """'/usr//bin/./x/' -> 'usr/bin/x'. Rejects paths that climb out of the root."""
    norm = posixpath.normpath("/" + path).lstrip("/")
    if not norm or norm == "." or norm.startswith("../"):
        raise ValueError(f"bad layer path: {path!r}")
    return norm


def file_mode(host_mode: int) -> int:
    """Files are 0755 if the owner may execute them, else 0644: nothing else of the host leaks."""
    return 0o755 if host_mode & 0o100 else 0o644


def file_entry(path: str, source: str | os.PathLike[str]) -> Entry:
    """A regular file copied from `source` (symlinks followed) with a normalized mode."""
    return Entry(normalize(path), "file", file_mode(os.stat(source).st_mode), source=os.fspath(source))


def tree_entries(prefix: str, root: Path, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """Entries for every file under host directory `root`, placed at `prefix` (symlinks followed).

    Directory names in `skip` (e.g. "__pycache__") are left out with everything below them.
    """
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        rel = os.path.relpath(dirpath, root)
        base = prefix if rel == "." else posixpath.join(prefix, Path(rel).as_posix())
        entries.append(Entry(normalize(base), "dir", 0o755))
        for name in sorted(filenames):
            entries.append(file_entry(posixpath.join(base, name), Path(dirpath, name)))
    return entries


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    by_path: dict[str, Entry] = {}
    for entry in entries:
        by_path[entry.path] = entry
    for path in list(by_path):
        parent = posixpath.dirname(path)
        while parent and parent not in by_path:
            by_path[parent] = Entry(parent, "dir", 0o755)
            parent = posixpath.dirname(parent)
    return [by_path[p] for p in sorted(by_path)]


def _tarinfo(entry: Entry, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = 0
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target or ""
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    return info


def write_layer(entries: Iterable[Entry], out: Path, compresslevel: int = DEFAULT_COMPRESSLEVEL) -> Descriptor:
    """Write `entries` as a deterministic gzipped tar to `out` and return its descriptor."""
    with open(out, "wb") as raw:
        blob = _HashingWriter(raw)
        # filename="" and mtime=0 keep the gzip header free of the output path and the clock.
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=compresslevel) as gz:
            tar_stream = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=tar_stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                tar.copybufsize = _COPY_BUFSIZE
                for entry in _with_parents(entries):
                    if entry.kind != "file":
                        tar.addfile(_tarinfo(entry, 0))
                    elif entry.data is not None:
                        tar.addfile(_tarinfo(entry, len(entry.data)), io.BytesIO(entry.data))
                    else:
                        assert entry.source is not None
                        with open(entry.source, "rb") as src:
                            size = os.fstat(src.fileno()).st_size
                            tar.addfile(_tarinfo(entry, size), src)
    return Descriptor(
        digest="sha256:" + blob.sha256.hexdigest(),
        diff_id="sha256:" + tar_stream.sha256.hexdigest(),
        size=blob.size,
    )


def describe_existing(blob: Path) -> Descriptor:
    """Descriptor of an already written `.tar.gz` (reads it once, decompressing to get the diffID)."""
    digest, diff_id, size = hashlib.sha256(), hashlib.sha256(), 0
    with open(blob, "rb") as f:
        while chunk := f.read(_COPY_BUFSIZE):
            digest.update(chunk)
            size += len(chunk)
    with gzip.open(blob, "rb") as gz:
        while chunk := gz.read(_COPY_BUFSIZE):
            diff_id.update(chunk)
    return Descriptor("sha256:" + digest.hexdigest(), "sha256:" + diff_id.hexdigest(), size)
