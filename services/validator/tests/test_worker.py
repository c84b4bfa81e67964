"""The sandboxed worker on real model files of every format, good and hostile (no registry)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from services.validator.domain.policy_model import SandboxLimits
from services.validator.domain.ports import WorkerStopped
from services.validator.tests.support import models
from services.validator.tests.support.workers import SANDBOX_UID
from services.validator.worker import runtime
from services.validator.worker.launcher import Sandbox, SandboxSettings
from services.validator.worker.pool import SandboxWorkers

LIMITS = SandboxLimits(memory_bytes=3 << 30, cpu_seconds=60, max_file_bytes=8 << 20, wall_seconds=120)
X = {"name": "x", "datatype": "FP32", "shape": [-1, models.FEATURES]}
P = {"name": "p", "datatype": "FP32", "shape": [-1, 1]}
STEPS = {
    "features": {"edges": {f["name"]: f["edges"] for f in models.baseline_features()}},
    "signature": {"batch_size": 4},
    "predict": {"batch_size": 128},
    "determinism": {"runs": 3, "rows": 32},
    "latency": {"batch_size": 1, "requests": 20, "warmup": 2},
    "memory": {},
}


@pytest.fixture(scope="module")
def workers():
    work = Path(tempfile.mkdtemp(prefix="causeway-worker-test-", dir="/tmp"))
    python = runtime.default_python()
    pool = SandboxWorkers(
        Sandbox(SandboxSettings(python=python, runtime_paths=runtime.default_runtime_paths(python))), work
    )
    pool.prepare()
    pool.preflight()
    yield pool
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def mlp():
    return models.train_mlp()


def stage(pool: SandboxWorkers, run_dir: Path, name: str, data: bytes) -> Path:
    path = run_dir / name
    path.write_bytes(data)
    pool.seal(path)
    return path


def start(pool, data: bytes, fmt: str, ext: str, steps=STEPS, limits=LIMITS, golden=True, **job):
    run_dir = pool.new_run_dir("t")
    model = stage(pool, run_dir, "model" + ext, data)
    files = [(model, "/input/" + model.name)]
    spec = {
        "kind": "model",
        "artifact": {"path": "/input/" + model.name, "format": fmt},
        "inputs": [X],
        "outputs": [P],
        "input_names": ["x"],
        "output_names": ["p"],
        "steps": steps,
        "seed": 0,
        **job,
    }
    if golden:
        g = stage(pool, run_dir, "golden.parquet", models.golden_parquet())
        files.append((g, "/input/golden.parquet"))
        spec["golden"] = {
            "path": "/input/golden.parquet",
            "format": "parquet",
            "input_mapping": {"x": ",".join(models.FEATURE_NAMES)},
            "label_key": "label",
        }
    session = pool.start(spec, files, limits)
    session.wait_ready(120)
    return session


@pytest.mark.parametrize("fmt", ["torchscript", "safetensors", "torch_state_dict", "onnx"])
def test_every_safe_format_loads_and_is_measured(workers, mlp, fmt):
    if fmt == "torchscript":
        data, ext, job = models.torchscript(models.Probabilities(mlp)), ".pt", {}
    elif fmt == "safetensors":
        data, ext, job = models.safetensors_bytes(mlp), ".safetensors", {"architecture": "mlp/v1"}
    elif fmt == "torch_state_dict":
        data, ext, job = models.state_dict_bytes(mlp), ".pt", {"architecture": "mlp/v1"}
    else:
        data, ext, job = models.onnx_bytes(mlp), ".onnx", {}
    session = start(workers, data, fmt, ext, **job)
    try:
        assert session.ready_info["sandbox"]["uid"] == SANDBOX_UID
        load = session.result("load", 60)
        assert load.ok, load.error
        signature = session.result("signature", 60).result
        assert signature["outputs"] == [{"datatype": "FP32", "shape": [4, 1]}]
        if fmt == "onnx":
            assert signature["artifact_inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 12]}]
        predict = session.result("predict", 60).result
        assert predict["rows"] == 400 and len(predict["labels"]) == 400
        scores = np.asarray(predict["predictions"]).reshape(-1)
        expected = mlp(torch.from_numpy(models.dataset(400, seed=7)[0])).detach().numpy().reshape(-1)
        if fmt in ("torchscript", "onnx"):
            expected = 1 / (1 + np.exp(-expected))
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
        determinism = session.result("determinism", 60).result
        assert determinism["max_abs_diff"] == 0.0 and determinism["bitwise_equal"]
        assert session.result("latency", 60).result["latency_p95_ms"] > 0
        assert session.result("memory", 60).result["peak_memory_bytes"] > 50 << 20
        features = session.result("features", 60).result["features"]
        assert sorted(features) == sorted(models.FEATURE_NAMES) and features["f0"]["count"] == 400
    finally:
        session.close()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned",))


def test_weights_only_loading_refuses_a_pickle_payload(workers, mlp):
    buffer = io.BytesIO()
    torch.save({**mlp.state_dict(), "evil": _Evil()}, buffer)
    session = start(
        workers, buffer.getvalue(), "torch_state_dict", ".pt", steps={}, golden=False, architecture="mlp/v1"
    )
    try:
        load = session.result("load", 60)
        assert not load.ok and "Weights only load failed" in load.error
    finally:
        session.close()


def test_weights_must_fit_the_allow_listed_architecture(workers, mlp):
    state = {**mlp.state_dict(), "extra.weight": torch.zeros(2)}
    from safetensors.torch import save

    session = start(workers, save(state), "safetensors", ".safetensors", steps={}, golden=False, architecture="mlp/v1")
    try:
        assert "unexpected key 'extra.weight'" in session.result("load", 60).error
    finally:
        session.close()
    session = start(workers, models.safetensors_bytes(mlp), "safetensors", ".safetensors", steps={}, golden=False)
    try:
        assert "need an architecture" in session.result("load", 60).error
    finally:
        session.close()


def test_a_safetensors_header_names_its_architecture_as_the_runner_reads_it(workers, mlp):
    """The runner's header form (`causeway.architecture: mlp` + config, Sequential keys) loads in the
    sandbox from the shared registry, and the header wins over a contradicting version tag."""
    from safetensors.torch import save

    widths = [mlp.layers[0].in_features, *(layer.out_features for layer in mlp.layers)]
    state = {}
    for i, layer in enumerate(mlp.layers):
        state[f"{2 * i}.weight"] = layer.weight.detach().contiguous()
        state[f"{2 * i}.bias"] = layer.bias.detach().contiguous()
    config = {"in_features": widths[0], "hidden": widths[1:-1], "out_features": widths[-1]}
    header = {"causeway.architecture": "mlp", "causeway.config": json.dumps(config)}
    session = start(workers, save(state, metadata=header), "safetensors", ".safetensors", architecture="mlp/v1")
    try:
        load = session.result("load", 60)
        assert load.ok, load.error
        assert load.result["architecture"] == "mlp"
        predict = session.result("predict", 60).result
        expected = mlp(torch.from_numpy(models.dataset(400, seed=7)[0])).detach().numpy().reshape(-1)
        np.testing.assert_allclose(np.asarray(predict["predictions"]).reshape(-1), expected, rtol=1e-5, atol=1e-6)
    finally:
        session.close()


def test_raw_pickles_are_only_unpickled_when_the_job_allows_it(workers):
    session = start(workers, pickle.dumps(_Evil()), "pickle", ".pkl", steps={}, golden=False)
    try:
        assert "only under a policy that allows unrestricted pickle" in session.result("load", 60).error
    finally:
        session.close()


def test_a_model_that_allocates_too_much_is_stopped(workers):
    session = start(
        workers, models.torchscript(models.MemoryHog()), "torchscript", ".pt", steps={"signature": {}}, golden=False
    )
    assert session.result("load", 60).ok
    with pytest.raises(WorkerStopped) as err:
        session.result("signature", 60)
    assert err.value.violation == "memory_limit" and "RLIMIT_AS" in err.value.message


def test_a_model_that_never_returns_is_killed(workers):
    limits = SandboxLimits(memory_bytes=3 << 30, cpu_seconds=4, max_file_bytes=8 << 20, wall_seconds=90)
    started = time.monotonic()
    session = start(  # returns once the worker is ready: this measures its start
        workers,
        models.torchscript(models.NeverReturns()),
        "torchscript",
        ".pt",
        steps={"signature": {}},
        golden=False,
        limits=limits,
    )
    startup = time.monotonic() - started
    with pytest.raises(WorkerStopped) as err:
        session.result("signature", 60)
    assert err.value.violation == "cpu_time"
    # The wall clock also covers the worker's start (importing torch: seconds on a busy machine, and
    # a worker not ready in time is a setup failure, not a violation), so the limit leaves room for
    # the start this machine just measured and the hang is what runs it out.
    wall = max(8.0, 3 * startup + 5)
    limits = SandboxLimits(memory_bytes=3 << 30, cpu_seconds=600, max_file_bytes=8 << 20, wall_seconds=wall)
    session = start(
        workers,
        models.torchscript(models.NeverReturns()),
        "torchscript",
        ".pt",
        steps={"signature": {}},
        golden=False,
        limits=limits,
    )
    with pytest.raises(WorkerStopped) as err:
        session.result("signature", 60)
    assert err.value.violation == "wall_time"
