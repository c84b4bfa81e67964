"""Architectures the runner can rebuild from code, so that safetensors weights need no pickle.

A safetensors artifact names its architecture and configuration in its header metadata
(`causeway.architecture`, `causeway.config` as JSON) or, failing that, in the version's tags of
the same names. Adding an architecture is a code change reviewed like any other: the runner only
ever executes modules defined here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from libs.errors.domain_errors import FailedPrecondition
from services.gpu_runner.domain.tensors import Signature, TensorSpec

ARCHITECTURE_KEY = "causeway.architecture"
CONFIG_KEY = "causeway.config"


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[Mapping[str, Any]], Any]  # config -> torch.nn.Module
    signature: Callable[[Mapping[str, Any]], Signature]
    doc: str


def _int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FailedPrecondition(f"architecture config: {key!r} must be a positive integer, got {value!r}")
    return value


_ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")


def _mlp(config: Mapping[str, Any]):
    import torch

    sizes = [_int(config, "in_features")]
    hidden = config.get("hidden", [])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise FailedPrecondition(f"architecture config: 'hidden' must be a list of positive integers, got {hidden!r}")
    sizes += [*hidden, _int(config, "out_features")]
    activation = config.get("activation", "relu")
    if activation not in _ACTIVATIONS:
        raise FailedPrecondition(f"architecture config: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    act = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    layers: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(act[activation]())
    return torch.nn.Sequential(*layers)


def _mlp_signature(config: Mapping[str, Any]) -> Signature:
    return Signature(
        inputs=(TensorSpec(str(config.get("input_name", "input")), "FP32", (-1, _int(config, "in_features"))),),
        outputs=(TensorSpec(str(config.get("output_name", "output")), "FP32", (-1, _int(config, "out_features"))),),
    )


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        "mlp",
        _mlp,
        _mlp_signature,
        "torch.nn.Sequential of Linear layers: in_features, hidden [..], out_features, activation "
        "(relu|gelu|tanh|sigmoid), optional input_name/output_name; state dict keys '0.weight', '0.bias', ...",
    ),
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise FailedPrecondition(
            f"architecture {name!r} is not registered in the runner; registered: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
