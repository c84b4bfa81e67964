"""Incremental validation of an ARTIFACT_LAYOUT_TAR stream, fed chunk by chunk as it is uploaded.

The registry never buffers an upload, so it cannot hand the bytes to `tarfile` afterwards. This
parser reads the 512-byte ustar headers (with pax `x` and GNU `L`/`K` long names) as they pass,
skips file data without looking at it, and raises InvalidArgument naming the entry on the first
thing that would make extraction unsafe or the tar non-canonical:

- absolute paths, `..` components, empty names, names that are not UTF-8 or hold control chars;
- entries not sorted by path (strictly increasing, so duplicates too), as artifact.proto promises
  a canonical tar (the same tree always has the same digest);
- symbolic links whose target leaves the tree, and any entry below a symbolic link (extracting
  `a/b` through a link `a` would write wherever `a` points);
- hard links to a path outside the tree;
- device, FIFO and other special entries, and directory/link entries that carry data (a tar that
  different extractors would read differently);
- a missing end-of-archive marker (a truncated upload) or non-zero bytes after it.

Memory use is bounded: one header, one pax/long-name payload (at most 64 KiB) and the symbolic
links whose names are prefixes of what may still follow.
"""

from __future__ import annotations

import unicodedata

from libs.errors.domain_errors import InvalidArgument

BLOCK = 512
MAX_META_BYTES = 64 * 1024  # pax records and GNU long names; real ones are a few hundred bytes
MAX_OPEN_SYMLINKS = 10_000

_REGULAR = (b"0", b"\0", b"7")
_HARDLINK, _SYMLINK, _DIRECTORY = b"1", b"2", b"5"
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK = b"x", b"g", b"L", b"K"
_SPECIAL = {b"3": "character device", b"4": "block device", b"6": "FIFO"}
_MAGICS = (b"ustar\x0000", b"ustar  \x00")


def _bad(entry: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"malformed tar: entry {entry!r}: {problem}")


def _number(field: bytes, what: str, offset: int) -> int:
    """An octal (NUL/space padded) or GNU base-256 numeric header field."""
    if field[:1] and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.rstrip(b"\0 ").lstrip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise InvalidArgument(f"malformed tar: header at byte {offset}: {what} is not a number") from None


