"""A real runner for tests: the full app on 127.0.0.1:0 with the auth interceptor and a dev IdP.

By default the runner's ModelSource is an in-memory `LocalSource` (fast, no registry); tests of
the registry path start the real registry and hand no source, so the app builds its RegistryClient.

with runner_harness(tmp_path, source) as run:
    stub = GRPCInferenceServiceStub(run.channel)
    stub.ModelInfer(request, metadata=run.md("alice", ["researcher"]))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.grpc_server.server import GrpcServer
from libs.telemetry.metrics import GrpcMetrics
from libs.testing.grpc_servers import test_settings
from services.gpu_runner.app import RunnerApp, build_app
from services.gpu_runner.config import PREFIX, load_config
from services.gpu_runner.domain.source import ModelSource

MIB = 1024 * 1024


@dataclasses.dataclass
class RunnerHarness:
    app: RunnerApp
    server: GrpcServer
    channel: grpc.Channel
    idp: DevIdentityProvider
    data_dir: Path

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


def runner_env(tmp_path: Path, idp: DevIdentityProvider, **overrides: str) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "runner-token"
    token_file.write_text(idp.service_token("gpu-runner"))
    data = tmp_path / "jobdata"
    data.mkdir(exist_ok=True)
    env = {
        "ENVIRONMENT": "dev",
        "REGISTRY_ADDRESS": "127.0.0.1:1",  # unused unless a test runs against a real registry
        "DATA_DIR": str(tmp_path / "runner"),
        "DEVICE": "cpu",
        "MEMORY_BUDGET_BYTES": str(512 * MIB),
        "MAX_QUEUE_DELAY_MS": "2",
        "GATE_RECHECK_SECONDS": "0",
        "JOB_DATA_ROOTS": str(data),
        "AUTH_JWKS": str(idp.jwks_path),
        "AUTH_ISSUER": idp.issuer,
        "AUTH_AUDIENCE": idp.audience,
        "AUTH_SERVICE_TOKEN_FILE": str(token_file),
    }
    env.update(overrides)
    return {PREFIX + k: v for k, v in env.items()}


@contextlib.contextmanager
def runner_harness(
    tmp_path: Path,
    source: ModelSource | None = None,
    *,
    idp: DevIdentityProvider | None = None,
    max_message_bytes: int = 4 * MIB,
    **overrides: str,
) -> Iterator[RunnerHarness]:
    """`overrides` are runner settings without the prefix, e.g. MAX_BATCH_SIZE="8"."""
    idp = idp or DevIdentityProvider(tmp_path / "idp")
    config = load_config(runner_env(tmp_path, idp, **overrides))
    app = build_app(config, source=source)
    settings = test_settings(max_message_bytes=max_message_bytes, max_workers=64)
    server = GrpcServer(
        app.bindings, settings, interceptors=app.interceptors, metrics=GrpcMetrics(app.metrics.registry)
    ).start()
    app.start_background()
    channel = grpc.insecure_channel(
        server.address,
        options=[("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)],
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield RunnerHarness(app=app, server=server, channel=channel, idp=idp, data_dir=tmp_path / "jobdata")
    finally:
        channel.close()
        server.stop(0)
        app.close()
