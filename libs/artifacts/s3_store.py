"""Blob store on Amazon S3 through boto3 (credentials from IRSA, the environment or a profile).

Bytes are streamed as a multipart upload to a staging key while hashing; only when the digest and
size match is the staging object copied to sha256/<hex> and removed. A failed upload is aborted,
so S3 keeps no half-written parts (configure the bucket's AbortIncompleteMultipartUpload rule as
a backstop: infra/modules/aws).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from libs.artifacts.blob_store import CHUNK, BlobInfo, BlobStore, HashingCounter, check_digest
from libs.errors.domain_errors import FailedPrecondition, Unavailable

PART = 16 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last one


@contextmanager
def _s3_errors(bucket: str) -> Iterator[None]:
    import botocore.exceptions as bex

    try:
        yield
    except bex.NoCredentialsError as err:
        raise Unavailable(
            "no AWS credentials: run with an IAM role for the service account (IRSA) or set AWS_PROFILE"
        ) from err
    except bex.EndpointConnectionError as err:
        raise Unavailable(f"cannot reach S3 for bucket {bucket!r}: {err}") from err
    except bex.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            raise FailedPrecondition(f"S3 bucket {bucket!r} does not exist") from err
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise FailedPrecondition(f"access to S3 bucket {bucket!r} denied ({code}): check the IAM policy") from err
        raise Unavailable(f"S3 error on bucket {bucket!r}: {code or err}") from err
    except bex.BotoCoreError as err:
        raise Unavailable(f"S3 error on bucket {bucket!r}: {err}") from err


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_size: int = 64 * 1024**3,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
            )
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.max_size = max_size

    def key(self, digest: str) -> str:
        return f"{self.prefix}sha256/{digest}"

    def put(self, chunks: Iterable[bytes], *, digest: str, size: int) -> BlobInfo:
        check_digest(digest)
        counter = HashingCounter(size, self.max_size, declared_digest=digest)
        staging = f"{self.prefix}staging/{secrets.token_hex(16)}"
        with _s3_errors(self.bucket):
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=staging)
            upload_id = upload["UploadId"]
            try:
                parts: list[dict[str, Any]] = []
                buffer = bytearray()
                for chunk in chunks:
                    counter.update(chunk)
                    buffer += chunk
                    if len(buffer) >= PART:
                        parts.append(self._upload_part(staging, upload_id, len(parts) + 1, bytes(buffer)))
                        buffer.clear()
                if buffer or not parts:
                    parts.append(self._upload_part(staging, upload_id, len(parts) + 1, bytes(buffer)))
                counter.finish(digest)
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=staging, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=staging, UploadId=upload_id)
                raise
            try:
                self.client.copy({"Bucket": self.bucket, "Key": staging}, self.bucket, self.key(digest))
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=staging)
        return BlobInfo(digest, size)

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        return {"ETag": resp["ETag"], "PartNumber": number}

    def stat(self, digest: str) -> BlobInfo | None:
        check_digest(digest)
        import botocore.exceptions as bex

        with _s3_errors(self.bucket):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
            except bex.ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return BlobInfo(digest, int(head["ContentLength"]))

    def _read_raw(self, digest: str) -> Iterator[bytes]:
        with _s3_errors(self.bucket):
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()
