"""The services of the single-machine stack, in start order.

registry → validator → one gpu-runner per environment (dev, test, prod; the deployer's local
runtime loads models into them) → deployer, whose LOCAL_RUNNERS name those runners.
"""

from __future__ import annotations

from tools.devstack.stack import ServiceSpec, Stack

ENVIRONMENTS = ("dev", "test", "prod")

REGISTRY = ServiceSpec(name="registry", binary="services/registry/registry", prefix="CAUSEWAY_REGISTRY_")


def _needs_registry(prefix: str, **extra: str):
    def env(stack: Stack) -> dict[str, str]:
        return {f"{prefix}REGISTRY_ADDRESS": stack.address("registry")} | {prefix + k: v for k, v in extra.items()}

    return env


VALIDATOR = ServiceSpec(
    name="validator",
    binary="services/validator/validator",
    prefix="CAUSEWAY_VALIDATOR_",
    env=_needs_registry("CAUSEWAY_VALIDATOR_"),
    identity="validator",
)


def runner(environment: str) -> ServiceSpec:
    """A gpu-runner serving `environment`; only versions passing that environment's gates load."""
    return ServiceSpec(
        name=f"runner-{environment}",
        binary="services/gpu_runner/gpu_runner",
        prefix="CAUSEWAY_GPU_RUNNER_",
        env=_needs_registry("CAUSEWAY_GPU_RUNNER_", ENVIRONMENT=environment, METRICS_PORT="0"),
        identity="gpu-runner",
    )


def _deployer_env(stack: Stack) -> dict[str, str]:
    entries = []
    for environment in ENVIRONMENTS:
        name = f"runner-{environment}"
        if name in stack.processes:
            process = stack.processes[name]
            (metrics,) = process.log_entries("metrics")
            entries.append(f"{environment}/stable={process.address}@http://127.0.0.1:{metrics['metrics_port']}/metrics")
    return {
        "CAUSEWAY_DEPLOYER_REGISTRY_ADDRESS": stack.address("registry"),
        "CAUSEWAY_DEPLOYER_LOCAL_RUNNERS": ",".join(entries),
    }


DEPLOYER = ServiceSpec(
    name="deployer",
    binary="services/deployer/deployer",
    prefix="CAUSEWAY_DEPLOYER_",
    env=_deployer_env,
    identity="deployer",
)


def all_services() -> list[ServiceSpec]:
    return [REGISTRY, VALIDATOR, *(runner(e) for e in ENVIRONMENTS), DEPLOYER]
