"""GPU runner settings: environment variables prefixed CAUSEWAY_GPU_RUNNER_, secrets from *_FILE."""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path

from libs.auth.settings import AuthSettings
from libs.config.settings import ConfigError, load_sections, setting
from libs.grpc_server.settings import ServerSettings

PREFIX = "CAUSEWAY_GPU_RUNNER_"


class Environment(enum.Enum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class DevicePreference(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    environment: Environment = setting(
        "ENVIRONMENT", help="the environment this runner serves; only versions passing its gates load"
    )
    registry_address: str = setting("REGISTRY_ADDRESS", help="host:port of the registry (models, gates, artifacts)")
    registry_timeout_seconds: float = setting("REGISTRY_TIMEOUT_SECONDS", default=30.0, minimum=1)
    data_dir: Path = setting("DATA_DIR", default=Path("var/gpu_runner"), help="artifact cache (private to the runner)")
    device: DevicePreference = setting(
        "DEVICE", default=DevicePreference.AUTO, help="auto (CUDA if present), cpu, cuda"
    )
    memory_budget_bytes: int = setting(
        "MEMORY_BUDGET_BYTES", default=0, minimum=0, help="device memory models may hold; 0: a fraction of the device"
    )
    memory_budget_fraction: float = setting(
        "MEMORY_BUDGET_FRACTION", default=0.5, minimum=0.01, maximum=0.95, help="used when MEMORY_BUDGET_BYTES is 0"
    )
    cache_max_bytes: int = setting(
        "CACHE_MAX_BYTES",
        default=50 * 1024**3,
        minimum=0,
        help="artifact cache limit on disk; least recently used blobs of unloaded models go first; 0: none",
    )
    evict_idle: bool = setting("EVICT_IDLE", default=True, help="evict idle models (LRU) to make room for a load")
    max_batch_size: int = setting("MAX_BATCH_SIZE", default=32, minimum=1, help="default dynamic batch size")
    max_queue_delay_ms: float = setting(
        "MAX_QUEUE_DELAY_MS",
        default=0.5,
        minimum=0,
        maximum=10_000,
        help="longest wait for batch-mates while traffic flows (a model idle this long runs a request at once);"
        " 0: batch only what queued while the model ran",
    )
    max_queued_requests: int = setting("MAX_QUEUED_REQUESTS", default=1024, minimum=1, help="per model")
    unload_grace_seconds: float = setting("UNLOAD_GRACE_SECONDS", default=30.0, minimum=0)
    gate_recheck_seconds: float = setting(
        "GATE_RECHECK_SECONDS", default=300.0, minimum=0, help="re-ask gates of loaded models this often; 0: never"
    )
    preload: tuple[str, ...] = setting("PRELOAD", default=(), help="name:version,... to load at start (readiness)")
    batch_slots: int = setting("BATCH_SLOTS", default=2, minimum=1, help="device slots for batch jobs")
    team_max_slots: int = setting("TEAM_MAX_SLOTS", default=1, minimum=0, help="default per-team concurrent slots")
    team_max_queued: int = setting("TEAM_MAX_QUEUED", default=16, minimum=0, help="default per-team queued jobs")
    job_data_roots: tuple[Path, ...] = setting(
        "JOB_DATA_ROOTS", default=(), help="directories file:// job inputs/outputs must lie in; empty: no file://"
    )
    token_cache_seconds: float = setting(
        "TOKEN_CACHE_SECONDS", default=60.0, minimum=0, maximum=600, help="trust a verified token this long"
    )
    torch_threads: int = setting("TORCH_THREADS", default=0, minimum=0, help="intra-op threads; 0: torch default")

    def preload_refs(self) -> list[tuple[str, int]]:
        refs = []
        for item in self.preload:
            name, _, version = item.rpartition(":")
            refs.append((name, int(version)))
        return refs


@dataclasses.dataclass(frozen=True)
class Config:
    runner: RunnerSettings
    server: ServerSettings
    auth: AuthSettings


def load_config(environ: dict[str, str] | None = None) -> Config:
    """All runner settings; raises ConfigError naming every missing or invalid variable."""
    env = dict(os.environ if environ is None else environ)
    parts, problems = load_sections(
        {"runner": RunnerSettings, "server": ServerSettings, "auth": AuthSettings}, prefix=PREFIX, environ=env
    )
    if "auth" in parts and parts["auth"].service_token_file is None:
        problems.append(f"{PREFIX}AUTH_SERVICE_TOKEN_FILE is required: the runner's token for calls to the registry")
    if "runner" in parts:
        for item in parts["runner"].preload:
            name, _, version = item.rpartition(":")
            if not name or not version.isdigit() or int(version) < 1:
                problems.append(f"{PREFIX}PRELOAD: {item!r} must be name:version with a version >= 1")
    if problems:
        raise ConfigError(problems)
    return Config(**parts)
