"""The four services of the single-machine stack, in start order."""

from __future__ import annotations

from tools.devstack.stack import ServiceSpec, Stack

REGISTRY = ServiceSpec(
    name="registry",
    binary="services/registry/registry",
    prefix="CAUSEWAY_REGISTRY_",
    env=lambda stack: {"CAUSEWAY_REGISTRY_MAX_MESSAGE_BYTES": str(8 * 1024 * 1024)},
)


def _needs_registry(prefix: str):
    def env(stack: Stack) -> dict[str, str]:
        return {f"{prefix}REGISTRY_ADDRESS": stack.address("registry")}

    return env


VALIDATOR = ServiceSpec(
    name="validator",
    binary="services/validator/validator",
    prefix="CAUSEWAY_VALIDATOR_",
    env=_needs_registry("CAUSEWAY_VALIDATOR_"),
    identity="validator",
)
