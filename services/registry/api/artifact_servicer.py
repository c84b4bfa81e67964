"""causeway.registry.v1.ArtifactService: proto <-> domain mapping and status codes, nothing else.

Errors that carry a detail message (DigestMismatch, QuotaFailure) leave as a google.rpc.Status
in `grpc-status-details-bin`; every other domain error goes to the server bootstrap's mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import grpc

from causeway.common.v1 import errors_pb2
from causeway.registry.v1 import artifact_pb2, artifact_service_pb2, artifact_service_pb2_grpc
from libs.artifacts.blob_store import DigestMismatch, SizeLimitExceeded
from libs.auth import principal as principal_ctx
from libs.auth.principal import Principal
from libs.errors.domain_errors import Cancelled, InvalidArgument, Unauthenticated
from libs.grpc_server.rich_status import rich_status
from libs.grpc_server.server import ServiceBinding
from services.registry.api.convert import actor, digest_hex, digest_proto, timestamp
from services.registry.domain.artifacts import ArtifactRecord, Artifacts, UploadMetadata

MAX_UPLOAD_CHUNK = 4 * 1024 * 1024  # artifact_service.proto: "chunk larger than 4 MiB" is INVALID_ARGUMENT
MAX_DOWNLOAD_CHUNK = 1024 * 1024  # artifact_service.proto: download chunks of up to 1 MiB

_LAYOUT_FROM_PROTO = {artifact_pb2.ARTIFACT_LAYOUT_FILE: "FILE", artifact_pb2.ARTIFACT_LAYOUT_TAR: "TAR"}
_LAYOUT_TO_PROTO = {v: k for k, v in _LAYOUT_FROM_PROTO.items()}


def _caller() -> Principal:
    principal = principal_ctx.current()
    if principal is None:  # only if the server was assembled without the auth interceptor
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
    return principal


def artifact_proto(record: ArtifactRecord) -> artifact_pb2.Artifact:
    return artifact_pb2.Artifact(
        digest=digest_proto(record.digest),
        size_bytes=record.size_bytes,
        layout=_LAYOUT_TO_PROTO[record.layout],
        filename=record.filename,
        uploaded_by=actor(record.uploaded_by),
        upload_time=timestamp(record.upload_time),
    )


def _metadata(message: artifact_pb2.UploadArtifactMetadata) -> UploadMetadata:
    layout = _LAYOUT_FROM_PROTO.get(message.layout)
    if layout is None:
        raise InvalidArgument("metadata.layout must be ARTIFACT_LAYOUT_FILE or ARTIFACT_LAYOUT_TAR")
    return UploadMetadata(
        digest=digest_hex(message.digest, "metadata.digest"),
        size_bytes=message.size_bytes,
        layout=layout,
        filename=message.filename,
    )


def _chunks(requests: Iterator[artifact_service_pb2.UploadArtifactRequest]) -> Iterator[bytes]:
    """The bytes of the messages after the metadata; InvalidArgument on anything else."""
    number = 1
    try:
        for request in requests:
            number += 1
            kind = request.WhichOneof("content")
            if kind == "metadata":
                raise InvalidArgument(f"message {number} repeats the metadata; it is sent once, first")
            if kind != "chunk":
                raise InvalidArgument(f"message {number} carries neither metadata nor a chunk")
            if len(request.chunk) > MAX_UPLOAD_CHUNK:
                raise InvalidArgument(
                    f"message {number} carries a chunk of {len(request.chunk)} bytes; the maximum is {MAX_UPLOAD_CHUNK}"
                )
            yield request.chunk
    except grpc.RpcError as err:
        # The request iterator raises when the client cancels or the deadline passes mid-stream.
        raise Cancelled("the upload stream ended before the last chunk (cancelled by the client?)") from err


@contextlib.contextmanager
def _with_details(context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except DigestMismatch as err:
        detail = errors_pb2.DigestMismatch(
            declared=digest_proto(err.declared),
            actual=digest_proto(err.actual),
            declared_size_bytes=err.declared_size,
            actual_size_bytes=err.actual_size,
        )
        context.abort_with_status(rich_status(grpc.StatusCode.INVALID_ARGUMENT, err.message, detail))
    except SizeLimitExceeded as err:
        # QuotaFailure's current_value is the size the upload asked for: the usage it would cause.
        quota = errors_pb2.QuotaFailure(limit="max_artifact_bytes", limit_value=err.limit, current_value=err.size)
        context.abort_with_status(rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, err.message, quota))


class ArtifactServicer(artifact_service_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, artifacts: Artifacts) -> None:
        self.artifacts = artifacts

    def UploadArtifact(self, request_iterator: Iterable, context: grpc.ServicerContext):
        with _with_details(context):
            requests = iter(request_iterator)
            first = next(requests, None)
            if first is None or first.WhichOneof("content") != "metadata":
                raise InvalidArgument("the first message of an upload must be the metadata")
            meta = _metadata(first.metadata)
            record, _ = self.artifacts.upload(_caller(), meta, _chunks(requests))
        return artifact_service_pb2.UploadArtifactResponse(artifact=artifact_proto(record))

    def DownloadArtifact(self, request: artifact_service_pb2.DownloadArtifactRequest, context: grpc.ServicerContext):
        digest = digest_hex(request.digest, "digest")
        record, chunks = self.artifacts.download(_caller(), digest, request.offset)
        yield artifact_service_pb2.DownloadArtifactResponse(metadata=artifact_proto(record))
        for chunk in chunks:
            for start in range(0, len(chunk), MAX_DOWNLOAD_CHUNK):
                yield artifact_service_pb2.DownloadArtifactResponse(chunk=chunk[start : start + MAX_DOWNLOAD_CHUNK])

    def GetArtifact(self, request: artifact_service_pb2.GetArtifactRequest, context: grpc.ServicerContext):
        record = self.artifacts.get(digest_hex(request.digest, "digest"))
        return artifact_service_pb2.GetArtifactResponse(artifact=artifact_proto(record))


def binding(artifacts: Artifacts) -> ServiceBinding:
    servicer = ArtifactServicer(artifacts)
    return ServiceBinding(
        artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
        lambda server: artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(servicer, server),
    )
