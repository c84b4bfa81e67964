import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.auth import principal as principal_ctx
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import AuthInterceptor, bearer
from libs.auth.rbac import APPROVALS_SIGN, MODELS_READ, Authorizer
from libs.auth.tokens import JwksSource, TokenVerifier, VerifierSettings
from libs.grpc_server.server import ServiceBinding
from libs.testing.grpc_servers import channel_to, running_server

SERVICE = "test.v1.Guarded"


def _ident(b: bytes) -> bytes:
    return b


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    p = principal_ctx.current()
    assert p is not None
    return f"{p.subject}:{','.join(sorted(p.roles))}".encode()


def _sign(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"signed"


def _binding() -> ServiceBinding:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami, _ident, _ident),
            "Sign": grpc.unary_unary_rpc_method_handler(_sign, _ident, _ident),
            "Unmapped": grpc.unary_unary_rpc_method_handler(_sign, _ident, _ident),
        },
    )
    return ServiceBinding(SERVICE, lambda s: s.add_generic_rpc_handlers((handler,)))


@pytest.fixture
def idp(tmp_path: Path) -> DevIdentityProvider:
    return DevIdentityProvider(tmp_path / "idp")


@pytest.fixture
def chan(idp: DevIdentityProvider) -> Iterator[grpc.Channel]:
    verifier = TokenVerifier(JwksSource(str(idp.jwks_path)), VerifierSettings(idp.issuer, idp.audience))
    authorizer = Authorizer({f"/{SERVICE}/WhoAmI": MODELS_READ, f"/{SERVICE}/Sign": APPROVALS_SIGN})
    with (
        running_server([_binding()], interceptors=[AuthInterceptor(verifier, authorizer)]) as server,
        channel_to(server) as channel,
    ):
        yield channel


def _call(chan: grpc.Channel, method: str, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
    call = chan.unary_unary(f"/{SERVICE}/{method}", _ident, _ident)
    return call(b"", metadata=tuple(metadata))


def _status(chan: grpc.Channel, method: str, metadata: Sequence[tuple[str, str]] = ()) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        _call(chan, method, metadata)
    assert isinstance(err.value, grpc.Call)
    return err.value.code(), err.value.details() or ""


def test_no_credentials_is_unauthenticated(chan: grpc.Channel) -> None:
    code, details = _status(chan, "WhoAmI")
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "missing credentials" in details


def test_wrong_scheme_and_bad_token_are_unauthenticated(chan: grpc.Channel, idp: DevIdentityProvider) -> None:
    code, details = _status(chan, "WhoAmI", [("authorization", "Basic YWxpY2U6cHc=")])
    assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    expired = idp.issue("alice", ["researcher"], issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    code, details = _status(chan, "WhoAmI", bearer(expired))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in details


def test_verified_caller_reaches_the_servicer(chan: grpc.Channel, idp: DevIdentityProvider) -> None:
    token = idp.issue("alice", ["researcher"])
    assert _call(chan, "WhoAmI", bearer(token)) == b"alice:researcher"


def test_missing_permission_is_permission_denied(chan: grpc.Channel, idp: DevIdentityProvider) -> None:
    token = idp.issue("alice", ["researcher"])
    code, details = _status(chan, "Sign", bearer(token))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "alice (researcher) lacks permission 'approvals.sign' required to call Sign"
    assert _call(chan, "Sign", bearer(idp.issue("quinn", ["qa-approver"]))) == b"signed"


def test_methods_outside_the_map_are_denied_by_default(chan: grpc.Channel, idp: DevIdentityProvider) -> None:
    code, details = _status(chan, "Unmapped", bearer(idp.issue("root", ["platform-admin"])))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "denied by default" in details


def test_health_checks_need_no_token(chan: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(chan)
    # types-grpcio-health-checking declares HealthStub without its RPC attributes.
    resp = stub.Check(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
