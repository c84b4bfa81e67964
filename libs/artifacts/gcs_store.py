"""Blob store on Google Cloud Storage through google-cloud-storage (Workload Identity in GKE).

Bytes are streamed with a resumable upload to a staging object while hashing; only when digest
and size match is the object copied to sha256/<hex>, and the staging object is always deleted.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from libs.artifacts.blob_store import CHUNK, BlobInfo, BlobStore, HashingCounter, check_digest
from libs.errors.domain_errors import FailedPrecondition, Unavailable

UPLOAD_CHUNK = 16 * 1024 * 1024  # resumable upload chunks must be multiples of 256 KiB


@contextmanager
def _gcs_errors(bucket: str) -> Iterator[None]:
    import google.auth.exceptions as gauth
    from google.api_core import exceptions as gexc
    from requests import exceptions as rexc

    try:
        yield
    except gauth.DefaultCredentialsError as err:
        raise Unavailable(
            "no Google Cloud credentials: run with Workload Identity or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from err
    except (gexc.Forbidden, gexc.Unauthorized) as err:
        raise FailedPrecondition(f"access to GCS bucket {bucket!r} denied: check the IAM binding") from err
    except gexc.NotFound as err:
        raise FailedPrecondition(f"GCS bucket {bucket!r} or object not found: {err.message}") from err
    except (gexc.GoogleAPIError, rexc.RequestException) as err:
        raise Unavailable(f"cannot reach GCS bucket {bucket!r}: {err}") from err


class GcsBlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        project: str | None = None,
        max_size: int = 64 * 1024**3,
        retry_deadline: float = 60.0,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid GCS bucket name {bucket!r}")
        if client is None:
            from google.cloud import storage

            with _gcs_errors(bucket):
                client = storage.Client(project=project)
        self.client = client
        self.bucket_name = bucket
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.max_size = max_size
        from google.cloud.storage.retry import DEFAULT_RETRY

        # Bounded retries: an outage must surface as UNAVAILABLE, not hang an RPC for minutes.
        self.retry = DEFAULT_RETRY.with_deadline(retry_deadline).with_timeout(retry_deadline)
        self.timeout = min(retry_deadline, 60.0)

    def name(self, digest: str) -> str:
        return f"{self.prefix}sha256/{digest}"

    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        check_digest(digest)
        counter = HashingCounter(size, self.max_size, declared_digest=digest)
        staging = self.bucket.blob(f"{self.prefix}staging/{secrets.token_hex(16)}", chunk_size=UPLOAD_CHUNK)
        with _gcs_errors(self.bucket_name):
            try:
                with staging.open("wb", ignore_flush=True, retry=self.retry, timeout=self.timeout) as out:
                    for chunk in chunks:
                        counter.update(chunk)
                        out.write(chunk)
                counter.finish(digest)
                self.bucket.copy_blob(staging, self.bucket, self.name(digest), retry=self.retry, timeout=self.timeout)
            finally:
                # Best effort: the upload may never have started; the bucket's lifecycle rule on
                # staging/ (infra/modules/gcp) removes anything left behind.
                with contextlib.suppress(Exception):
                    staging.delete(retry=self.retry, timeout=self.timeout)
        return BlobInfo(digest, size)

    def stat(self, digest: str) -> BlobInfo | None:
        check_digest(digest)
        with _gcs_errors(self.bucket_name):
            blob = self.bucket.get_blob(self.name(digest), retry=self.retry, timeout=self.timeout)
        return None if blob is None else BlobInfo(digest, int(blob.size))

    def _read_raw(self, digest: str) -> Iterator[bytes]:
        with (
            _gcs_errors(self.bucket_name),
            self.bucket.blob(self.name(digest)).open(
                "rb", chunk_size=CHUNK, retry=self.retry, timeout=self.timeout
            ) as src,
        ):
            while chunk := src.read(CHUNK):
                yield chunk
