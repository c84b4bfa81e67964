"""A real registry for tests: the full app on 127.0.0.1:0 with the auth interceptor and a dev IdP.

with registry_harness(tmp_path) as reg:
    stub = RegistryServiceStub(reg.channel)
    stub.CreateRegisteredModel(req, metadata=reg.md("alice", ["researcher"], teams=["oncology"]))
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.grpc_server.server import GrpcServer
from libs.testing.grpc_servers import test_settings
from services.registry.app import RegistryApp, build_app
from services.registry.config import load_config
from services.registry.domain.artifacts import ArtifactRecord
from services.registry.domain.records import ActorRecord


@dataclasses.dataclass
class RegistryHarness:
    app: RegistryApp
    server: GrpcServer
    channel: grpc.Channel
    idp: DevIdentityProvider
    env: dict[str, str]

    @property
    def address(self) -> str:
        return self.server.address

    def token(self, subject: str, roles: Iterable[str], teams: Iterable[str] = (), **kwargs) -> str:
        return self.idp.issue(subject, roles, teams=teams, **kwargs)

    def md(self, subject: str, roles: Iterable[str], teams: Iterable[str] = (), **kwargs):
        """Call metadata with a fresh bearer token for `subject`."""
        return bearer(self.token(subject, roles, teams, **kwargs))

    def service_md(self, service: str):
        return bearer(self.idp.service_token(service))

    def put_blob(self, data: bytes, layout: str = "FILE") -> str:
        """Store bytes directly in the blob store (for tests that are not about uploads)."""
        digest = hashlib.sha256(data).hexdigest()
        self.app.blobs.put([data], digest=digest, size=len(data))
        # ---- artifacts: a blob is an artifact once recorded (domain/artifacts.py); no audit event here ----
        if self.app.artifacts is not None:
            uploader = ActorRecord(subject="harness", display_name="test harness", kind="service")
            now = dt.datetime.now(dt.UTC)
            self.app.artifacts.index.insert_if_absent(ArtifactRecord(digest, len(data), layout, "", uploader, now))
        # ---- end artifacts ----
        return digest


def registry_env(tmp_path: Path, idp: DevIdentityProvider, **overrides: str) -> dict[str, str]:
    env = {
        "CAUSEWAY_REGISTRY_DATA_DIR": str(tmp_path / "registry"),
        "CAUSEWAY_REGISTRY_AUTH_JWKS": str(idp.jwks_path),
        "CAUSEWAY_REGISTRY_AUTH_ISSUER": idp.issuer,
        "CAUSEWAY_REGISTRY_AUTH_AUDIENCE": idp.audience,
    }
    env.update({f"CAUSEWAY_REGISTRY_{k}": v for k, v in overrides.items()})
    return env


_mlflow_template: Path | None = None


def _seed_mlflow_db(data_dir: Path) -> None:
    """Copy a once-migrated empty MLflow sqlite database: MLflow's migrations take ~1 s per test."""
    global _mlflow_template
    if _mlflow_template is None:
        from services.registry.storage.mlflow_registry import MlflowRegistry

        template_dir = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        MlflowRegistry(f"sqlite:///{template_dir / 'mlflow.db'}")
        _mlflow_template = template_dir / "mlflow.db"
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_mlflow_template, data_dir / "mlflow.db")


@contextlib.contextmanager
def registry_harness(tmp_path: Path, **overrides: str) -> Iterator[RegistryHarness]:
    """`overrides` are registry settings without the prefix, e.g. DB_URL_FILE=..., MLFLOW_URI=..."""
    idp = DevIdentityProvider(tmp_path / "idp")
    env = registry_env(tmp_path, idp, **overrides)
    if "MLFLOW_URI" not in overrides:
        _seed_mlflow_db(Path(env["CAUSEWAY_REGISTRY_DATA_DIR"]))
    config = load_config(env)
    app = build_app(config)
    server = GrpcServer(app.bindings, test_settings(max_message_bytes=8 * 1024 * 1024), interceptors=app.interceptors)
    server.start()
    channel = grpc.insecure_channel(server.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield RegistryHarness(app=app, server=server, channel=channel, idp=idp, env=env)
    finally:
        channel.close()
        server.stop(0)
        app.close()
