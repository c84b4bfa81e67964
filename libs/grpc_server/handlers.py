"""Wrapping a grpc.RpcMethodHandler's behaviour, whatever its call shape (used by interceptors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

# A string: grpc's RpcMethodHandler is generic only in its stubs, not at run time.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# A behaviour is called as (request or request iterator, context); a wrapper takes one with its
# call shape (request streaming, response streaming) and full method name and returns another.
Behavior = Callable[..., Any]
Wrapper = Callable[[Behavior, bool, bool, str], Behavior]


def wrap_handler(handler: Handler, wrap: Wrapper, method: str) -> Handler:
    """A copy of `handler` whose behaviour is `wrap(behaviour, req_streaming, resp_streaming, method)`."""
    req_stream, resp_stream = handler.request_streaming, handler.response_streaming
    factory: Callable[..., Handler]
    behavior: Behavior | None
    if req_stream and resp_stream:
        factory, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    elif req_stream:
        factory, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif resp_stream:
        factory, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        factory, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    if behavior is None:
        raise ValueError(f"{method}: the handler has no behaviour for its call shape")
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
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler | None, method: str) -> Handler | None:
        if handler is None:
            return None
        hit = self._cache.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = wrap_handler(handler, self._wrap, method)
        self._cache[method] = (handler, wrapped)
        return wrapped
