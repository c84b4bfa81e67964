import fcntl
import hashlib
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.artifacts.blob_store import DigestMismatch, SizeLimitExceeded
from libs.artifacts.factory import open_blob_store
from libs.artifacts.local_store import LocalBlobStore
from libs.errors.domain_errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", max_size=10_000_000)


def _staging(store: LocalBlobStore) -> list[Path]:
    return list((store.root / "staging").iterdir())


def test_roundtrip_with_offsets(store: LocalBlobStore) -> None:
    data = os.urandom(250_000)
    digest = hashlib.sha256(data).hexdigest()
    info = store.put(_chunks(data), digest=digest, size=len(data))
    assert (info.digest, info.size) == (digest, len(data))
    stat = store.stat(digest)
    assert stat is not None and stat.size == len(data)
    assert b"".join(store.read(digest)) == data
    assert b"".join(store.read(digest, offset=123_457)) == data[123_457:]
    assert b"".join(store.read(digest, offset=len(data))) == b""
    assert _staging(store) == []


def test_same_bytes_twice_is_idempotent(store: LocalBlobStore) -> None:
    data = b"model-bytes" * 100
    digest = hashlib.sha256(data).hexdigest()
    store.put(_chunks(data), digest=digest, size=len(data))
    store.put(_chunks(data), digest=digest, size=len(data))
    assert b"".join(store.read(digest)) == data


def test_digest_mismatch_stores_nothing(store: LocalBlobStore) -> None:
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
def test_size_problems_store_nothing(
    store: LocalBlobStore, sent: bytes, declared: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.put(_chunks(sent), digest=hashlib.sha256(sent).hexdigest(), size=declared)
    assert store.stat(hashlib.sha256(sent).hexdigest()) is None
    assert _staging(store) == []


def test_size_mismatches_carry_both_sizes(store: LocalBlobStore) -> None:
    data = b"x" * 10
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(DigestMismatch) as short:
        store.put([data], digest=digest, size=11)
    assert (short.value.actual, short.value.declared_size, short.value.actual_size) == (digest, 11, 10)
    with pytest.raises(DigestMismatch) as long:
        store.put([data], digest=digest, size=9)
    # Reading stops at the first byte too many: the whole is never hashed.
    assert (long.value.actual, long.value.declared_size, long.value.actual_size) == ("", 9, 10)
    with pytest.raises(SizeLimitExceeded) as big:
        store.put([data], digest=digest, size=20_000_000)
    assert (big.value.size, big.value.limit) == (20_000_000, 10_000_000)


def test_corruption_hook_sees_both_digests(store: LocalBlobStore) -> None:
    data = b"payload" * 1000
    digest = hashlib.sha256(data).hexdigest()
    store.put([data], digest=digest, size=len(data))
    path = store.root / "sha256" / digest[:2] / digest
    os.chmod(path, 0o644)
    path.write_bytes(b"Payload" + data[7:])
    seen = []
    with pytest.raises(DataLoss):
        list(store.read(digest, on_mismatch=lambda expected, actual: seen.append((expected, actual))))
    assert seen == [(digest, hashlib.sha256(path.read_bytes()).hexdigest())]


def test_malformed_digests_are_refused(store: LocalBlobStore) -> None:
    for bad in ["", "ABC", "sha256:" + "a" * 64, "a" * 63, "../../etc/passwd" + "a" * 48]:
        with pytest.raises(InvalidArgument, match="64 lowercase hexadecimal"):
            store.stat(bad)


def test_missing_blob_and_bad_offset(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound):
        list(store.read("0" * 64))
    data = b"abc"
    digest = hashlib.sha256(data).hexdigest()
    store.put([data], digest=digest, size=3)
    with pytest.raises(InvalidArgument, match="beyond the end"):
        store.read(digest, offset=4)


def test_corrupted_blob_is_data_loss_on_read(store: LocalBlobStore) -> None:
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


def _age(path: Path, seconds: float) -> None:
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_cleanup_removes_exactly_the_unlocked_staging_files_whatever_their_age(store: LocalBlobStore) -> None:
    staging = store.root / "staging"
    old_dead = staging / "old-dead.part"
    old_dead.write_bytes(b"half an upload")
    _age(old_dead, 7200)
    new_dead = staging / "new-dead.part"
    new_dead.write_bytes(b"abandoned a moment ago")
    old_live = staging / "old-live.part"
    old_live.write_bytes(b"a slow upload, still running")
    _age(old_live, 7200)
    other = staging / "notes.txt"
    other.write_bytes(b"not a staging file")
    with open(old_live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # what a live writer holds
        assert store.cleanup_staging() == 2
        assert sorted(p.name for p in _staging(store)) == ["notes.txt", "old-live.part"]
    assert store.cleanup_staging() == 1  # once its writer is gone, it is abandoned too
    assert _staging(store) == [other]


def test_cleanup_grace_period_spares_recently_abandoned_files(store: LocalBlobStore) -> None:
    staging = store.root / "staging"
    recent, old = staging / "recent.part", staging / "old.part"
    recent.write_bytes(b"x")
    old.write_bytes(b"y")
    _age(old, 600)
    assert store.cleanup_staging(older_than_seconds=300) == 1
    assert [p.name for p in _staging(store)] == ["recent.part"]


def test_cleanup_during_a_live_upload_leaves_it_alone(store: LocalBlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    halfway, resume = threading.Event(), threading.Event()

    def slow_chunks() -> Iterator[bytes]:
        for i, chunk in enumerate(_chunks(data, 65536)):
            if i == 20:
                halfway.set()
                resume.wait(10)
            yield chunk

    uploader = threading.Thread(target=lambda: store.put(slow_chunks(), digest=digest, size=len(data)))
    uploader.start()
    assert halfway.wait(10)
    assert store.cleanup_staging() == 0
    assert len(_staging(store)) == 1
    resume.set()
    uploader.join(10)
    assert b"".join(store.read(digest)) == data
    assert _staging(store) == []


_KILLED_WRITER = """
import hashlib, sys, time
from pathlib import Path
from libs.artifacts.local_store import LocalBlobStore

def chunks():
    yield b"x" * 100_000
    print("writing", flush=True)
    time.sleep(60)

LocalBlobStore(Path(sys.argv[1])).put(chunks(), digest="0" * 64, size=10**9)
"""


def test_staging_file_of_a_writer_killed_with_sigkill_is_removed(store: LocalBlobStore) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(store.root)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "writing"
        assert store.cleanup_staging() == 0  # alive: its lock protects the part
        assert len(_staging(store)) == 1
    finally:
        child.kill()
        child.wait(10)
    assert store.cleanup_staging() == 1
    assert _staging(store) == []


def test_listing_and_deleting_blobs(store: LocalBlobStore) -> None:
    digests = []
    for data in (b"one", b"two"):
        digest = hashlib.sha256(data).hexdigest()
        store.put([data], digest=digest, size=len(data))
        digests.append(digest)
    assert store.single_writer
    assert sorted(store.list_digests()) == sorted(digests)
    store.delete(digests[0])
    assert list(store.list_digests()) == [digests[1]]
    assert store.stat(digests[0]) is None


def test_streaming_never_holds_the_blob_in_memory(store: LocalBlobStore) -> None:
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


def test_factory_opens_local_paths(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path / "a")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path}/b"), LocalBlobStore)
    with pytest.raises(ValueError, match="unsupported artifact store"):
        open_blob_store("ftp://host/x")
