"""Prometheus RED metrics for gRPC servers (rate, errors, duration), one registry per server.

A registry per server (not the process-global default) keeps several servers in one test process
apart and lets each service add its own metrics next to these.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# 1 ms to 60 s: inference calls sit at the bottom, uploads and validations at the top.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GrpcMetrics:
    """grpc_server_handled_total, grpc_server_handling_seconds, grpc_server_in_flight."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, from the call to its last response message.",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight",
            "RPCs being handled now.",
            ["grpc_service", "grpc_method"],
            registry=self.registry,
        )
        self._methods: dict[str, MethodMetrics] = {}

    def for_method(self, full_method: str) -> MethodMetrics:
        """The method's labelled series, resolved once (a labels() lookup costs several µs per call)."""
        found = self._methods.get(full_method)
        if found is None:
            found = self._methods.setdefault(full_method, MethodMetrics(self, *split_method(full_method)))
        return found

    def started(self, full_method: str) -> None:
        self.for_method(full_method).started()

    def finished(self, full_method: str, code: str, seconds: float) -> None:
        self.for_method(full_method).finished(code, seconds)


class MethodMetrics:
    """One method's in-flight gauge, latency histogram and per-code counters."""

    def __init__(self, metrics: GrpcMetrics, service: str, method: str) -> None:
        self._handled = metrics.handled
        self._labels = (service, method)
        self._in_flight = metrics.in_flight.labels(service, method)
        self._latency = metrics.latency.labels(service, method)
        self._by_code: dict[str, Counter] = {}

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, code: str, seconds: float) -> None:
        self._in_flight.dec()
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code.setdefault(code, self._handled.labels(*self._labels, code))
        counter.inc()
        self._latency.observe(seconds)


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """Expose `registry` on http://host:port/metrics; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry)
