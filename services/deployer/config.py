"""Deployer settings: environment variables prefixed CAUSEWAY_DEPLOYER_, secrets from *_FILE."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from libs.auth.settings import AuthSettings
from libs.config.settings import ConfigError, Secret, load_sections, setting
from libs.grpc_server.settings import ServerSettings

PREFIX = "CAUSEWAY_DEPLOYER_"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeployerConfig:
    data_dir: Path = setting("DATA_DIR", default=Path("var/deployer"), help="sqlite database and the GitOps repository")
    db_url: Secret | None = setting("DB_URL", default=None, help="SQLAlchemy URL; default sqlite in DATA_DIR")
    registry_address: str = setting("REGISTRY_ADDRESS", help="host:port of the registry (gates, aliases, audit)")
    clouds: tuple[str, ...] = setting(
        "CLOUDS", default=("aws", "gcp", "local"), help="clouds this deployer writes for (aws, gcp, local)"
    )
    git_repository: Path | None = setting(
        "GIT_REPOSITORY", default=None, help="local bare GitOps repository; default DATA_DIR/gitops.git"
    )
    git_remote: str = setting("GIT_REMOTE", default="", help="remote GitOps repository URL; empty: the local one")
    git_token: Secret | None = setting("GIT_TOKEN", default=None, help="token for the git remote and host API")
    git_branch: str = setting("GIT_BRANCH", default="main", help="the branch Argo CD syncs")
    git_seed_dir: Path | None = setting(
        "GIT_SEED_DIR", default=None, help="a gitops/ tree copied into a new local repository (single machine)"
    )
    gitops_prefix: str = setting("GITOPS_PREFIX", default="gitops", help="directory of the GitOps tree in the repo")
    git_host: str = setting("GIT_HOST", default="", help="github, gitlab, or empty (branches only, no API)")
    git_host_api_url: str = setting("GIT_HOST_API_URL", default="", help="e.g. https://api.github.com")
    git_host_repository: str = setting("GIT_HOST_REPOSITORY", default="", help="owner/name (GitHub) or project path")
    direct_commit_environments: tuple[str, ...] = setting(
        "DIRECT_COMMIT_ENVIRONMENTS", default=("dev",), help="environments committed to directly; others get a PR"
    )
    change_request_environments: tuple[str, ...] = setting(
        "CHANGE_REQUEST_ENVIRONMENTS", default=("prod",), help="environments that need a change_request"
    )
    runner_image: str = setting(
        "RUNNER_IMAGE",
        default="registry.causeway.example/causeway/gpu-runner@sha256:" + "0" * 63 + "4",
        help="gpu-runner image (by digest) that model workloads run",
    )
    runner_registry_address: str = setting(
        "RUNNER_REGISTRY_ADDRESS", default="registry.causeway.svc:50051", help="registry address inside the cluster"
    )
    prometheus_url: str = setting(
        "PROMETHEUS_URL", default="http://prometheus-operated.monitoring.svc:9090", help="for canary analysis"
    )
    local_runners: tuple[str, ...] = setting(
        "LOCAL_RUNNERS",
        default=(),
        help="single machine: role=grpc_host:port@metrics_url entries, roles stable and canary",
    )
    audit_interval_seconds: float = setting("AUDIT_INTERVAL_SECONDS", default=0.5, minimum=0.05)

    def db_store_url(self) -> str:
        return self.db_url.reveal() if self.db_url else f"sqlite:///{self.data_dir.resolve() / 'deployer.db'}"

    def repository_path(self) -> Path:
        if self.git_remote:
            return self.data_dir / "gitops-mirror.git"
        return self.git_repository or self.data_dir / "gitops.git"


@dataclasses.dataclass(frozen=True)
class Config:
    deployer: DeployerConfig
    server: ServerSettings
    auth: AuthSettings


def load_config(environ: dict[str, str] | None = None) -> Config:
    """All deployer settings; raises ConfigError naming every missing or invalid variable."""
    env = dict(os.environ if environ is None else environ)
    parts, problems = load_sections(
        {"deployer": DeployerConfig, "server": ServerSettings, "auth": AuthSettings}, prefix=PREFIX, environ=env
    )
    if not problems:
        d = parts["deployer"]
        for cloud in d.clouds:
            if cloud not in ("aws", "gcp", "local"):
                problems.append(f"{PREFIX}CLOUDS: {cloud!r} is not one of aws, gcp, local")
        for env_name in d.direct_commit_environments + d.change_request_environments:
            if env_name not in ("dev", "test", "prod"):
                problems.append(f"{PREFIX}*_ENVIRONMENTS: {env_name!r} is not one of dev, test, prod")
        if d.git_host and not (d.git_host_api_url and d.git_host_repository and d.git_token):
            problems.append(f"{PREFIX}GIT_HOST needs GIT_HOST_API_URL, GIT_HOST_REPOSITORY and GIT_TOKEN_FILE")
        if "@sha256:" not in d.runner_image:
            problems.append(f"{PREFIX}RUNNER_IMAGE must be pinned by digest (name@sha256:...)")
        if parts["auth"].service_token_file is None:
            problems.append(f"{PREFIX}AUTH_SERVICE_TOKEN_FILE is required: the deployer's own token for the registry")
    if problems:
        raise ConfigError(problems)
    return Config(**parts)
