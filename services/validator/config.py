"""Validator settings: environment variables prefixed CAUSEWAY_VALIDATOR_, secrets from *_FILE."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from libs.auth.settings import AuthSettings
from libs.config.settings import ConfigError, Secret, load_sections, setting
from libs.grpc_server.settings import ServerSettings

PREFIX = "CAUSEWAY_VALIDATOR_"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidatorSettings:
    data_dir: Path = setting("DATA_DIR", default=Path("var/validator"), help="where the sqlite run store lives")
    db_url: Secret | None = setting(
        "DB_URL", default=None, help="SQLAlchemy URL of the run store (may hold a password); default sqlite in DATA_DIR"
    )
    policies_dir: Path | None = setting(
        "POLICIES_DIR", default=None, help="directory of policy YAML files; default: the built-in dev/test/prod"
    )
    registry_address: str = setting("REGISTRY_ADDRESS", help="host:port of the registry's gRPC API")
    registry_timeout_seconds: float = setting("REGISTRY_TIMEOUT_SECONDS", default=15.0, minimum=0.1, maximum=600)
    work_dir: Path | None = setting(
        "WORK_DIR",
        default=None,
        help="where fetched artifacts are staged for the sandbox; every ancestor must be traversable by the "
        "sandbox user (so not under /root); default <DATA_DIR>/work",
    )
    max_concurrent_runs: int = setting("MAX_CONCURRENT_RUNS", default=1, minimum=1, maximum=64)
    max_queued_runs: int = setting("MAX_QUEUED_RUNS", default=64, minimum=1, maximum=100_000)
    sandbox_bwrap: str = setting("SANDBOX_BWRAP", default="/usr/bin/bwrap", help="bubblewrap binary")
    sandbox_setpriv: str = setting("SANDBOX_SETPRIV", default="/usr/bin/setpriv", help="util-linux setpriv")
    sandbox_prlimit: str = setting("SANDBOX_PRLIMIT", default="/usr/bin/prlimit", help="util-linux prlimit")
    sandbox_uid: int = setting("SANDBOX_UID", default=65534, minimum=1, help="uid the worker runs as (not 0)")
    sandbox_gid: int = setting("SANDBOX_GID", default=65534, minimum=1, help="gid the worker runs as (not 0)")
    sandbox_max_open_files: int = setting("SANDBOX_MAX_OPEN_FILES", default=256, minimum=16)
    sandbox_max_processes: int = setting(
        "SANDBOX_MAX_PROCESSES", default=512, minimum=8, help="RLIMIT_NPROC of the sandbox uid (threads count)"
    )
    sandbox_tmpfs_bytes: int = setting("SANDBOX_TMPFS_BYTES", default=64 * 1024 * 1024, minimum=1024 * 1024)
    worker_python: str = setting("WORKER_PYTHON", default="", help="worker interpreter; default: the service's own")
    worker_runtime_paths: tuple[str, ...] = setting(
        "WORKER_RUNTIME_PATHS",
        default=(),
        help="comma-separated read-only binds; default: derived from the interpreter",
    )
    worker_python_paths: tuple[str, ...] = setting(
        "WORKER_PYTHON_PATHS", default=(), help="extra sys.path entries of the worker (e.g. /app/site-packages)"
    )
    worker_threads: int = setting("WORKER_THREADS", default=1, minimum=1, maximum=64, help="fixed for reproducibility")

    def store_url(self) -> str:
        return self.db_url.reveal() if self.db_url else f"sqlite:///{self.data_dir.resolve() / 'validator.db'}"

    def work_path(self) -> Path:
        return (self.work_dir or self.data_dir / "work").resolve()


@dataclasses.dataclass(frozen=True)
class Config:
    validator: ValidatorSettings
    server: ServerSettings
    auth: AuthSettings


def load_config(environ: dict[str, str] | None = None) -> Config:
    """All validator settings; raises ConfigError naming every missing or invalid variable."""
    env = dict(os.environ if environ is None else environ)
    parts, problems = load_sections(
        {"validator": ValidatorSettings, "server": ServerSettings, "auth": AuthSettings}, prefix=PREFIX, environ=env
    )
    if "auth" in parts and parts["auth"].service_token_file is None:
        problems.append(
            f"{PREFIX}AUTH_SERVICE_TOKEN_FILE is required: the validator's own token for calling the registry"
        )
    if problems:
        raise ConfigError(problems)
    return Config(**parts)
