"""ArtifactService through the real registry app and gRPC server: streaming, verification, refusals."""

import hashlib
import os
import tracemalloc

import grpc
import pytest

from causeway.common.v1 import errors_pb2
from causeway.registry.v1 import artifact_pb2, artifact_service_pb2, artifact_service_pb2_grpc
from libs.audit.store import EventFilter
from services.registry.tests import artifact_client as ac
from services.registry.tests.artifact_client import make_tar
from services.registry.tests.harness import registry_harness

MIB = ac.MIB
MAX_BYTES = 80 * MIB


@pytest.fixture
def reg(tmp_path):
    with registry_harness(tmp_path, MAX_ARTIFACT_BYTES=str(MAX_BYTES)) as harness:
        yield harness


@pytest.fixture
def stub(reg):
    return artifact_service_pb2_grpc.ArtifactServiceStub(reg.channel)


def alice(reg):
    return reg.md("alice", ["researcher"], name="Alice Example")


def _upload(stub, reg, data: bytes, chunk: int = MIB, md=None, **kwargs):
    hex_digest = hashlib.sha256(data).hexdigest()
    pieces = (data[i : i + chunk] for i in range(0, len(data), chunk))
    requests = ac.upload_requests(pieces, hex_digest, len(data), **kwargs)
    return stub.UploadArtifact(requests, metadata=md or alice(reg)).artifact


def _events(reg, action=""):
    return reg.app.audit_log.list(EventFilter(action=action), 1000)[0]


def _staging(reg):
    return list((reg.app.blobs.root / "staging").iterdir())


