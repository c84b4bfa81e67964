"""The golden path on one machine, through the CLI against the running stack.

A researcher registers a small torch model with its training baseline and golden set, the
validator checks it in its sandbox, a release manager deploys it to dev (a commit in the local
GitOps repository and a model loaded in the dev runner), a client calls it over the Open
Inference Protocol, QA signs it for test, it is promoted, and the audit chain verifies.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tools.cli import cli_main

FEATURES = 12
USERS = {
    "alice": ("researcher", "oncology"),
    "rita": ("release-manager", ""),
    "quinn": ("qa-approver", ""),
    "audrey": ("reviewer", ""),
}


def make_model(work: Path, seed: int = 7) -> tuple[Path, Path, Path]:
    """Train a tiny classifier on separable synthetic data; TorchScript + train/golden parquet."""
    import pandas as pd
    import torch

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=FEATURES)

    def table(rows: int) -> pd.DataFrame:
        x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
        frame["label"] = (x @ weights > 0).astype(np.int64)
        return frame

    train, golden = table(2000), table(400)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.tensor(train[[f"f{i}" for i in range(FEATURES)]].to_numpy())
    y = torch.tensor(train["label"].to_numpy(), dtype=torch.float32).unsqueeze(1)
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / "classifier.pt"
    torch.jit.save(torch.jit.script(model.eval()), str(model_path))
    train.to_parquet(work / "train.parquet")
    golden.to_parquet(work / "golden.parquet")
    return model_path, work / "train.parquet", work / "golden.parquet"


def _require_passed(run: dict) -> None:
    if run.get("verdict") != "VALIDATION_VERDICT_PASSED":
        failed = [c for c in run.get("checks", []) if c.get("status", "").endswith(("FAILED", "ERROR"))]
        raise RuntimeError(f"validation {run.get('verdict')}: {json.dumps(failed or run, indent=1)}")


def run(stack_dir: Path, work: Path, say: Callable[[str], None] = print, model: str = "tox21") -> dict:
    """Walk the golden path; returns what each step produced (raises on the first failure)."""

    def cli(*args: str, user: str = "") -> Any:  # the command's JSON output, else its text
        out = io.StringIO()
        argv = ["--stack", str(stack_dir)] + (["--as", user] if user else []) + list(args)
        with contextlib.redirect_stdout(out):
            code = cli_main.run(argv)
        if code != 0:
            raise RuntimeError(f"causeway {' '.join(args)} exited {code}")
        text = out.getvalue()
        try:
            return json.loads(text[text.rindex("\n{") + 1 :] if "\n{" in text else text)
        except ValueError:
            return text

    for user, (roles, teams) in USERS.items():
        cli("login", user, "--roles", roles, "--teams", teams)
    model_path, train, golden = make_model(work)
    cli("model", "create", model, "--team", "oncology", "--description", "toxicity classifier", user="alice")
    say(f"registered model {model}")
    version = cli(
        "register",
        model,
        str(model_path),
        "--format",
        "torchscript",
        "--input",
        f"features:FP32:-1,{FEATURES}",
        "--output",
        "probability:FP32:-1,1",
        "--golden",
        str(golden),
        "--label-key",
        "label",
        "--map",
        "features=" + ",".join(f"f{i}" for i in range(FEATURES)),
        "--baseline",
        str(train),
        "--training-run",
        "run-2026-11-21",
        "--metric",
        "accuracy=0.95",
        "--tag",
        "task=binary-classification",
        user="alice",
    )
    number = str(version["ref"]["version"])
    say(f"version {number}: artifact sha256:{version['artifact']['digest']['hex'][:12]}...")
    validation = cli("validate", model, number, "--env", "dev", user="alice")
    _require_passed(validation)
    say(f"validation for dev: {validation['verdict']} (report sha256:{validation['report_digest']['hex'][:12]}...)")
    deployment = cli("deploy", model, number, "--env", "dev", "--cloud", "local", user="rita")
    say(f"deployed to dev: commit {deployment['git_change']['commit_sha'][:12]} ({deployment['state']})")
    row = [float(v) for v in np.linspace(-1, 1, FEATURES)]
    prediction = cli("infer", model, "--env", "dev", "--input", f"features={json.dumps([row])}", user="alice")
    say(f"inference on dev: {prediction}")
    test_validation = cli("validate", model, number, "--env", "test", user="alice")
    _require_passed(test_validation)
    say(f"validation for test: {test_validation['verdict']}")
    approval = cli(
        "approve",
        model,
        number,
        "--env",
        "test",
        "--meaning",
        "approved-for-release",
        "--reason",
        "QA-1234 reviewed report and lineage",
        user="quinn",
    )
    say(f"signed for test by {approval['signer']['subject']}: {approval['statement']}")
    promotion = cli("promote", model, "--from", "dev", "--to", "test", "--cloud", "local", user="rita")
    say(f"promoted to test: commit {promotion['git_change']['commit_sha'][:12]} ({promotion['state']})")
    audit = cli("audit", "verify", user="audrey")
    say(f"audit chain: {audit['verdict']}")
    return {
        "version": version,
        "validation": validation,
        "deployment": deployment,
        "prediction": prediction,
        "approval": approval,
        "promotion": promotion,
        "audit": audit,
    }
