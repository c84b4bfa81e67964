"""S3 and GCS stores without a cloud: configuration and error paths through the real SDKs.

Nothing here is mocked: the official clients make real connections to a closed loopback port or
look for credentials that are not there, and the stores must turn that into clear errors.
"""

import hashlib
import socket
from pathlib import Path

import pytest

from libs.artifacts.factory import open_blob_store
from libs.errors.domain_errors import InvalidArgument, Unavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def no_cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
    ]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


def test_s3_urls_and_bad_bucket_names() -> None:
    from libs.artifacts.s3_store import S3BlobStore

    store = open_blob_store("s3://models-bucket/causeway/prod/")
    assert isinstance(store, S3BlobStore)
    assert store.bucket == "models-bucket"
    assert store.key("a" * 64) == "causeway/prod/sha256/" + "a" * 64

    with pytest.raises(ValueError, match="invalid S3 bucket name"):
        S3BlobStore("")


def test_s3_without_credentials_is_unavailable_with_advice(no_cloud_env: None) -> None:
    from libs.artifacts.s3_store import S3BlobStore

    store = S3BlobStore("b", region="eu-west-1")
    with pytest.raises(Unavailable, match="no AWS credentials: run with an IAM role"):
        store.stat("a" * 64)


def test_s3_unreachable_endpoint_is_unavailable(no_cloud_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    from libs.artifacts.s3_store import S3BlobStore

    store = S3BlobStore("b", region="eu-west-1", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(Unavailable, match="cannot reach S3 for bucket 'b'"):
        store.stat("a" * 64)
    data = b"weights"
    with pytest.raises(Unavailable):
        store.put([data], digest=hashlib.sha256(data).hexdigest(), size=len(data))


def test_s3_validates_input_before_any_network_call(no_cloud_env: None) -> None:
    from libs.artifacts.s3_store import S3BlobStore

    store = S3BlobStore("b", region="eu-west-1")
    with pytest.raises(InvalidArgument):
        store.put([b"x"], digest="not-a-digest", size=1)


def test_gcs_without_credentials_is_unavailable_with_advice(no_cloud_env: None) -> None:
    from libs.artifacts.gcs_store import GcsBlobStore

    with pytest.raises(Unavailable, match="no Google Cloud credentials"):
        GcsBlobStore("bucket", project="p")


def test_gcs_unreachable_endpoint_is_unavailable(no_cloud_env: None) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from libs.artifacts.gcs_store import GcsBlobStore

    client = storage.Client(
        project="p",
        # google-auth leaves AnonymousCredentials.__init__ unannotated.
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": f"http://127.0.0.1:{_closed_port()}"},
    )
    store = GcsBlobStore("bucket", "pre", client=client, retry_deadline=1.0)
    assert store.name("b" * 64) == "pre/sha256/" + "b" * 64
    with pytest.raises(Unavailable, match="cannot reach GCS bucket 'bucket'"):
        store.stat("b" * 64)
