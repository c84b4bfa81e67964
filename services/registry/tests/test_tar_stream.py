"""The streaming tar validator against real archives written by Python's tarfile, fed in pieces."""

import tarfile

import pytest

from libs.errors.domain_errors import InvalidArgument
from services.registry.domain.tar_stream import TarStreamValidator
from services.registry.tests.artifact_client import make_tar

FORMATS = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def validate(data: bytes, piece: int = 1 << 20) -> TarStreamValidator:
    validator = TarStreamValidator()
    for i in range(0, len(data), piece):
        validator.feed(data[i : i + piece])
    validator.finish()
    return validator


MODEL_DIR = [
    ("model", "dir", None),
    ("model/MLmodel", "file", b"flavors: {}\n"),
    ("model/data", "dir", None),
    ("model/data/" + "layer_" * 15 + "/weights.bin", "file", b"\x00\x01" * 700),  # > 100 chars: pax, GNU, prefix
    ("model/latest", "symlink", "data"),
    ("model/requirements.txt", "file", b"torch\n"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("piece", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_canonical_model_directory_passes_in_any_chunking(fmt, piece):
    data = make_tar(MODEL_DIR, FORMATS[fmt])
    assert validate(data, piece).entries == len(MODEL_DIR)


def test_tar_of_a_directory_with_its_root_entry_passes():
    data = make_tar([(".", "dir", None), ("./a.txt", "file", b"a"), ("./b", "dir", None), ("./b/c", "file", b"")])
    assert validate(data).entries == 4


def test_empty_archive_passes():
    assert validate(make_tar([])).entries == 0


def _refused(entries, match, fmt=tarfile.PAX_FORMAT):
    data = make_tar(entries, fmt)
    with pytest.raises(InvalidArgument, match=match):
        validate(data, 1000)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([("/etc/passwd", "file", b"x")], r"entry '/etc/passwd': absolute path"),
        ([("a/../../etc", "file", b"x")], r"entry 'a/../../etc': '\.\.' in the path"),
        ([("..", "dir", None)], r"'\.\.' in the path"),
        ([("b", "file", b""), ("a", "file", b"")], r"entry 'a': not sorted by path \(after 'b'\)"),
        ([("a", "file", b""), ("a", "file", b"")], r"entry 'a': duplicate entry"),
        ([("a/", "dir", None), ("a", "file", b"")], r"entry 'a': duplicate entry"),
        ([("link", "symlink", "/etc/passwd")], r"entry 'link': link target '/etc/passwd' leaves the tree"),
        ([("link", "symlink", "../outside")], r"entry 'link': symbolic link target '\.\./outside' leaves the tree"),
        ([("a/link", "symlink", "../../x")], r"symbolic link target '\.\./\.\./x' leaves the tree"),
        ([("l", "symlink", "."), ("t", "symlink", "l/x/../..")], r"entry 't': symbolic link target"),
        ([("a", "symlink", "."), ("a/b", "symlink", "..")], r"entry 'a/b': lies below the symbolic link 'a'"),
        ([("a", "symlink", "sub"), ("a-b", "file", b""), ("a/x", "file", b"")], r"entry 'a/x': lies below"),
        ([("h", "hardlink", "../etc/shadow")], r"entry 'h': hard link target '\.\./etc/shadow' leaves the tree"),
        ([("h", "hardlink", "/etc/shadow")], r"entry 'h': link target '/etc/shadow' leaves the tree"),
        ([("dev", "chr", None)], r"entry 'dev': character device entries are not allowed"),
        ([("disk", "blk", None)], r"entry 'disk': block device entries are not allowed"),
        ([("pipe", "fifo", None)], r"entry 'pipe': FIFO entries are not allowed"),
        ([("bad\nname", "file", b"")], r"name contains control characters"),
    ],
)
def test_unsafe_or_unsorted_entries_are_refused_by_name(entries, match):
    _refused(entries, match)


def test_symlink_may_point_up_within_the_tree():
    assert validate(make_tar([("a/b/link", "symlink", "../../c"), ("c", "file", b"")], tarfile.PAX_FORMAT))
    _refused([("a/link", "symlink", "../../c")], "leaves the tree")


def test_later_siblings_of_a_symlink_are_fine():
    data = make_tar([("a", "symlink", "b"), ("a.txt", "file", b""), ("b", "dir", None), ("b/c", "file", b"")])
    assert validate(data).entries == 4


def test_truncated_stream_is_refused():
    data = make_tar(MODEL_DIR)
    with pytest.raises(InvalidArgument, match="ends inside an entry"):
        validate(data[:1500])
    end = data.rindex(b"requirements") // 512 * 512 + 1024  # header + data block of the last file
    with pytest.raises(InvalidArgument, match="no end-of-archive marker"):
        validate(data[:end])


def test_garbage_is_refused():
    with pytest.raises(InvalidArgument, match="not a POSIX"):
        validate(b"PK\x03\x04" + bytes(2000))
    data = bytearray(make_tar([("a", "file", b"hello")]))
    data[0] ^= 0x01  # the name changes, the checksum does not
    with pytest.raises(InvalidArgument, match="checksum mismatch"):
        validate(bytes(data))


def test_bytes_after_the_end_marker_must_be_zero():
    data = make_tar([("a", "file", b"hello")])
    validate(data + bytes(4096))
    with pytest.raises(InvalidArgument, match="after the end-of-archive marker"):
        validate(data + b"smuggled")


def test_directory_or_link_with_data_is_refused():
    data = bytearray(make_tar([("d", "dir", None)], tarfile.USTAR_FORMAT))
    header = bytearray(data[:512])
    header[124:136] = b"00000001000\0"  # size 512
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    tampered = bytes(header) + bytes(512) + bytes(1024)
    with pytest.raises(InvalidArgument, match="must not carry data"):
        validate(tampered)
