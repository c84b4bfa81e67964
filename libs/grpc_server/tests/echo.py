"""A tiny bytes-in/bytes-out service for exercising the bootstrap without any proto."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TypeAlias

import grpc

from libs.errors.domain_errors import NotFound
from libs.grpc_server.server import ServiceBinding

SERVICE = "test.v1.Echo"

log = logging.getLogger(__name__)


def _identity(b: bytes) -> bytes:
    return b


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"notfound":
        raise NotFound("model 'x' has no version 7")
    if request == b"boom":
        raise RuntimeError("connection to postgres://admin:hunter2@db failed")
    if request == b"abort":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "role reviewer cannot deploy")
    return request


def _count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request or b"3")):
        if i == 2 and request == b"5":
            raise NotFound("stream ran out at 2")
        yield str(i).encode()


def _total(request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    total = 0
    for number, chunk in enumerate(request_iterator):
        if number == 0:
            # A test that needs an RPC in flight waits for this line, then holds its stream open.
            log.info("first chunk received")
        total += len(chunk)
    return str(total).encode()


def binding() -> ServiceBinding:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(_echo, _identity, _identity),
            "Count": grpc.unary_stream_rpc_method_handler(_count, _identity, _identity),
            "Total": grpc.stream_unary_rpc_method_handler(_total, _identity, _identity),
        },
    )
    return ServiceBinding(SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)))


# A string: the multi-callables are generic only in grpc's stubs, not at run time.
Stubs: TypeAlias = """tuple[
    grpc.UnaryUnaryMultiCallable[bytes, bytes],
    grpc.UnaryStreamMultiCallable[bytes, bytes],
    grpc.StreamUnaryMultiCallable[bytes, bytes],
]"""


def stubs(channel: grpc.Channel) -> Stubs:
    return (
        channel.unary_unary(f"/{SERVICE}/Echo", _identity, _identity),
        channel.unary_stream(f"/{SERVICE}/Count", _identity, _identity),
        channel.stream_unary(f"/{SERVICE}/Total", _identity, _identity),
    )
