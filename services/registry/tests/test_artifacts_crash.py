"""kill -9 of the real registry process in the middle of an upload, then a restart.

The crash leaves a staging file behind (the test checks that it did); after the restart nothing of
the upload is left: no staging file, no blob, no artifact row, GetArtifact NOT_FOUND. A blob that
was committed but never recorded (a crash between the two steps) is removed by the restart too.
"""

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from causeway.registry.v1 import artifact_service_pb2, artifact_service_pb2_grpc
from libs.artifacts.local_store import LocalBlobStore
from libs.audit.store import SqlAuditStore
from libs.audit.verify import verify_chain
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.testing.processes import ServerProcess
from services.registry.tests import artifact_client as ac
from services.registry.tests.harness import registry_env

MIB = ac.MIB


def _registry(env: dict[str, str]) -> ServerProcess:
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **env)
    return ServerProcess([sys.executable, "-m", "services.registry.main"], env=child_env, ready_timeout=120)


def _staging(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "artifacts" / "staging").glob("*"))


def _artifact_rows(data_dir: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{data_dir / 'registry.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM artifacts")).scalar_one()
    finally:
        engine.dispose()


def _get(channel, token, hex_digest):
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
    return stub.GetArtifact(artifact_service_pb2.GetArtifactRequest(digest=ac.digest(hex_digest)), metadata=token)


def test_kill_9_mid_upload_leaves_nothing_after_restart(tmp_path):
    idp = DevIdentityProvider(tmp_path / "idp")
    env = registry_env(tmp_path, idp)
    data_dir = Path(env["CAUSEWAY_REGISTRY_DATA_DIR"])
    token = bearer(idp.issue("alice", ["researcher"]))
    size = 64 * MIB
    replay = ac.blocks(size)
    hex_digest, _ = ac.sha256_of(replay())
    release = threading.Event()

    def stalled_chunks():
        for number, chunk in enumerate(replay()):
            if number == 8:
                release.wait(60)  # the server holds 8 MiB in staging and waits for more
                return
            yield chunk

    outcome = {}
    with _registry(env) as server, grpc.insecure_channel(server.address) as channel:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)

        def upload():
            try:
                stub.UploadArtifact(ac.upload_requests(stalled_chunks(), hex_digest, size), metadata=token, timeout=60)
            except grpc.RpcError as err:
                outcome["code"] = err.code()

        uploader = threading.Thread(target=upload)
        uploader.start()
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size >= 8 * MIB for p in _staging(data_dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.stat().st_size for p in _staging(data_dir)] == [8 * MIB], "the upload never reached the disk"
        server.kill()  # SIGKILL: no handler, no cleanup, no flush
        release.set()
        uploader.join(30)
    assert outcome["code"] == grpc.StatusCode.UNAVAILABLE
    assert len(_staging(data_dir)) == 1, "kill -9 should have left the staging file behind"

    # A crash between blob commit and row insert leaves a committed blob without a row.
    orphan = b"committed, never recorded"
    orphan_hex = hashlib.sha256(orphan).hexdigest()
    LocalBlobStore(data_dir / "artifacts").put([orphan], digest=orphan_hex, size=len(orphan))

    with _registry(env) as server, grpc.insecure_channel(server.address) as channel:
        assert _staging(data_dir) == []
        assert list(LocalBlobStore(data_dir / "artifacts").list_digests()) == []
        assert _artifact_rows(data_dir) == 0
        for missing in (hex_digest, orphan_hex):
            with pytest.raises(grpc.RpcError) as err:
                _get(channel, token, missing)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # The restarted registry works: the same upload now completes.
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        artifact = stub.UploadArtifact(ac.upload_requests(replay(), hex_digest, size), metadata=token).artifact
        assert artifact.size_bytes == size and _get(channel, token, hex_digest).artifact == artifact
    assert _artifact_rows(data_dir) == 1
    audit = SqlAuditStore(f"sqlite:///{data_dir / 'registry.db'}")
    events = list(audit.scan())
    assert [(e.action, e.payload_digest) for e in events] == [
        ("artifact.discard", orphan_hex),
        ("artifact.upload", hex_digest),
    ]
    assert verify_chain(events, head=audit.head()).ok
    audit.engine.dispose()
