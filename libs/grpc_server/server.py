"""The one gRPC server bootstrap every Causeway service uses.

`GrpcServer` builds a server with grpc.health.v1, reflection, the shared interceptors and the
configured message-size limits; `serve()` runs it until SIGTERM/SIGINT and shuts down gracefully:
health flips to NOT_SERVING first (so load balancers stop routing), in-flight RPCs get
`grace_seconds` to finish, new RPCs are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs.grpc_server.interceptors import ErrorMappingInterceptor, ObservabilityInterceptor
from libs.grpc_server.settings import ServerSettings
from libs.telemetry import logging_json
from libs.telemetry.metrics import GrpcMetrics, serve_metrics

log = logging.getLogger("causeway.server")


@dataclasses.dataclass(frozen=True)
class ServiceBinding:
    """A servicer to add: its full proto name (for health/reflection) and how to add it."""

    full_name: str
    add_to_server: Callable[[grpc.Server], None]


class GrpcServer:
    """A started-on-demand gRPC server; `port` is the bound port once `start()` returned."""

    def __init__(
        self,
        bindings: Sequence[ServiceBinding],
        settings: ServerSettings,
        *,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        metrics: GrpcMetrics | None = None,
        quiet_methods: Sequence[str] = (),
    ) -> None:
        """`quiet_methods`: full method names (or prefixes) whose successful calls are logged at DEBUG."""
        self.settings = settings
        self.metrics = metrics or GrpcMetrics()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._bindings = list(bindings)
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc-handler"),
            interceptors=[
                ObservabilityInterceptor(self.metrics, quiet_methods=quiet_methods),
                ErrorMappingInterceptor(),
                *interceptors,
            ],
            options=options,
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        for binding in self._bindings:
            binding.add_to_server(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if settings.reflection:
            names = [b.full_name for b in self._bindings]
            names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, self.server)
        self.port = 0
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def start(self) -> GrpcServer:
        self.port = self.server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        if self.port == 0:
            raise OSError(f"cannot bind {self.settings.host}:{self.settings.port}")
        self.server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        self.health.set("", serving)
        for binding in self._bindings:
            self.health.set(binding.full_name, serving)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Flip health to NOT_SERVING, then stop; in-flight RPCs get `grace` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        self.server.stop(grace).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()


def serve(
    service: str,
    bindings: Sequence[ServiceBinding],
    settings: ServerSettings,
    *,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    on_shutdown: Callable[[], None] | None = None,
    quiet_methods: Sequence[str] = (),
) -> int:
    """Run a service until SIGTERM or SIGINT; returns the process exit code (0 on clean stop)."""
    logging_json.configure(service, settings.log_level)
    server = GrpcServer(bindings, settings, interceptors=interceptors, quiet_methods=quiet_methods).start()
    if settings.metrics_port >= 0:
        metrics_server, _ = serve_metrics(server.metrics.registry, settings.metrics_port, settings.host)
        log.info("metrics", extra={"metrics_port": metrics_server.server_port})
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info("serving", extra={"port": server.port, "host": settings.host, "services": [b.full_name for b in bindings]})
    stop.wait()
    server.stop()
    if on_shutdown is not None:
        on_shutdown()
    log.info("stopped")
    return 0