def _error(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def test_multi_mib_round_trip_with_offsets(reg, stub):
    data = os.urandom(5 * MIB + 12345)
    artifact = _upload(stub, reg, data, chunk=3 * MIB)
    hex_digest = hashlib.sha256(data).hexdigest()
    assert (artifact.digest.hex, artifact.size_bytes, artifact.filename) == (hex_digest, len(data), "model.bin")
    assert artifact.layout == artifact_pb2.ARTIFACT_LAYOUT_FILE
    assert (artifact.uploaded_by.subject, artifact.uploaded_by.display_name) == ("alice", "Alice Example")
    assert artifact.upload_time.seconds > 0
    got = stub.GetArtifact(artifact_service_pb2.GetArtifactRequest(digest=ac.digest(hex_digest)), metadata=alice(reg))
    assert got.artifact == artifact
    meta, sha, size, largest = ac.download(stub, hex_digest, alice(reg))
    assert (meta, sha, size) == (artifact, hex_digest, len(data))
    assert largest == MIB  # chunks of at most 1 MiB
    for offset in (1, MIB + 7, len(data) - 1, len(data)):
        _, sha, size, _ = ac.download(stub, hex_digest, alice(reg), offset=offset)
        assert (sha, size) == (hashlib.sha256(data[offset:]).hexdigest(), len(data) - offset)
    [event] = _events(reg, "artifact.upload")
    assert (event.subject, event.payload_digest, event.actor) == (f"artifacts/sha256:{hex_digest}", hex_digest, "alice")
    assert event.details["already_stored"] is False
    assert _staging(reg) == []


def test_uploading_stored_bytes_again_returns_the_first_record(reg, stub):
    data = os.urandom(100_000)
    first = _upload(stub, reg, data, filename="a.safetensors")
    again = _upload(stub, reg, data, filename="b.safetensors", md=reg.md("bob", ["researcher"]))
    assert again == first and again.uploaded_by.subject == "alice"
    assert [e.details["already_stored"] for e in _events(reg, "artifact.upload")] == [False, True]
    assert [e.actor for e in _events(reg, "artifact.upload")] == ["alice", "bob"]


def test_64_mib_streams_through_in_constant_memory(reg, stub):
    size = 64 * MIB
    replay = ac.blocks(size)
    hex_digest, _ = ac.sha256_of(replay())
    tracemalloc.start()
    try:
        artifact = stub.UploadArtifact(ac.upload_requests(replay(), hex_digest, size), metadata=alice(reg)).artifact
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        _, sha, got, _ = ac.download(stub, hex_digest, alice(reg))
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (artifact.size_bytes, sha, got) == (size, hex_digest, size)
    # Client and server share this process: both sides together stay far below the 64 MiB moved.
    assert upload_peak < 24 * MIB, f"upload peak {upload_peak / MIB:.1f} MiB"
    assert download_peak < 24 * MIB, f"download peak {download_peak / MIB:.1f} MiB"


def test_a_packed_directory_uploads_as_tar(reg, stub):
    data = make_tar([("model", "dir", None), ("model/MLmodel", "file", b"flavors: {}\n")])
    artifact = _upload(stub, reg, data, layout=artifact_pb2.ARTIFACT_LAYOUT_TAR, filename="model.tar")
    assert artifact.layout == artifact_pb2.ARTIFACT_LAYOUT_TAR
    assert reg.app.artifacts.layout_of(artifact.digest.hex) == "TAR"


GOOD = b"weights" * 1000
GOOD_HEX = hashlib.sha256(GOOD).hexdigest()
GOOD_SIZE = len(GOOD)
OTHER_HEX = hashlib.sha256(b"something else").hexdigest()


def _meta(hex_digest=GOOD_HEX, size=GOOD_SIZE, layout=artifact_pb2.ARTIFACT_LAYOUT_FILE, filename="m.bin", **digest):
    meta = artifact_pb2.UploadArtifactMetadata(
        digest=ac.digest(hex_digest), size_bytes=size, layout=layout, filename=filename
    )
    for key, value in digest.items():
        setattr(meta.digest, key, value)
    return artifact_service_pb2.UploadArtifactRequest(metadata=meta)


def _chunk(data=GOOD):
    return artifact_service_pb2.UploadArtifactRequest(chunk=data)


def _tar_meta(data):
    return _meta(hashlib.sha256(data).hexdigest(), len(data), artifact_pb2.ARTIFACT_LAYOUT_TAR)


def _tar(entries):
    data = make_tar(entries)
    return [_tar_meta(data), _chunk(data)]


MALFORMED = {
    "no messages": ([], "first message of an upload must be the metadata"),
    "chunk first": ([_chunk(), _meta()], "first message of an upload must be the metadata"),
    "metadata twice": ([_meta(), _chunk(GOOD[:10]), _meta()], "message 3 repeats the metadata"),
    "empty message": ([_meta(), artifact_service_pb2.UploadArtifactRequest()], "neither metadata nor a chunk"),
    "chunk above 4 MiB": ([_meta(size=4 * MIB + 1), _chunk(bytes(4 * MIB + 1))], "maximum is 4194304"),
    "uppercase digest": ([_meta(GOOD_HEX.upper()), _chunk()], "64 lowercase hexadecimal"),
    "prefixed digest": ([_meta("sha256:" + GOOD_HEX), _chunk()], "64 lowercase hexadecimal"),
    "no algorithm": ([_meta(algorithm=0), _chunk()], "DIGEST_ALGORITHM_SHA256"),
    "no layout": ([_meta(layout=0), _chunk()], "layout must be"),
    "negative size": ([_meta(size=-1), _chunk()], "must not be negative"),
    "filename with slash": ([_meta(filename="../model.bin"), _chunk()], "without path separators"),
    "filename with backslash": ([_meta(filename="a\\b"), _chunk()], "without path separators"),
    "filename with NUL": ([_meta(filename="a\x00b"), _chunk()], "control"),
    "filename with RTL override": ([_meta(filename="evil\u202egnp.exe"), _chunk()], "control"),
    "filename too long": ([_meta(filename="é" * 128), _chunk()], "longer than 255 bytes"),
    "tar absolute path": (_tar([("/etc/cron.d/x", "file", b"x")]), "entry '/etc/cron.d/x': absolute path"),
    "tar dot-dot": (_tar([("a/../../x", "file", b"x")]), "entry 'a/../../x': '..' in the path"),
    "tar unsorted": (_tar([("b", "file", b""), ("a", "file", b"")]), "entry 'a': not sorted"),
    "tar escaping link": (_tar([("l", "symlink", "../../etc")]), "entry 'l': symbolic link target"),
    "tar device": (_tar([("null", "chr", None)]), "entry 'null': character device"),
    "tar fifo": (_tar([("p", "fifo", None)]), "entry 'p': FIFO"),
    "tar truncated": ([_tar_meta(make_tar([])[:512]), _chunk(make_tar([])[:512])], "no end-of-archive marker"),
    "not a tar": ([_meta(layout=artifact_pb2.ARTIFACT_LAYOUT_TAR), _chunk()], "not a POSIX (ustar) header"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_uploads_are_invalid_and_store_nothing(reg, stub, case):
    requests, message = MALFORMED[case]
    err = _error(lambda: stub.UploadArtifact(iter(requests), metadata=alice(reg)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert message in err.details()
    _assert_nothing_stored(reg, stub)


def _assert_nothing_stored(reg, stub, *digests):
    assert list(reg.app.blobs.list_digests()) == []
    assert list(reg.app.artifacts.index.iter_digests()) == []
    assert _staging(reg) == []
    assert _events(reg) == []
    for hex_digest in digests or (GOOD_HEX,):
        err = _error(
            lambda h=hex_digest: stub.GetArtifact(
                artifact_service_pb2.GetArtifactRequest(digest=ac.digest(h)), metadata=alice(reg)
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("requests", "declared", "actual", "sizes", "message"),
    [
        ([_meta(OTHER_HEX), _chunk()], OTHER_HEX, GOOD_HEX, (len(GOOD), len(GOOD)), "hash to sha256:"),
        ([_meta(size=len(GOOD) + 1), _chunk()], GOOD_HEX, GOOD_HEX, (len(GOOD) + 1, len(GOOD)), "bytes received"),
        # Reading stops at the first byte too many, so no digest of the whole is reported.
        ([_meta(size=10), _chunk()], GOOD_HEX, "", (10, len(GOOD)), "more bytes received than the declared 10"),
    ],
    ids=["digest", "too few bytes", "too many bytes"],
)
def test_mismatches_carry_a_digest_mismatch_detail(reg, stub, requests, declared, actual, sizes, message):
    err = _error(lambda: stub.UploadArtifact(iter(requests), metadata=alice(reg)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()
    detail = ac.status_details(err, errors_pb2.DigestMismatch)
    assert (detail.declared.hex, detail.actual.hex) == (declared, actual)
    assert (detail.declared_size_bytes, detail.actual_size_bytes) == sizes
    assert any(key == "x-request-id" for key, _ in err.trailing_metadata())
    _assert_nothing_stored(reg, stub, GOOD_HEX, OTHER_HEX)


def test_size_above_the_maximum_is_resource_exhausted_with_quota_failure(reg, stub):
    err = _error(lambda: stub.UploadArtifact(iter([_meta(size=MAX_BYTES + 1), _chunk()]), metadata=alice(reg)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    detail = ac.status_details(err, errors_pb2.QuotaFailure)
    assert (detail.limit, detail.limit_value, detail.current_value) == ("max_artifact_bytes", MAX_BYTES, MAX_BYTES + 1)
    _assert_nothing_stored(reg, stub)


def test_callers_without_artifacts_write_cannot_upload(reg, stub):
    err = _error(lambda: stub.UploadArtifact(iter([_meta(), _chunk()]), metadata=reg.md("rita", ["reviewer"])))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    _assert_nothing_stored(reg, stub)


def test_download_codes(reg, stub):
    artifact = _upload(stub, reg, GOOD)

    def download(hex_digest=GOOD_HEX, offset=0):
        request = artifact_service_pb2.DownloadArtifactRequest(digest=ac.digest(hex_digest), offset=offset)
        return list(stub.DownloadArtifact(request, metadata=alice(reg)))

    assert _error(lambda: download(OTHER_HEX)).code() == grpc.StatusCode.NOT_FOUND
    assert _error(lambda: download("XYZ")).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error(lambda: download(offset=-1)).code() == grpc.StatusCode.INVALID_ARGUMENT
    err = _error(lambda: download(offset=len(GOOD) + 1))
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE and f"({len(GOOD)} bytes)" in err.details()
    assert [m.WhichOneof("content") for m in download(offset=len(GOOD))] == ["metadata"]
    assert download()[0].metadata == artifact


def _stored_path(reg, hex_digest):
    return reg.app.blobs.root / "sha256" / hex_digest[:2] / hex_digest


def test_corrupted_bytes_end_the_download_with_data_loss_and_are_audited(reg, stub):
    data = os.urandom(3 * MIB)
    hex_digest = _upload(stub, reg, data).digest.hex
    path = _stored_path(reg, hex_digest)
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(2 * MIB + 5)
        f.write(b"\xff\xfe")
    received = []
    request = artifact_service_pb2.DownloadArtifactRequest(digest=ac.digest(hex_digest))
    err = _error(lambda: received.extend(stub.DownloadArtifact(request, metadata=alice(reg))))
    assert err.code() == grpc.StatusCode.DATA_LOSS and "no longer match" in err.details()
    assert received[0].WhichOneof("content") == "metadata" and len(received) == 4  # all chunks, then the status
    [event] = _events(reg, "artifact.corrupt")
    assert (event.outcome, event.payload_digest, event.actor) == ("failure", hex_digest, "alice")
    assert event.details["actual_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    path.unlink()
    err = _error(lambda: list(stub.DownloadArtifact(request, metadata=alice(reg))))
    assert err.code() == grpc.StatusCode.DATA_LOSS and "missing" in err.details()
    # Uploading the same bytes again repairs the stored copy.
    _upload(stub, reg, data)
    assert ac.download(stub, hex_digest, alice(reg))[1] == hex_digest


def test_unrecorded_blobs_are_invisible_and_removed_by_recovery(reg, stub):
    hex_digest = hashlib.sha256(GOOD).hexdigest()
    reg.app.blobs.put([GOOD], digest=hex_digest, size=len(GOOD))  # as if the server died before the row
    recorded = _upload(stub, reg, b"kept")
    (reg.app.blobs.root / "staging" / "dead.part").write_bytes(b"half")
    err = _error(
        lambda: stub.GetArtifact(
            artifact_service_pb2.GetArtifactRequest(digest=ac.digest(hex_digest)), metadata=alice(reg)
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert reg.app.artifacts.layout_of(hex_digest) is None  # so no version can be bound to it
    recovery = reg.app.artifacts.recover()
    assert (recovery.staging_removed, recovery.orphans_removed) == (1, (hex_digest,))
    assert list(reg.app.blobs.list_digests()) == [recorded.digest.hex]
    [event] = _events(reg, "artifact.discard")
    assert (event.payload_digest, event.actor, event.recorded_by) == (
        hex_digest,
        "service:registry",
        "service:registry",
    )
