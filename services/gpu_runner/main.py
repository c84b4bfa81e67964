"""The GPU runner process: config -> app -> gRPC server until SIGTERM.

This mirrors libs.grpc_server.serve() with two additions the runner needs: its own metrics
(batching, memory, jobs) share the RED metrics' registry on the /metrics port, and the health
status follows readiness (NOT_SERVING until the preloaded models are READY, and while draining).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from grpc_health.v1 import health_pb2

from libs.config.settings import ConfigError
from libs.grpc_server.server import GrpcServer
from libs.telemetry import logging_json
from libs.telemetry.metrics import GrpcMetrics, serve_metrics
from services.gpu_runner.api.oip_servicer import QUIET_METHODS
from services.gpu_runner.api.oip_servicer import SERVICE_NAME as OIP_SERVICE
from services.gpu_runner.app import build_app
from services.gpu_runner.config import load_config

log = logging.getLogger("causeway.server")


def main() -> int:
    # Before torch loads (the app imports it lazily): OpenMP worker threads that spin after every
    # forward pass starve the gRPC and batching threads on small hosts (measured on 2 cores: 670 ->
    # 220 us per request). Set OMP_WAIT_POLICY=ACTIVE where cores are plentiful and batches large.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        config = load_config()
    except ConfigError as err:
        print(json.dumps({"level": "error", "service": "gpu-runner", "msg": str(err)}), file=sys.stderr)
        return 2
    logging_json.configure("gpu-runner", config.server.log_level)
    app = build_app(config)
    server = GrpcServer(
        app.bindings,
        config.server,
        interceptors=app.interceptors,
        metrics=GrpcMetrics(app.metrics.registry),
        quiet_methods=QUIET_METHODS,
    ).start()

    def on_ready(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", OIP_SERVICE):
            server.health.set(name, status)

    on_ready(False)
    app.readiness.listeners.append(on_ready)
    app.start_background()
    if config.server.metrics_port >= 0:
        metrics_server, _ = serve_metrics(app.metrics.registry, config.server.metrics_port, config.server.host)
        log.info("metrics", extra={"metrics_port": metrics_server.server_port})
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "serving",
        extra={
            "port": server.port,
            "host": config.server.host,
            "environment": config.runner.environment.value,
            "device": app.models.device.label,
            "memory_budget_bytes": app.models.budget.budget_bytes,
        },
    )
    stop.wait()
    app.readiness.draining()
    server.stop()
    app.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
