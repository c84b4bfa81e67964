"""Wiring: config -> store, repository, clients -> domain -> servicer. Used by main.py and tests."""

from __future__ import annotations

import base64
import dataclasses

import grpc

from libs.audit.publisher import AuditPublisher
from libs.auth.client_tokens import FileTokenSource
from libs.auth.interceptor import AuthInterceptor
from libs.auth.rbac import Authorizer
from libs.auth.settings import token_verifier
from libs.grpc_server.server import ServiceBinding
from services.deployer.api import servicer as api
from services.deployer.api.permissions import METHOD_PERMISSIONS
from services.deployer.clients import git_host
from services.deployer.clients.audit import to_request as audit_request
from services.deployer.clients.registry import RegistryClient
from services.deployer.config import Config
from services.deployer.domain.deployer import Deployer
from services.deployer.domain.progress import Progress
from services.deployer.domain.queries import Queries
from services.deployer.domain.settings import DeployerSettings
from services.deployer.storage.deployments_db import SqlDeploymentStore
from services.deployer.storage.gitops_repo import GitopsRepo


@dataclasses.dataclass
class DeployerApp:
    config: Config
    store: SqlDeploymentStore
    repo: GitopsRepo
    registry_channel: grpc.Channel
    audit: AuditPublisher
    deployer: Deployer
    queries: Queries
    progress: Progress
    bindings: list[ServiceBinding]
    interceptors: list[grpc.ServerInterceptor]
    runtime: object | None = None

    def close(self) -> None:
        self.progress.wait_idle(timeout=10)
        self.progress.close()
        self.audit.stop()
        if self.runtime is not None and hasattr(self.runtime, "close"):
            self.runtime.close()
        self.registry_channel.close()
        self.store.close()


def _auth_interceptor(config: Config) -> AuthInterceptor:
    verifier = token_verifier(config.auth)
    return AuthInterceptor(verifier, Authorizer(METHOD_PERMISSIONS))


def _git_auth(config: Config):
    token = config.deployer.git_token
    if token is None or not config.deployer.git_remote.startswith("http"):
        return None
    # Git over HTTPS takes basic auth; GitHub and GitLab both accept a token as the password.
    basic = base64.b64encode(f"x-access-token:{token.reveal()}".encode()).decode()
    return lambda: f"Authorization: Basic {basic}"


def build_app(config: Config) -> DeployerApp:
    d = config.deployer
    d.data_dir.mkdir(parents=True, exist_ok=True)
    settings = DeployerSettings(
        gitops_prefix=d.gitops_prefix,
        direct_commit_environments=frozenset(d.direct_commit_environments),
        change_request_environments=frozenset(d.change_request_environments),
        runner_image=d.runner_image,
        prometheus_url=d.prometheus_url,
        registry_address=d.runner_registry_address,
        pull_request_base=d.git_branch,
    )
    store = SqlDeploymentStore(d.db_store_url())
    repo = GitopsRepo(d.repository_path(), remote=d.git_remote, branch=d.git_branch, auth_header=_git_auth(config))
    repo.open(seed=d.git_seed_dir, seed_prefix=d.gitops_prefix)
    assert config.auth.service_token_file is not None  # load_config requires it
    tokens = FileTokenSource(config.auth.service_token_file)
    channel = grpc.insecure_channel(d.registry_address)
    registry = RegistryClient(channel, tokens)
    audit = AuditPublisher(store, channel, tokens.metadata, audit_request, interval=d.audit_interval_seconds).start()
    pull_requests = None
    if d.git_host and d.git_token is not None:
        secret = d.git_token
        pull_requests = git_host.make(d.git_host, d.git_host_api_url, d.git_host_repository, secret.reveal)
    runtime = None
    if d.local_runners:
        from services.deployer.clients.local_runtime import LocalRuntime

        runtime = LocalRuntime.from_config(d.local_runners, tokens, registry)
    queries = Queries(settings, store, repo, registry, runtime)
    progress = Progress(settings, store, repo, registry, pull_requests, runtime)
    deployer = Deployer(settings, store, repo, registry, progress, queries, pull_requests)
    progress.recover()
    servicer = api.DeployerServicer(deployer, queries, config.auth.issuer, d.clouds)
    return DeployerApp(
        config=config,
        store=store,
        repo=repo,
        registry_channel=channel,
        audit=audit,
        deployer=deployer,
        queries=queries,
        progress=progress,
        bindings=[api.binding(servicer)],
        interceptors=[_auth_interceptor(config)],
        runtime=runtime,
    )
