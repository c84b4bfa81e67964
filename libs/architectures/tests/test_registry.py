"""The shared architecture registry: selection, strict checks of the weights, and faithful builds."""

import json
from collections.abc import Callable, Sequence

import pytest
import torch

from libs.architectures import registry
from libs.architectures.registry import ArchitectureError


def _mlp_v1_state(widths: Sequence[int] = (4, 8, 3), seed: int = 0) -> tuple[registry.MLP, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = registry.MLP(list(widths))
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _sequential(
    in_features: int = 4,
    hidden: Sequence[int] = (8,),
    out_features: int = 3,
    activation: Callable[[], torch.nn.Module] = torch.nn.ReLU,
) -> torch.nn.Sequential:
    torch.manual_seed(1)
    layers: list[torch.nn.Module] = []
    sizes = [in_features, *hidden, out_features]
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return torch.nn.Sequential(*layers).eval()


def test_mlp_v1_takes_its_widths_from_the_weights_and_computes_what_was_trained() -> None:
    model, state = _mlp_v1_state((4, 16, 8, 3))
    built = registry.build("mlp/v1", state)
    assert (built.in_features, built.out_features) == (4, 3)
    assert (built.input_name, built.output_name) == ("input", "output")
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.allclose(built.module(x), model(x))


def test_mlp_from_a_header_config_matches_the_sequential_it_was_saved_from() -> None:
    module = _sequential(hidden=(8, 6), activation=torch.nn.GELU)
    config = {"in_features": 4, "hidden": [8, 6], "out_features": 3, "activation": "gelu", "input_name": "x"}
    built = registry.build("mlp", module.state_dict(), config)
    assert built.input_name == "x" and built.output_name == "output"
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(built.module(x), module(x))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update({"evil.weight": torch.zeros(1)}), "unexpected key 'evil.weight'"),
        (lambda s: s.pop("layers.1.bias"), "layer 1 needs both weight and bias"),
        (lambda s: s.update({"layers.1.weight": torch.zeros(3, 5)}), "takes 5 inputs but layer 0 gives 8"),
        (lambda s: s.update({"layers.0.weight": torch.zeros(8, 4, dtype=torch.int64)}), "floating-point"),
        (lambda s: s.update({"layers.5.weight": torch.zeros(3, 3), "layers.5.bias": torch.zeros(3)}), "0..n-1"),
    ],
)
def test_mlp_v1_refuses_weights_that_do_not_fit(
    mutate: Callable[[dict[str, torch.Tensor]], object], message: str
) -> None:
    _, state = _mlp_v1_state()
    mutate(state)
    with pytest.raises(ArchitectureError, match=message):
        registry.build("mlp/v1", state)


def test_mlp_refuses_weights_or_configs_that_do_not_fit() -> None:
    state = _sequential().state_dict()
    with pytest.raises(ArchitectureError, match="wrong shape"):
        registry.build("mlp", state, {"in_features": 5, "hidden": [8], "out_features": 3})
    with pytest.raises(ArchitectureError, match="missing"):
        registry.build("mlp", state, {"in_features": 4, "hidden": [8, 8], "out_features": 3})
    with pytest.raises(ArchitectureError, match="'in_features' must be an integer"):
        registry.build("mlp", state, {"hidden": [8], "out_features": 3})
    with pytest.raises(ArchitectureError, match="activation"):
        registry.build("mlp", state, {"in_features": 4, "hidden": [8], "out_features": 3, "activation": "os.system"})


def test_unknown_or_missing_architectures_name_what_is_allowed() -> None:
    _, state = _mlp_v1_state()
    with pytest.raises(ArchitectureError, match="not allow-listed; known: mlp, mlp/v1"):
        registry.build("resnet", state)
    with pytest.raises(ArchitectureError, match="need an architecture"):
        registry.build("", state)


def test_the_header_wins_over_the_version_tag_and_its_config_must_be_an_object() -> None:
    header = {registry.ARCHITECTURE_KEY: "mlp", registry.CONFIG_KEY: json.dumps({"in_features": 4})}
    assert registry.select(header, {"architecture": "mlp/v1"}) == ("mlp", {"in_features": 4})
    assert registry.select({}, {"architecture": "mlp/v1"}) == ("mlp/v1", {})
    assert registry.select(None, None) == ("", {})
    # The config comes only from the header, which the artifact digest binds.
    assert registry.select({}, {"architecture": "mlp", registry.CONFIG_KEY: "{}"}) == ("mlp", {})
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        registry.select({registry.ARCHITECTURE_KEY: "mlp", registry.CONFIG_KEY: "{"}, {})
    with pytest.raises(ArchitectureError, match="JSON object"):
        registry.select({registry.ARCHITECTURE_KEY: "mlp", registry.CONFIG_KEY: "[1]"}, {})


def test_the_module_stays_self_contained_for_the_validator_sandbox() -> None:
    source = registry.__file__
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert all(
        line.split()[1].split(".")[0]
        in {"__future__", "dataclasses", "itertools", "json", "re", "collections", "typing", "torch"}
        for line in imports
    ), imports
