"""A real deployer for tests: the full app on 127.0.0.1:0 with auth, against a real registry.

with registry(...) as reg, deployer_harness(tmp_path, reg) as dep:
    stub = DeployerServiceStub(dep.channel)
    stub.DeployModel(request, metadata=dep.md("rm", "release-manager"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

from causeway.deployer.v1 import deployer_service_pb2_grpc
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.grpc_server.server import GrpcServer
from libs.testing.grpc_servers import test_settings
from services.deployer.app import DeployerApp, build_app
from services.deployer.config import load_config
from services.deployer.tests.registry_fixture import Registry


def gitops_source() -> Path:
    for base in (os.environ.get("TEST_SRCDIR", ""), "."):
        for candidate in (Path(base) / "causeway_monorepo" / "gitops", Path(base) / "gitops"):
            if (candidate / "envs").is_dir():
                return candidate
    raise FileNotFoundError("gitops/ not found")


def deployer_env(tmp_path: Path, registry: Registry, **overrides: str) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "deployer.token"
    token_file.write_text(registry.idp.service_token("deployer"))
    env = {
        "CAUSEWAY_DEPLOYER_DATA_DIR": str(tmp_path / "deployer"),
        "CAUSEWAY_DEPLOYER_REGISTRY_ADDRESS": registry.address,
        "CAUSEWAY_DEPLOYER_GIT_SEED_DIR": str(gitops_source()),
        "CAUSEWAY_DEPLOYER_AUTH_JWKS": str(registry.idp.jwks_path),
        "CAUSEWAY_DEPLOYER_AUTH_ISSUER": registry.idp.issuer,
        "CAUSEWAY_DEPLOYER_AUTH_AUDIENCE": registry.idp.audience,
        "CAUSEWAY_DEPLOYER_AUTH_SERVICE_TOKEN_FILE": str(token_file),
        "CAUSEWAY_DEPLOYER_AUDIT_INTERVAL_SECONDS": "0.1",
    }
    env.update({f"CAUSEWAY_DEPLOYER_{k}": v for k, v in overrides.items()})
    return env


@dataclasses.dataclass
class DeployerHarness:
    app: DeployerApp
    server: GrpcServer
    channel: grpc.Channel
    idp: DevIdentityProvider
    env: dict[str, str]

    @property
    def stub(self) -> deployer_service_pb2_grpc.DeployerServiceStub:
        return deployer_service_pb2_grpc.DeployerServiceStub(self.channel)

    def md(self, subject: str = "rm", *roles: str):
        return bearer(self.idp.issue(subject, roles or ("release-manager",), name=subject.title()))

    @property
    def git_dir(self) -> Path:
        return self.app.repo.path

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True, check=True
        ).stdout.strip()


@contextlib.contextmanager
def deployer_harness(tmp_path: Path, registry: Registry, **overrides: str) -> Iterator[DeployerHarness]:
    env = deployer_env(tmp_path, registry, **overrides)
    app = build_app(load_config(env))
    server = GrpcServer(app.bindings, test_settings(), interceptors=app.interceptors).start()
    channel = grpc.insecure_channel(server.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield DeployerHarness(app, server, channel, registry.idp, env)
    finally:
        channel.close()
        server.stop(0)
        app.close()


def deployer_argv() -> list[str]:
    """The deployer binary from Bazel runfiles, else its main module from the checkout."""
    runfiles = Path(os.environ.get("TEST_SRCDIR", "/nonexistent")) / "causeway_monorepo" / "services/deployer/deployer"
    if runfiles.exists():
        return [str(runfiles)]
    return [sys.executable, "-m", "services.deployer.main"]
