"""The dev stack and the CLI together: start the real registry, drive it with `causeway` commands."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tools.cli import cli_main
from tools.devstack.services import REGISTRY
from tools.devstack.stack import Stack


@pytest.fixture
def stack(tmp_path):
    root = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    with Stack(tmp_path / "stack", binaries_root=__import__("pathlib").Path(root)) as stack:
        stack.start(REGISTRY)
        yield stack


def _cli(stack, *args: str, user: str = "") -> int:
    argv = ["--stack", str(stack.state_dir)] + (["--as", user] if user else []) + list(args)
    return cli_main.run(argv)


def test_register_through_the_cli(stack, tmp_path, capsys):
    manifest = json.loads((stack.state_dir / "stack.json").read_text())
    assert manifest["services"]["registry"].startswith("127.0.0.1:")
    assert _cli(stack, "login", "alice", "--roles", "researcher", "--teams", "oncology") == 0
    assert _cli(stack, "login", "audrey", "--roles", "reviewer") == 0
    assert _cli(stack, "model", "create", "tox21", "--team", "oncology", user="alice") == 0
    weights = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    save_file(
        {"layers.0.weight": torch.randn(1, 4), "layers.0.bias": torch.zeros(1)},
        str(weights),
        metadata={"causeway.architecture": "mlp/v1"},
    )
    import pandas as pd

    train = tmp_path / "train.parquet"
    pd.DataFrame(np.random.default_rng(0).normal(size=(50, 4)), columns=list("abcd")).assign(label=1).to_parquet(train)
    capsys.readouterr()
    code = _cli(
        stack,
        "register",
        "tox21",
        str(weights),
        "--format",
        "safetensors",
        "--input",
        "features:FP32:-1,4",
        "--output",
        "logits:FP32:-1,1",
        "--baseline",
        str(train),
        "--training-run",
        "run-1",
        "--metric",
        "auc=0.9",
        user="alice",
    )
    assert code == 0
    version = json.loads(capsys.readouterr().out)
    assert version["ref"] == {"name": "tox21", "version": "1"}
    assert [f["name"] for f in version["training_baseline"]["features"]] == list("abcd")
    assert version["created_by"]["subject"] == "alice"
    assert _cli(stack, "audit", "verify", user="audrey") == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "CHAIN_VERDICT_INTACT"


def test_cli_errors_are_clear(stack, capsys):
    with pytest.raises(Exception, match="unknown user 'mallory'"):
        _cli(stack, "model", "create", "x", "--team", "t", user="mallory")
