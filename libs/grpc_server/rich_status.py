"""Statuses with details: google.rpc.Status packed into the `grpc-status-details-bin` trailer.

    context.abort_with_status(rich_status(grpc.StatusCode.FAILED_PRECONDITION, msg, gate_failure))

Clients read the details with grpc_status.rpc_status.from_call(). `abort_with_status` replaces
the trailing metadata the bootstrap set, so the request id is carried over here.
"""

from __future__ import annotations

import dataclasses

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from libs.telemetry import context as reqctx


@dataclasses.dataclass(frozen=True)
class RichStatus(grpc.Status):
    """What `ServicerContext.abort_with_status` takes: code, message and trailing metadata."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def rich_status(code: grpc.StatusCode, text: str, *details: Message) -> RichStatus:
    """A status whose `grpc-status-details-bin` trailer carries `details` packed as Any."""
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    status = status_pb2.Status(code=code.value[0], message=text, details=packed)
    trailers: list[tuple[str, str | bytes]] = [("grpc-status-details-bin", status.SerializeToString())]
    ctx = reqctx.current()
    if ctx is not None:
        trailers.append(("x-request-id", ctx.request_id))
    return RichStatus(code, text, tuple(trailers))
