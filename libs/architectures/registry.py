"""Allow-listed model architectures for weight-only formats: one registry for validator and runner.

A weights file (safetensors, a torch state_dict) holds tensors, not code, so the code that gives
them meaning must come from somewhere trusted: this module, reviewed like any other code. The
validator (inside its sandbox) and the runner build models from it, so the code that was
validated is the code that serves.

Which architecture: a safetensors header names it (`causeway.architecture`, with its
`causeway.config` as a JSON object), which the artifact digest binds; otherwise the version's
`architecture` tag. Names carry a version (`mlp/v1`) where changing what a name builds would
change what past reports mean. Every builder checks the weights strictly (exact keys, shapes that
chain, bounded sizes) before anything is built, so a weights file can never select or shape
arbitrary code.

This module must stay self-contained (torch and the standard library only): the validator copies
it into its sandbox next to the worker code.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

ARCHITECTURE_KEY = "causeway.architecture"  # safetensors header metadata
CONFIG_KEY = "causeway.config"  # safetensors header metadata, a JSON object
VERSION_TAG = "architecture"  # the registry version tag used when the header names none

MAX_LAYERS = 64
MAX_WIDTH = 1 << 20
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class ArchitectureError(ValueError):
    """No architecture selected, an unknown one, a bad config, or weights that do not fit it."""


@dataclasses.dataclass(frozen=True)
class Built:
    """A model with its weights loaded, and its one FP32 input and output ([batch, features])."""

    name: str
    module: nn.Module
    input_name: str
    in_features: int
    output_name: str
    out_features: int


class MLP(nn.Module):
    """`mlp/v1`: Linear layers with ReLU between them and no activation after the last.

    Keys are `layers.<i>.weight` ([out, in]) and `layers.<i>.bias` ([out]) for i = 0..n-1; the
    widths come from the weights.
    """

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x


_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(weight|bias)$")


def _mlp_v1_widths(state: Mapping[str, torch.Tensor]) -> list[int]:
    indices: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _LAYER_KEY.match(key)
        if not match:
            raise ArchitectureError(f"mlp/v1: unexpected key {key!r} (only layers.<i>.weight / layers.<i>.bias)")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ArchitectureError(f"mlp/v1: {key} must be a floating-point tensor")
        indices.setdefault(int(match.group(1)), {})[match.group(2)] = value
    count = len(indices)
    if count == 0 or count > MAX_LAYERS or sorted(indices) != list(range(count)):
        raise ArchitectureError(f"mlp/v1: layers must be numbered 0..n-1 with 1 <= n <= {MAX_LAYERS}")
    widths: list[int] = []
    for i in range(count):
        parts = indices[i]
        if set(parts) != {"weight", "bias"}:
            raise ArchitectureError(f"mlp/v1: layer {i} needs both weight and bias")
        weight, bias = parts["weight"], parts["bias"]
        if weight.dim() != 2 or bias.dim() != 1 or bias.shape[0] != weight.shape[0]:
            raise ArchitectureError(f"mlp/v1: layer {i} has weight {list(weight.shape)} and bias {list(bias.shape)}")
        out_f, in_f = int(weight.shape[0]), int(weight.shape[1])
        if max(out_f, in_f) > MAX_WIDTH:
            raise ArchitectureError(f"mlp/v1: layer {i} is wider than {MAX_WIDTH}")
        if widths and widths[-1] != in_f:
            raise ArchitectureError(f"mlp/v1: layer {i} takes {in_f} inputs but layer {i - 1} gives {widths[-1]}")
        if not widths:
            widths.append(in_f)
        widths.append(out_f)
    return widths


def _positive(config: Mapping[str, Any], key: str, name: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WIDTH:
        raise ArchitectureError(f"{name}: config {key!r} must be an integer in 1..{MAX_WIDTH}, got {value!r}")
    return value


def _build_mlp_v1(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> tuple[nn.Module, list[int]]:
    widths = _mlp_v1_widths(state)
    model = MLP(widths)
    # assign=True keeps the (possibly memory-mapped) tensors instead of copying them.
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=True)
    return model, widths


def _build_mlp(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> tuple[nn.Module, list[int]]:
    """`mlp`: torch.nn.Sequential of Linear layers (keys `<2i>.weight`, `<2i>.bias`) from a config:
    in_features, hidden [..], out_features, activation (relu|gelu|tanh|sigmoid)."""
    hidden = config.get("hidden", [])
    if not isinstance(hidden, list) or len(hidden) >= MAX_LAYERS:
        raise ArchitectureError(f"mlp: config 'hidden' must be a list of fewer than {MAX_LAYERS} sizes, got {hidden!r}")
    widths = [_positive(config, "in_features", "mlp")]
    widths += [_positive({"hidden": h}, "hidden", "mlp") for h in hidden]
    widths.append(_positive(config, "out_features", "mlp"))
    activation = config.get("activation", "relu")
    if activation not in _ACTIVATIONS:
        raise ArchitectureError(f"mlp: config 'activation' must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    model = nn.Sequential(*layers)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    if expected != given:
        missing = sorted(set(expected) - set(given))
        unexpected = sorted(set(given) - set(expected))
        misshapen = sorted(k for k in set(expected) & set(given) if expected[k] != given[k])
        raise ArchitectureError(
            f"mlp: the weights do not fit the config: missing {missing}, unexpected {unexpected}, "
            f"wrong shape {misshapen}"
        )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=True)
    return model, widths


_BUILDERS: dict[str, Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], tuple[nn.Module, list[int]]]] = {
    "mlp/v1": _build_mlp_v1,
    "mlp": _build_mlp,
}


def names() -> list[str]:
    return sorted(_BUILDERS)


def select(metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None) -> tuple[str, dict[str, Any]]:
    """(name, config) from a safetensors header first, else from the version's `architecture` tag."""
    metadata, tags = metadata or {}, tags or {}
    name = metadata.get(ARCHITECTURE_KEY) or tags.get(VERSION_TAG) or ""
    raw = metadata.get(CONFIG_KEY) or "{}"
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise ArchitectureError(f"{CONFIG_KEY} in the file's header is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ArchitectureError(f"{CONFIG_KEY} in the file's header must be a JSON object")
    return name, config


def build(name: str, state: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None) -> Built:
    """The allow-listed architecture `name` with `state` loaded (strictly); ArchitectureError otherwise."""
    if not name:
        raise ArchitectureError(
            f"weight-only formats need an architecture: {ARCHITECTURE_KEY!r} in the safetensors header or the "
            f"version tag {VERSION_TAG!r}, naming one of: {', '.join(names())}"
        )
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ArchitectureError(f"architecture {name!r} is not allow-listed; known: {', '.join(names())}")
    config = dict(config or {})
    module, widths = builder(state, config)
    return Built(
        name=name,
        module=module.eval(),
        input_name=str(config.get("input_name", "input")),
        in_features=widths[0],
        output_name=str(config.get("output_name", "output")),
        out_features=widths[-1],
    )
