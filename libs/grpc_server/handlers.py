"""Wrapping a grpc.RpcMethodHandler's behaviour, whatever its call shape (used by interceptors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Wrapper = Callable[[Callable[..., Any], bool, bool, str], Callable[..., Any]]


def wrap_handler(handler: grpc.RpcMethodHandler, wrap: Wrapper, method: str) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour is `wrap(behaviour, req_streaming, resp_streaming, method)`."""
    if handler is None:
        return None
    req_stream, resp_stream = handler.request_streaming, handler.response_streaming
    if req_stream and resp_stream:
        factory, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    elif req_stream:
        factory, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif resp_stream:
        factory, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        factory, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    return factory(
        wrap(behavior, req_stream, resp_stream, method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
