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


class WrappedHandlers:
    """Wrapped handlers by method, built once per method instead of once per call.

    An interceptor runs on every call, but the handler it is given for a method is the same object
    each time (the servicer's, or the next interceptor's cached copy): rebuilding the wrapper,
    its closures and its per-method state on every call cost measurable CPU on small RPCs.
    """

    def __init__(self, wrap: Wrapper) -> None:
        self._wrap = wrap
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(self, handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler | None:
        if handler is None:
            return None
        hit = self._cache.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = wrap_handler(handler, self._wrap, method)
        self._cache[method] = (handler, wrapped)
        return wrapped
