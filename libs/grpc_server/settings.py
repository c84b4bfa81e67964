"""Settings every gRPC server shares, read with the service's prefix (e.g. CAUSEWAY_REGISTRY_)."""

from __future__ import annotations

import dataclasses

from libs.config.settings import setting

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerSettings:
    host: str = setting("HOST", default="127.0.0.1", help="address to bind; 0.0.0.0 in a pod")
    port: int = setting("PORT", default=0, minimum=0, maximum=65535, help="gRPC port; 0 picks one")
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        default=4 * MIB,
        minimum=1024,
        maximum=2**31 - 1,
        help="largest request or response message; bigger ones get RESOURCE_EXHAUSTED",
    )
    max_workers: int = setting("MAX_WORKERS", default=32, minimum=1, help="handler threads")
    max_concurrent_rpcs: int = setting(
        "MAX_CONCURRENT_RPCS",
        default=256,
        minimum=1,
        help="RPCs in flight before new ones get RESOURCE_EXHAUSTED",
    )
    grace_seconds: float = setting(
        "GRACE_SECONDS",
        default=20.0,
        minimum=0,
        help="time in-flight RPCs get on SIGTERM; keep below the pod's terminationGracePeriodSeconds",
    )
    metrics_port: int = setting(
        "METRICS_PORT", default=-1, minimum=-1, maximum=65535, help="Prometheus /metrics port; -1 off"
    )
    log_level: str = setting("LOG_LEVEL", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    reflection: bool = setting("REFLECTION", default=True, help="serve gRPC server reflection")
