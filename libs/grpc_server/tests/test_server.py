import io
import json
import logging
from collections.abc import Iterator
from unittest import mock

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest

from libs.grpc_server.handlers import Behavior, Handler, WrappedHandlers
from libs.grpc_server.interceptors import ObservabilityInterceptor
from libs.grpc_server.rich_status import rich_status
from libs.grpc_server.server import GrpcServer
from libs.grpc_server.tests import echo
from libs.telemetry import context as reqctx
from libs.telemetry import logging_json
from libs.telemetry.metrics import GrpcMetrics
from libs.testing.grpc_servers import channel_to, running_server, test_settings, trailers


@pytest.fixture
def server() -> Iterator[GrpcServer]:
    with running_server([echo.binding()]) as srv:
        yield srv


@pytest.fixture
def stubs(server: GrpcServer) -> Iterator[echo.Stubs]:
    with channel_to(server) as chan:
        yield echo.stubs(chan)


def test_binds_loopback_on_a_free_port(server: GrpcServer) -> None:
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"


def test_health_reports_serving_for_server_and_service(server: GrpcServer) -> None:
    with channel_to(server) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        # types-grpcio-health-checking declares HealthStub without its RPC attributes.
        for name in ["", echo.SERVICE]:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=name))  # type: ignore[attr-defined]
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))  # type: ignore[attr-defined]
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services(server: GrpcServer) -> None:
    with channel_to(server) as chan:
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        # types-grpcio-reflection types ServerReflectionInfo as binascii.Incomplete, not a callable.
        (resp,) = list(stub.ServerReflectionInfo(iter([request])))  # type: ignore[operator]
        names = {s.name for s in resp.list_services_response.service}
        assert {echo.SERVICE, "grpc.health.v1.Health"} <= names


def test_all_call_shapes_work(stubs: echo.Stubs) -> None:
    unary, stream, client_stream = stubs
    assert unary(b"hi") == b"hi"
    assert list(stream(b"3")) == [b"0", b"1", b"2"]
    assert client_stream(iter([b"ab", b"cde"])) == b"5"


def test_domain_error_maps_to_status_with_its_message(stubs: echo.Stubs) -> None:
    unary, _, _ = stubs
    with pytest.raises(grpc.RpcError) as err:
        unary(b"notfound")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "model 'x' has no version 7"


def test_domain_error_mid_stream_maps_to_status(stubs: echo.Stubs) -> None:
    _, stream, _ = stubs
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for item in stream(b"5"):
            got.append(item)
    assert got == [b"0", b"1"]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_unexpected_error_is_internal_without_leaking(stubs: echo.Stubs) -> None:
    unary, _, _ = stubs
    with pytest.raises(grpc.RpcError) as err:
        unary(b"boom", metadata=(("x-request-id", "req-42"),))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == "internal error (request id req-42)"
    assert "hunter2" not in (err.value.details() or "")


def test_explicit_abort_passes_through(stubs: echo.Stubs) -> None:
    unary, _, _ = stubs
    with pytest.raises(grpc.RpcError) as err:
        unary(b"abort")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "role reviewer cannot deploy"


def test_request_id_is_returned_and_logged_and_metrics_counted(server: GrpcServer, stubs: echo.Stubs) -> None:
    out = io.StringIO()
    logging_json.configure("test", "INFO", stream=out)
    unary, _, _ = stubs
    _, call = unary.with_call(b"x", metadata=(("x-request-id", "abc-1"),))
    assert dict(call.trailing_metadata())["x-request-id"] == "abc-1"
    with pytest.raises(grpc.RpcError) as err:
        unary(b"notfound")
    minted = trailers(err.value)["x-request-id"]
    assert len(minted) == 32

    logging.getLogger().handlers[-1].flush()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    rpc_lines = [x for x in lines if x["msg"] == "rpc" and x["grpc_method"] == f"/{echo.SERVICE}/Echo"]
    assert {(x["request_id"], x["grpc_code"]) for x in rpc_lines} == {("abc-1", "OK"), (minted, "NOT_FOUND")}
    assert all(x["duration_ms"] >= 0 for x in rpc_lines)

    text = generate_latest(server.metrics.registry).decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Echo",grpc_service="test.v1.Echo"} 1.0' in text
    assert 'grpc_code="NOT_FOUND",grpc_method="Echo"' in text


def test_oversize_message_is_refused_and_server_keeps_serving() -> None:
    settings = test_settings(max_message_bytes=64 * 1024)
    with (
        running_server([echo.binding()], settings=settings) as srv,
        channel_to(srv, max_message_bytes=8 * 1024 * 1024) as chan,
    ):
        unary, _, _ = echo.stubs(chan)
        with pytest.raises(grpc.RpcError) as err:
            unary(b"x" * (65 * 1024))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert unary(b"small") == b"small"


