"""The deployer's domain settings (built from config.py; plain values, no environment access)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DeployerSettings:
    gitops_prefix: str = "gitops"  # where the GitOps tree sits in the repository
    direct_commit_environments: frozenset[str] = frozenset({"dev"})
    change_request_environments: frozenset[str] = frozenset({"prod"})
    runner_image: str = "registry.causeway.example/causeway/gpu-runner@sha256:" + "0" * 63 + "4"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    registry_address: str = "registry.causeway.svc:50051"
    pull_request_base: str = "main"

    def env_dir(self, cloud: str, environment: str) -> str:
        return "/".join(p for p in (self.gitops_prefix, "models", cloud, environment) if p)
