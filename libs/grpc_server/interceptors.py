"""Server interceptors: request context + JSON access log + RED metrics, and error mapping.

Order (outermost first): observability, error mapping, then any service-specific interceptors
(e.g. authentication), so that an authentication failure raised as a domain error is mapped to
its status code and still logged and counted.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import grpc

from libs.errors.domain_errors import DomainError
from libs.grpc_server.handlers import Behavior, Handler, WrappedHandlers
from libs.telemetry import context as reqctx
from libs.telemetry.metrics import GrpcMetrics

log = logging.getLogger("causeway.grpc")
RequestToken = contextvars.Token[reqctx.RequestContext | None]

# Health probes arrive every few seconds from kubelet; log them only at DEBUG. Servers add their
# own hot methods (e.g. the runner's ModelInfer) with `quiet_methods`.
QUIET_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Mints/propagates the request id and trace id, logs one JSON line and records RED metrics.

    Methods starting with one of `QUIET_PREFIXES` or `quiet_methods` (full names or prefixes) are
    logged at DEBUG when they succeed and at INFO when they fail; their metrics are unchanged.
    """

    def __init__(self, metrics: GrpcMetrics, *, quiet_methods: Sequence[str] = ()) -> None:
        self._metrics = metrics
        self._quiet = QUIET_PREFIXES + tuple(quiet_methods)
        self._handlers = WrappedHandlers(self._wrap)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return self._handlers.get(continuation(handler_call_details), handler_call_details.method)

    def _wrap(self, behavior: Behavior, _req_stream: bool, resp_stream: bool, method: str) -> Behavior:
        metrics = self._metrics.for_method(method)
        quiet = method.startswith(self._quiet)

        def begin(context: grpc.ServicerContext) -> tuple[RequestToken, float]:
            md = _metadata(context)
            ctx = reqctx.RequestContext(
                request_id=reqctx.sanitize_request_id(md.get("x-request-id")) or reqctx.new_id(),
                trace_id=reqctx.trace_id_from_traceparent(md.get("traceparent")) or reqctx.new_id(),
                method=method,
            )
            context.set_trailing_metadata((("x-request-id", ctx.request_id),))
            metrics.started()
            return reqctx.activate(ctx), time.perf_counter()

        def end(context: grpc.ServicerContext, token: RequestToken, start: float, failed: bool) -> None:
            elapsed = time.perf_counter() - start
            ctx = reqctx.current()
            code = context.code() if hasattr(context, "code") else None
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            metrics.finished(name, elapsed)
            level = logging.DEBUG if quiet and name == "OK" else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "rpc",
                    extra={
                        "grpc_method": method,
                        "grpc_code": name,
                        "duration_ms": round(elapsed * 1000, 3),
                        "peer": context.peer(),
                        "actor": ctx.actor if ctx else None,
                    },
                )
            reqctx.deactivate(token)

        if resp_stream:

            def streaming(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token, start = begin(context)
                failed = True
                try:
                    yield from behavior(request_or_iterator, context)
                    failed = False
                finally:
                    end(context, token, start, failed)

            return streaming

        def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            token, start = begin(context)
            failed = True
            try:
                response = behavior(request_or_iterator, context)
                failed = False
                return response
            finally:
                end(context, token, start, failed)

        return unary


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Turns DomainError into its status code; any other exception into INTERNAL without details.

    An unexpected exception is logged with its traceback and the request id; the caller gets only
    the request id, so internals (paths, SQL, secrets) never leak into a status message.
    """

    def __init__(self) -> None:
        self._handlers = WrappedHandlers(self._wrap)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return self._handlers.get(continuation(handler_call_details), handler_call_details.method)

    @staticmethod
    def _abort(context: grpc.ServicerContext, err: Exception, method: str) -> NoReturn:
        if isinstance(err, DomainError):
            code = getattr(grpc.StatusCode, err.status, grpc.StatusCode.UNKNOWN)
            context.abort(code, err.message)
        ctx = reqctx.current()
        request_id = ctx.request_id if ctx else "unknown"
        log.exception("unhandled error in %s", method, extra={"grpc_method": method})
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")

    def _wrap(self, behavior: Behavior, _req_stream: bool, resp_stream: bool, method: str) -> Behavior:
        abort = self._abort

        if resp_stream:

            def streaming(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behavior(request_or_iterator, context)
                except Exception as err:
                    if _is_abort(err, context):
                        raise
                    abort(context, err, method)

            return streaming

        def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behavior(request_or_iterator, context)
            except Exception as err:
                if _is_abort(err, context):
                    raise
                abort(context, err, method)

        return unary


def _is_abort(err: Exception, context: grpc.ServicerContext) -> bool:
    """True when the handler already called context.abort() (grpc raises a bare Exception)."""
    code = context.code() if hasattr(context, "code") else None
    return not isinstance(err, DomainError) and code not in (None, grpc.StatusCode.OK)