def test_stop_flips_health_to_not_serving(server: GrpcServer) -> None:
    server.stop(0)
    # Called in process (the server is stopped); Check uses its context only for an unknown service.
    unused_context = mock.Mock(spec=grpc.ServicerContext)
    check = server.health.Check(health_pb2.HealthCheckRequest(service=""), unused_context)
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_quiet_methods_log_successes_at_debug_failures_at_info_and_count_all() -> None:
    out = io.StringIO()
    logging_json.configure("test", "INFO", stream=out)
    method = f"/{echo.SERVICE}/Echo"
    server = GrpcServer([echo.binding()], test_settings(), quiet_methods=(method,)).start()
    try:
        with channel_to(server) as chan:
            unary, _, _ = echo.stubs(chan)
            assert unary(b"x") == b"x"
            with pytest.raises(grpc.RpcError):
                unary(b"notfound")
    finally:
        server.stop(0)

    logging.getLogger().handlers[-1].flush()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    codes = [x["grpc_code"] for x in lines if x["msg"] == "rpc" and x["grpc_method"] == method]
    assert codes == ["NOT_FOUND"]
    text = generate_latest(server.metrics.registry).decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Echo",grpc_service="test.v1.Echo"} 1.0' in text
    assert 'grpc_code="NOT_FOUND",grpc_method="Echo"' in text


def test_interceptors_wrap_each_method_once_and_still_see_every_call() -> None:
    """Wrappers are built once per method (a per-call rebuild cost CPU on small RPCs); request
    ids, logs and metrics remain per call."""
    built: list[str] = []

    class Counting(ObservabilityInterceptor):
        def _wrap(self, behavior: Behavior, req_stream: bool, resp_stream: bool, method: str) -> Behavior:
            built.append(method)
            return super()._wrap(behavior, req_stream, resp_stream, method)

    seen = GrpcMetrics()
    with running_server([echo.binding()], interceptors=[Counting(seen)]) as srv, channel_to(srv) as chan:
        unary, _, _ = echo.stubs(chan)
        ids: set[str | bytes] = set()
        for i in range(5):
            _, call = unary.with_call(f"x{i}".encode())
            ids.add(dict(call.trailing_metadata())["x-request-id"])
        with pytest.raises(grpc.RpcError):
            unary(b"notfound")
        server_text = generate_latest(srv.metrics.registry).decode()
    assert built == [f"/{echo.SERVICE}/Echo"]
    assert len(ids) == 5
    ok = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Echo",grpc_service="test.v1.Echo"} 5.0'
    assert ok in generate_latest(seen.registry).decode() and ok in server_text
    assert 'grpc_code="NOT_FOUND",grpc_method="Echo",grpc_service="test.v1.Echo"} 1.0' in server_text


def test_a_new_handler_for_a_method_is_wrapped_anew() -> None:
    wrapped = WrappedHandlers(lambda behavior, _rq, _rs, _m: lambda req, ctx: ("wrapped", behavior(req, ctx)))
    first: Handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: 1)
    second: Handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: 2)
    a = wrapped.get(first, "/s/M")
    assert wrapped.get(first, "/s/M") is a
    b = wrapped.get(second, "/s/M")
    assert b is not None and b is not a and b.unary_unary is not None
    behavior: Behavior = b.unary_unary  # called bare: the wrapper only passes its arguments on
    assert behavior(None, None) == ("wrapped", 2)
    assert wrapped.get(None, "/s/M") is None


def test_rich_status_packs_details_and_keeps_the_request_id() -> None:
    token = reqctx.activate(reqctx.RequestContext(request_id="req-7", trace_id="t", method="/s/M"))
    try:
        status = rich_status(grpc.StatusCode.FAILED_PRECONDITION, "blocked", duration_pb2.Duration(seconds=3))
    finally:
        reqctx.deactivate(token)
    assert status.code is grpc.StatusCode.FAILED_PRECONDITION and status.details == "blocked"
    trailers = dict(status.trailing_metadata)
    assert trailers["x-request-id"] == "req-7"
    raw = trailers["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    decoded = status_pb2.Status.FromString(raw)
    assert decoded.code == grpc.StatusCode.FAILED_PRECONDITION.value[0] and decoded.message == "blocked"
    unpacked = duration_pb2.Duration()
    assert decoded.details[0].Unpack(unpacked) and unpacked.seconds == 3
    assert isinstance(decoded.details[0], any_pb2.Any)
