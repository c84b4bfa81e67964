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


def _mlp_v1(config: Mapping[str, Any]):
    """`mlp/v1`, the validator's convention: Linear layers `layers.<i>` with ReLU between them."""
    import torch

    widths = config.get("widths")
    if not isinstance(widths, list) or len(widths) < 2 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise FailedPrecondition(f"architecture config: 'widths' must list at least two positive sizes, got {widths!r}")

    class MLPv1(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths))

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = torch.relu(x)
            return x

    return MLPv1()


def _mlp_v1_signature(config: Mapping[str, Any]) -> Signature:
    widths = config["widths"]
    return Signature(
        inputs=(TensorSpec(str(config.get("input_name", "input")), "FP32", (-1, int(widths[0]))),),
        outputs=(TensorSpec(str(config.get("output_name", "output")), "FP32", (-1, int(widths[-1]))),),
    )


def mlp_v1_widths(shapes: Mapping[str, tuple[int, ...]]) -> list[int]:
    """Layer widths of an `mlp/v1` state dict from its tensor shapes (keys layers.<i>.weight [out, in])."""
    weights = {}
    for key, shape in shapes.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2] == "weight" and len(shape) == 2:
            weights[int(parts[1])] = shape
    if not weights or sorted(weights) != list(range(len(weights))):
        raise FailedPrecondition("mlp/v1 weights need layers.0.weight .. layers.<n-1>.weight")
    widths = [int(weights[0][1])]
    for i in range(len(weights)):
        widths.append(int(weights[i][0]))
    return widths


ARCHITECTURES: dict[str, Architecture] = {
    "mlp/v1": Architecture(
        "mlp/v1",
        _mlp_v1,
        _mlp_v1_signature,
        "the validator's mlp/v1: Linear layers 'layers.<i>.weight/bias' with ReLU between; widths from the weights",
    ),
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
