"""Allow-listed model architectures for weight-only formats (safetensors, torch state_dict).

A weights file holds tensors, not code, so the code that gives them meaning must come from
somewhere trusted: this registry, reviewed like any other code. A version selects an entry with
its `architecture` tag (e.g. `mlp/v1`); the name carries a version because changing what a name
builds would silently change what past reports mean. Every builder checks the state dict strictly
(exact keys, shapes that chain) before building, so a weights file can never select or shape
arbitrary code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

MAX_LAYERS = 64
MAX_WIDTH = 1 << 20


class ArchitectureError(ValueError):
    """The weights do not fit the selected architecture (or none was selected)."""


class MLP(nn.Module):
    """`mlp/v1`: Linear layers with ReLU between them and no activation after the last.

    Keys are `layers.<i>.weight` ([out, in]) and `layers.<i>.bias` ([out]) for i = 0..n-1.
    Input: one FP32 tensor [batch, in_features]; output: one FP32 tensor [batch, out_features].
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


def _mlp_widths(state: Mapping[str, torch.Tensor]) -> list[int]:
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


def build_mlp_v1(state: Mapping[str, torch.Tensor]) -> nn.Module:
    widths = _mlp_widths(state)
    model = MLP(widths)
    # assign=True keeps the (possibly memory-mapped) tensors instead of copying them.
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


REGISTRY: dict[str, Callable[[Mapping[str, torch.Tensor]], nn.Module]] = {
    "mlp/v1": build_mlp_v1,
}


def build(name: str, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The allow-listed architecture `name` with `state` loaded; ArchitectureError otherwise."""
    if not name:
        raise ArchitectureError(
            "weights-only formats need the version tag 'architecture' naming one of: " + ", ".join(sorted(REGISTRY))
        )
    builder = REGISTRY.get(name)
    if builder is None:
        raise ArchitectureError(f"architecture {name!r} is not allow-listed; known: {', '.join(sorted(REGISTRY))}")
    return builder(state)
