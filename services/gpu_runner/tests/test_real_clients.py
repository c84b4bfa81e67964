"""tritonclient.grpc and KServe's InferenceGRPCClient, unchanged, against a real runner.

The clients run in a subprocess (oip_client_probe.py): they bundle their own `inference` protos.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.testing.waiting import wait_until
from services.gpu_runner.tests import fixtures as fx
from services.gpu_runner.tests.harness import runner_harness

PROBE = Path(__file__).with_name("oip_client_probe.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    source = fx.LocalSource()
    source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.add("echo", 1, fx.echo_torchscript(), "TORCHSCRIPT", signature=fx.ECHO_SIGNATURE)
    source.add("lookup", 1, fx.embedding_torchscript(), "TORCHSCRIPT", signature=fx.EMBEDDING_SIGNATURE)
    with runner_harness(tmp_path_factory.mktemp("clients"), source, PRELOAD="tox:1,echo:1,lookup:1") as harness:
        wait_until(lambda: harness.app.readiness.ready, timeout=120, message=lambda: str(harness.app.readiness.pending))
        yield harness


def _probe(kind: str, run) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # keep our protos out of the client
    token = run.token("alice", ["researcher"], teams=["oncology"])
    res = subprocess.run(
        [sys.executable, str(PROBE), kind, run.address, token],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _expected(x) -> list:
    return fx.reference(fx.mlp(), np.array(x, np.float32)).tolist()


def test_tritonclient(run):
    out = _probe("triton", run)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["server_metadata"]["name"] == "causeway-gpu-runner"
    meta = out["model_metadata"]
    assert meta["platform"] == "pytorch_torchscript" and meta["inputs"][0]["shape"] == ["-1", str(fx.IN)]
    np.testing.assert_allclose(out["tox"]["y"], _expected(out["tox"]["x"]), rtol=1e-5, atol=1e-6)
    assert out["tox"]["id"] == "t-1"
    assert out["echo"] == {d: True for d in fx.TORCH_DATATYPES}  # all 13, BF16 via ml_dtypes
    errors = out["errors"]
    assert errors["bad_shape"][0] == "StatusCode.INVALID_ARGUMENT" and "dimension 1 is 5" in errors["bad_shape"][1]
    assert errors["missing_model"][0] == "StatusCode.NOT_FOUND"
    assert errors["no_token"][0] == "StatusCode.UNAUTHENTICATED"
    assert [row[0] for row in out["async"]] == list(range(32))
    for i, y, error in out["async"]:
        assert error is None
        np.testing.assert_allclose(y, _expected([[i] * fx.IN]), rtol=1e-5, atol=1e-5)


def test_kserve_grpc_client(run):
    out = _probe("kserve", run)
    assert out["live"] and out["ready"] and out["model_ready"]
    expected = _expected(out["x"])
    np.testing.assert_allclose(out["typed"]["y"], expected, rtol=1e-5, atol=1e-6)
    assert out["typed"]["id"] == "k-1"
    np.testing.assert_allclose(out["raw"]["y"], expected, rtol=1e-5, atol=1e-6)
    assert out["lookup_shape"] == [1, 2, 3]
    assert out["bad_shape"][0] == "INVALID_ARGUMENT" and "dimension 1 is 3" in out["bad_shape"][1]
