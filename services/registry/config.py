"""Registry settings: environment variables prefixed CAUSEWAY_REGISTRY_, secrets from *_FILE."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from libs.auth.settings import AuthSettings
from libs.config.settings import Secret, load_sections, setting
from libs.grpc_server.settings import ServerSettings

PREFIX = "CAUSEWAY_REGISTRY_"
REGISTRY_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    data_dir: Path = setting(
        "DATA_DIR", default=Path("var/registry"), help="where the embedded defaults keep sqlite files and artifacts"
    )
    mlflow_uri: str = setting(
        "MLFLOW_URI", default="", help="MLflow registry store URI; default sqlite:///<DATA_DIR>/mlflow.db"
    )
    db_url: Secret | None = setting(
        "DB_URL", default=None, help="SQLAlchemy URL of the registry's own tables (may hold a password)"
    )
    artifact_store: str = setting(
        "ARTIFACT_STORE", default="", help="a directory, file://, s3://bucket/prefix or gs://bucket/prefix"
    )
    max_artifact_bytes: int = setting("MAX_ARTIFACT_BYTES", default=64 * 1024**3, minimum=1)
    policies_file: Path | None = setting(
        "POLICIES_FILE", default=None, help="environment policies YAML; default: the built-in dev/test/prod"
    )
    signing_window_minutes: float = setting(
        "SIGNING_WINDOW_MINUTES",
        default=5.0,
        minimum=0.5,
        maximum=60,
        help="an e-signature needs a token issued this recently (21 CFR 11.200 re-authentication)",
    )
    audit_key: Secret | None = setting("AUDIT_KEY", default=None, help="HMAC key sealing audit events")
    deployer_subjects: tuple[str, ...] = setting(
        "DEPLOYER_SUBJECTS",
        default=("service:deployer",),
        help="token subjects of the deployer service (the only callers that move dev/test/prod aliases)",
    )

    def mlflow_store_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"

    def db_store_url(self) -> str:
        return self.db_url.reveal() if self.db_url else f"sqlite:///{self.data_dir.resolve() / 'registry.db'}"

    def artifact_store_url(self) -> str:
        return self.artifact_store or str(self.data_dir.resolve() / "artifacts")


@dataclasses.dataclass(frozen=True)
class Config:
    registry: RegistrySettings
    server: ServerSettings
    auth: AuthSettings


def load_config(environ: dict[str, str] | None = None) -> Config:
    """All registry settings; raises ConfigError naming every missing or invalid variable."""
    env = dict(os.environ if environ is None else environ)
    from libs.config.settings import ConfigError

    parts, problems = load_sections(
        {"registry": RegistrySettings, "server": ServerSettings, "auth": AuthSettings}, prefix=PREFIX, environ=env
    )
    if problems:
        raise ConfigError(problems)
    if PREFIX + "MAX_MESSAGE_BYTES" not in env:
        # Uploads send chunks of up to 4 MiB plus framing: the shared 4 MiB default is too small here.
        parts["server"] = dataclasses.replace(parts["server"], max_message_bytes=REGISTRY_MAX_MESSAGE_BYTES)
    return Config(**parts)