def _text(raw: bytes, entry: str, what: str) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(entry, f"{what} is not UTF-8") from None
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise _bad(entry, f"{what} contains control characters")
    return value


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _pax_records(data: bytes, offset: int) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            length = 0
        record = data[pos : pos + length]
        if space < 0 or length <= 0 or len(record) != length or not record.endswith(b"\n") or b"=" not in record:
            raise InvalidArgument(f"malformed tar: pax header at byte {offset} is not a list of records")
        key, _, value = record[space - pos + 1 : -1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value
        pos += length
    return records


class TarStreamValidator:
    """Feed a tar stream with `feed(chunk)` in order, then call `finish()`; both raise on problems."""

    def __init__(self) -> None:
        self._offset = 0  # bytes consumed so far, for error messages
        self._header = bytearray()
        self._skip = 0  # data + padding of the current entry still to pass over
        self._meta_kind = b""  # collecting the payload of a pax / GNU long-name entry
        self._meta = bytearray()
        self._meta_size = 0
        self._overrides: dict[str, str] = {}
        self._last_path: str | None = None
        self._symlinks: list[str] = []  # symlinks whose name is a prefix of paths still to come
        self._zero_blocks = 0
        self._ended = False
        self.entries = 0

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._ended:
                if view.tobytes().strip(b"\0"):
                    raise InvalidArgument(
                        f"malformed tar: data after the end-of-archive marker near byte {self._offset}"
                    )
                self._offset += len(view)
                return
            if self._meta_kind and len(self._meta) < self._meta_size:
                take = view[: self._meta_size - len(self._meta)]
                self._meta += take
            elif self._skip:
                take = view[: self._skip]
                self._skip -= len(take)
            else:
                take = view[: BLOCK - len(self._header)]
                self._header += take
            view = view[len(take) :]
            self._offset += len(take)
            if self._meta_kind and len(self._meta) == self._meta_size:
                self._end_meta()
            elif len(self._header) == BLOCK:
                block, self._header = bytes(self._header), bytearray()
                self._on_header(block, self._offset - BLOCK)

    def finish(self) -> None:
        """The stream is complete: it must have ended with the end-of-archive marker."""
        if self._skip or self._header or self._meta_kind:
            raise InvalidArgument(f"malformed tar: the stream ends inside an entry (after {self._offset} bytes)")
        if not self._ended:
            raise InvalidArgument("malformed tar: no end-of-archive marker (two zero blocks); truncated?")

    def _end_meta(self) -> None:
        kind, data = self._meta_kind, bytes(self._meta)
        self._meta_kind, self._meta = b"", bytearray()
        self._skip = -self._meta_size % BLOCK
        at = self._offset - self._meta_size
        if kind in (_GNU_LONGNAME, _GNU_LONGLINK):
            key = "path" if kind == _GNU_LONGNAME else "linkpath"
            self._overrides[key] = _text(data.split(b"\0", 1)[0], "(GNU long name)", key)
            return
        records = _pax_records(data, at)
        if kind == _PAX_GLOBAL:
            if {"path", "linkpath", "size"} & records.keys():
                raise InvalidArgument(f"malformed tar: global pax header at byte {at} sets path, linkpath or size")
            return
        for key in ("path", "linkpath"):
            if key in records:
                self._overrides[key] = _text(records[key], "(pax header)", key)
        if "size" in records:
            try:
                self._overrides["size"] = str(int(records["size"]))
            except ValueError:
                raise InvalidArgument(f"malformed tar: pax header at byte {at} has a bad size") from None

    def _on_header(self, block: bytes, at: int) -> None:
        if block == bytes(BLOCK):
            self._zero_blocks += 1
            self._ended = self._zero_blocks == 2
            return
        if self._zero_blocks:
            raise InvalidArgument(f"malformed tar: a lone zero block before the header at byte {at}")
        if block[257:265] not in _MAGICS:
            raise InvalidArgument(f"malformed tar: the header at byte {at} is not a POSIX (ustar) header")
        stored = _number(block[148:156], "checksum", at)
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 8 * 32
        if stored not in (unsigned, signed):
            raise InvalidArgument(f"malformed tar: header checksum mismatch at byte {at}")
        kind = block[156:157]
        size = _number(block[124:136], "size", at)
        if kind in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
            if not 0 < size <= MAX_META_BYTES:
                raise InvalidArgument(f"malformed tar: extended header at byte {at} has size {size}")
            self._meta_kind, self._meta_size = kind, size
            return
        overrides, self._overrides = self._overrides, {}
        if "path" in overrides:
            raw_path = overrides["path"]
        else:
            name = block[0:100].split(b"\0", 1)[0]
            prefix = block[345:500].split(b"\0", 1)[0] if block[257:263] == b"ustar\0" else b""
            raw_path = _text(prefix + b"/" + name if prefix else name, name.decode("utf-8", "replace"), "name")
        size = int(overrides.get("size", size))
        path = self._check_path(raw_path, kind)
        self.entries += 1
        if kind in _SPECIAL:
            raise _bad(raw_path, f"{_SPECIAL[kind]} entries are not allowed")
        if kind in (_HARDLINK, _SYMLINK, _DIRECTORY):
            if size:
                raise _bad(raw_path, "a directory or link entry must not carry data")
            if kind != _DIRECTORY:
                target = overrides.get("linkpath")
                if target is None:
                    target = _text(block[157:257].split(b"\0", 1)[0], raw_path, "link target")
                self._check_link(raw_path, path, target, kind == _SYMLINK)
        elif kind not in _REGULAR:
            raise _bad(raw_path, f"unsupported entry type {kind!r}")
        if size < 0:
            raise _bad(raw_path, "negative size")
        self._skip = size + (-size % BLOCK)

    def _check_path(self, raw: str, kind: bytes) -> str:
        if not raw:
            raise _bad(raw, "empty name")
        if raw.startswith("/"):
            raise _bad(raw, "absolute path")
        parts = _parts(raw)
        if ".." in parts:
            raise _bad(raw, "'..' in the path")
        path = "/".join(parts)
        if not path:
            # "./" (the root itself) is accepted as the very first entry, as `tar -C dir .` writes it.
            if kind == _DIRECTORY and self._last_path is None:
                self._last_path = ""
                return path
            raise _bad(raw, "empty name")
        if self._last_path is not None and path <= self._last_path:
            what = "duplicate entry" if path == self._last_path else f"not sorted by path (after {self._last_path!r})"
            raise _bad(raw, what)
        self._last_path = path
        # Symlinks stay relevant only while later paths can still fall below them (sorted order).
        self._symlinks = [s for s in self._symlinks if path.startswith(s + "/") or path < s + "/"]
        for link in self._symlinks:
            if path.startswith(link + "/"):
                raise _bad(raw, f"lies below the symbolic link {link!r}")
        return path

    def _check_link(self, raw: str, path: str, target: str, symbolic: bool) -> None:
        if not target or target.startswith("/"):
            raise _bad(raw, f"link target {target!r} leaves the tree")
        parts = _parts(target)
        if not symbolic:
            # A hard link names another member by its path from the archive's root.
            if ".." in parts or not parts:
                raise _bad(raw, f"hard link target {target!r} leaves the tree")
            return
        ups = 0
        while ups < len(parts) and parts[ups] == "..":
            ups += 1
        # '..' only as a prefix: after a normal component it could climb out of a directory that
        # is itself a link (l -> ".", t -> "l/x/../.."), which lexical resolution cannot see.
        depth = len(path.split("/")) - 1
        if ".." in parts[ups:] or ups > depth:
            raise _bad(raw, f"symbolic link target {target!r} leaves the tree")
        self._symlinks.append(path)
        if len(self._symlinks) > MAX_OPEN_SYMLINKS:
            raise _bad(raw, "too many symbolic links")
