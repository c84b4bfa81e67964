"""Open the blob store a URL names: a local path or file://, s3://bucket/prefix, gs://bucket/prefix."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from libs.artifacts.blob_store import BlobStore


def open_blob_store(url: str, *, max_size: int = 64 * 1024**3) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from libs.artifacts.local_store import LocalBlobStore

        path = parsed.path if parsed.scheme == "file" else url
        if not path:
            raise ValueError("artifact store path is empty")
        return LocalBlobStore(Path(path), max_size=max_size)
    if parsed.scheme == "s3":
        from libs.artifacts.s3_store import S3BlobStore

        return S3BlobStore(parsed.netloc, parsed.path, max_size=max_size)
    if parsed.scheme == "gs":
        from libs.artifacts.gcs_store import GcsBlobStore

        return GcsBlobStore(parsed.netloc, parsed.path, max_size=max_size)
    raise ValueError(f"unsupported artifact store {url!r}: use a path, file://, s3:// or gs://")
