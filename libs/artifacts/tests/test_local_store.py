import hashlib
import os
import time
import tracemalloc

import pytest

from libs.artifacts.blob_store import DigestMismatch
from libs.artifacts.factory import open_blob_store
from libs.artifacts.local_store import LocalBlobStore
from libs.errors.domain_errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted


def _chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(tmp_path / "blobs", max_size=10_000_000)


def _staging(store):
    return list((store.root / "staging").iterdir())


def test_roundtrip_with_offsets(store):
    data = os.urandom(250_000)
    digest = hashlib.sha256(data).hexdigest()
    info = store.put(_chunks(data), digest=digest, size=len(data))
    assert (info.digest, info.size) == (digest, len(data))
    assert store.stat(digest).size == len(data)
    assert b"".join(store.read(digest)) == data
    assert b"".join(store.read(digest, offset=123_457)) == data[123_457:]
    assert b"".join(store.read(digest, offset=len(data))) == b""
    assert _staging(store) == []


def test_same_bytes_twice_is_idempotent(store):
    data = b"model-bytes" * 100
    digest = hashlib.sha256(data).hexdigest()
    store.put(_chunks(data), digest=digest, size=len(data))
    store.put(_chunks(data), digest=digest, size=len(data))
    assert b"".join(store.read(digest)) == data


def test_digest_mismatch_stores_nothing(store):
    data = b"a" * 5000
    wrong = hashlib.sha256(b"b").hexdigest()
    with pytest.raises(DigestMismatch) as err:
        store.put(_chunks(data), digest=wrong, size=len(data))
    assert err.value.actual == hashlib.sha256(data).hexdigest()
    assert store.stat(wrong) is None
    assert store.stat(err.value.actual) is None
    assert _staging(store) == []


@pytest.mark.parametrize(
    ("sent", "declared", "error", "message"),
    [
        (b"x" * 10, 9, InvalidArgument, "more bytes received than the declared 9"),
        (b"x" * 10, 11, InvalidArgument, "10 bytes received, 11 declared"),
        (b"x", 20_000_000, ResourceExhausted, "above the limit of 10000000 bytes"),
    ],
)
def test_size_problems_store_nothing(store, sent, declared, error, message):
    with pytest.raises(error, match=message):
        store.put(_chunks(sent), digest=hashlib.sha256(sent).hexdigest(), size=declared)
    assert store.stat(hashlib.sha256(sent).hexdigest()) is None
    assert _staging(store) == []


def test_malformed_digests_are_refused(store):
    for bad in ["", "ABC", "sha256:" + "a" * 64, "a" * 63, "../../etc/passwd" + "a" * 48]:
        with pytest.raises(InvalidArgument, match="64 lowercase hexadecimal"):
            store.stat(bad)


def test_missing_blob_and_bad_offset(store):
    with pytest.raises(NotFound):
        list(store.read("0" * 64))
    data = b"abc"
    digest = hashlib.sha256(data).hexdigest()
    store.put([data], digest=digest, size=3)
    with pytest.raises(InvalidArgument, match="beyond the end"):
        store.read(digest, offset=4)


def test_corrupted_blob_is_data_loss_on_read(store):
    data = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    store.put(_chunks(data, 65536), digest=digest, size=len(data))
    path = store.root / "sha256" / digest[:2] / digest
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(2_000_000)
        f.write(b"\x00\x01")
    with pytest.raises(DataLoss, match="no longer match"):
        b"".join(store.read(digest))


def test_abandoned_staging_files_are_cleaned(store):
    part = store.root / "staging" / "dead.part"
    part.write_bytes(b"half an upload")
    os.utime(part, (time.time() - 7200, time.time() - 7200))
    fresh = store.root / "staging" / "live.part"
    fresh.write_bytes(b"in progress")
    assert store.cleanup_staging(3600) == 1
    assert _staging(store) == [fresh]


def test_streaming_never_holds_the_blob_in_memory(store):
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    sha = hashlib.sha256()
    for _ in range(64):
        sha.update(block)
    digest = sha.hexdigest()
    tracemalloc.start()
    store.max_size = size
    store.put((block for _ in range(64)), digest=digest, size=size)
    total = sum(len(c) for c in store.read(digest))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == size
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while streaming 64 MiB"


def test_factory_opens_local_paths(tmp_path):
    assert isinstance(open_blob_store(str(tmp_path / "a")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path}/b"), LocalBlobStore)
    with pytest.raises(ValueError, match="unsupported artifact store"):
        open_blob_store("ftp://host/x")
