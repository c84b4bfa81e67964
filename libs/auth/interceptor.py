"""gRPC server interceptor: every RPC needs a verified bearer JWT and the permission it requires.

Only methods listed as public (health checks, reflection) skip authentication. The verified
`Principal` is available to the servicer through `libs.auth.principal.current()`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from libs.auth import principal as principal_ctx
from libs.auth.rbac import Authorizer
from libs.auth.tokens import Verifier
from libs.errors.domain_errors import Unauthenticated
from libs.grpc_server.handlers import Behavior, Handler, WrappedHandlers
from libs.telemetry import context as reqctx

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")
PrincipalToken = contextvars.Token[principal_ctx.Principal | None]


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        verifier: Verifier,
        authorizer: Authorizer,
        public_methods: Iterable[str] = (),
    ) -> None:
        self._verifier = verifier
        self._authorizer = authorizer
        self._public = set(public_methods)
        self._handlers = WrappedHandlers(self._wrap)

    def _is_public(self, method: str) -> bool:
        return method in self._public or method.startswith(PUBLIC_PREFIXES)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if self._is_public(handler_call_details.method):
            return handler
        return self._handlers.get(handler, handler_call_details.method)

    def _authenticate(self, context: grpc.ServicerContext, method: str) -> PrincipalToken:
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                header = value
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        principal = self._verifier.verify(token.strip())
        ctx = reqctx.current()
        if ctx is not None:
            ctx.actor = principal.subject
        self._authorizer.check_method(principal, method)
        return principal_ctx.activate(principal)

    def _wrap(self, behavior: Behavior, _req_stream: bool, resp_stream: bool, method: str) -> Behavior:
        authenticate = self._authenticate
        if resp_stream:

            def streaming(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token = authenticate(context, method)
                try:
                    yield from behavior(request_or_iterator, context)
                finally:
                    principal_ctx.deactivate(token)

            return streaming

        def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            token = authenticate(context, method)
            try:
                return behavior(request_or_iterator, context)
            finally:
                principal_ctx.deactivate(token)

        return unary


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Client-side call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)
