"""Start real gRPC servers on 127.0.0.1:0 in the test process."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from google.rpc import status_pb2

from libs.grpc_server.server import GrpcServer, ServiceBinding
from libs.grpc_server.settings import ServerSettings


def test_settings(**overrides: Any) -> ServerSettings:
    """Server settings for tests: loopback, a free port, no grace, no metrics port."""
    base = ServerSettings(host="127.0.0.1", port=0, grace_seconds=0.0, metrics_port=-1, max_workers=8)
    return dataclasses.replace(base, **overrides)


@contextlib.contextmanager
def running_server(
    bindings: Sequence[ServiceBinding],
    *,
    settings: ServerSettings | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> Iterator[GrpcServer]:
    """A started GrpcServer bound to 127.0.0.1:<free port>; stopped when the block exits."""
    server = GrpcServer(bindings, settings or test_settings(), interceptors=interceptors).start()
    try:
        yield server
    finally:
        server.stop(0)


@contextlib.contextmanager
def channel_to(server: GrpcServer, max_message_bytes: int | None = None) -> Iterator[grpc.Channel]:
    """An insecure channel to `server`, ready before it is yielded."""
    options = []
    if max_message_bytes:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
    with grpc.insecure_channel(server.address, options=options) as chan:
        grpc.channel_ready_future(chan).result(timeout=10)
        yield chan


def trailers(err: grpc.RpcError | grpc.Call) -> dict[str, str | bytes]:
    """The trailing metadata of a failed call, by key.

    A sync call's error is also its grpc.Call, whose trailers are (key, value) pairs; types-grpcio
    types RpcError.trailing_metadata() as objects with .key and .value, which the sync API never returns.
    """
    assert isinstance(err, grpc.Call)
    call: grpc.Call = err
    return dict(call.trailing_metadata())


def rich_status_of(err: grpc.RpcError | grpc.Call) -> status_pb2.Status:
    """The google.rpc.Status a failed call carries in its `grpc-status-details-bin` trailer."""
    raw = trailers(err)["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    return status_pb2.Status.FromString(raw)
