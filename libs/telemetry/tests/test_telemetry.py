import io
import json
import logging

from prometheus_client import generate_latest

from libs.telemetry import context, logging_json
from libs.telemetry.metrics import GrpcMetrics, split_method


def test_traceparent_parsing() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert context.trace_id_from_traceparent(tp) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert context.trace_id_from_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert context.trace_id_from_traceparent("garbage") is None
    assert context.trace_id_from_traceparent(None) is None


def test_request_ids_are_sanitized() -> None:
    assert context.sanitize_request_id("abc-123") == "abc-123"
    assert context.sanitize_request_id("bad id\n{json}") is None
    assert context.sanitize_request_id("x" * 200) is None


def test_json_log_lines_carry_request_context() -> None:
    out = io.StringIO()
    logging_json.configure("svc", "DEBUG", stream=out)
    token = context.activate(context.RequestContext(request_id="r1", trace_id="t1"))
    try:
        logging.getLogger("x").info("hello %s", "world", extra={"model": "m"})
    finally:
        context.deactivate(token)
    logging.getLogger("x").warning("outside")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["msg"] == "hello world"
    assert first["request_id"] == "r1" and first["trace_id"] == "t1"
    assert first["model"] == "m" and first["service"] == "svc" and first["level"] == "info"
    assert "request_id" not in second


def test_red_metrics_are_recorded_per_method_and_code() -> None:
    m = GrpcMetrics()
    m.started("/a.v1.S/Get")
    m.finished("/a.v1.S/Get", "OK", 0.002)
    m.started("/a.v1.S/Get")
    m.finished("/a.v1.S/Get", "NOT_FOUND", 0.004)
    text = generate_latest(m.registry).decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Get",grpc_service="a.v1.S"} 1.0' in text
    assert 'grpc_server_handled_total{grpc_code="NOT_FOUND",grpc_method="Get",grpc_service="a.v1.S"} 1.0' in text
    assert 'grpc_server_handling_seconds_count{grpc_method="Get",grpc_service="a.v1.S"} 2.0' in text
    assert 'grpc_server_in_flight{grpc_method="Get",grpc_service="a.v1.S"} 0.0' in text
    assert split_method("bogus") == ("unknown", "unknown")


def test_method_series_are_resolved_once_and_codes_get_their_own_counter() -> None:
    m = GrpcMetrics()
    get = m.for_method("/a.v1.S/Get")
    assert m.for_method("/a.v1.S/Get") is get and m.for_method("/a.v1.S/Put") is not get
    for code in ("OK", "OK", "UNAVAILABLE"):
        get.started()
        get.finished(code, 0.001)
    text = generate_latest(m.registry).decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Get",grpc_service="a.v1.S"} 2.0' in text
    assert 'grpc_server_handled_total{grpc_code="UNAVAILABLE",grpc_method="Get",grpc_service="a.v1.S"} 1.0' in text
    assert 'grpc_server_in_flight{grpc_method="Get",grpc_service="a.v1.S"} 0.0' in text
