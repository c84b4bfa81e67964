"""A 1 GiB artifact up and down through the real gRPC server in constant memory (tagged slow).

Client and server run in this process, so both sides count against the same budget: Python
allocations (tracemalloc) and the process's peak resident set (ru_maxrss) must stay a small
fraction of the gigabyte that passes through.
"""

import resource
import tracemalloc

import pytest

from causeway.registry.v1 import artifact_service_pb2_grpc
from services.registry.tests import artifact_client as ac
from services.registry.tests.harness import registry_harness

GIB = 1024**3
MIB = ac.MIB


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.fixture
def reg(tmp_path):
    with registry_harness(tmp_path) as harness:
        yield harness


def test_one_gib_round_trip_in_constant_memory(reg):
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(reg.channel)
    token = reg.md("alice", ["researcher"])
    replay = ac.blocks(GIB)
    hex_digest, _ = ac.sha256_of(replay())
    rss_before = _max_rss()
    tracemalloc.start()
    try:
        artifact = stub.UploadArtifact(ac.upload_requests(replay(), hex_digest, GIB), metadata=token).artifact
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        meta, sha, size, largest = ac.download(stub, hex_digest, token)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = _max_rss() - rss_before
    assert (artifact.size_bytes, meta.size_bytes, sha, size) == (GIB, GIB, hex_digest, GIB)
    assert largest <= MIB
    assert upload_peak < 32 * MIB, f"upload: Python peak {upload_peak / MIB:.1f} MiB"
    assert download_peak < 32 * MIB, f"download: Python peak {download_peak / MIB:.1f} MiB"
    assert rss_growth < 128 * MIB, f"peak RSS grew by {rss_growth / MIB:.1f} MiB while 1 GiB passed through"
