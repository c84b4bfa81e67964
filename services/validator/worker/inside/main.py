"""Entry point of the sandboxed worker: one job from stdin, hardening, the steps, JSON lines out.

Order matters: heavy libraries are imported first (they need nothing the filter forbids), then the
sandbox is verified and seccomp installed, then "ready" is sent, and only then is the artifact
opened. The golden dataset is parsed and its statistics computed before the model is loaded, so
model code never runs while trusted measurements are taken.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import protocol
from .protocol import Channel, memory_error

MODEL_STEPS = ("signature", "predict", "determinism", "latency", "memory")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "onnxruntime", "safetensors", "numpy", "pyarrow", "picklescan", "modelscan", "pyseccomp"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _prepare(job: dict[str, Any]) -> None:
    """Import what the job needs and fix seeds and thread counts (before seccomp)."""
    seed, threads = int(job.get("seed", 0)), int(job.get("threads", 1))
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    if job["kind"] == "scan":
        import modelscan.modelscan  # noqa: F401
        import picklescan.scanner  # noqa: F401

        return
    fmt = job["artifact"]["format"]
    if fmt in ("torchscript", "safetensors", "torch_state_dict", "pickle"):
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        import safetensors.torch
    if fmt == "onnx":
        import onnxruntime as ort

        ort.disable_telemetry_events()
        ort.set_default_logger_severity(3)
    if job.get("golden"):
        if job["golden"]["format"] == "parquet":
            import pyarrow.parquet  # noqa: F401
        else:
            import safetensors.numpy  # noqa: F401


class Runner:
    def __init__(self, channel: Channel, job: dict[str, Any]) -> None:
        self.channel = channel
        self.job = job

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported, none is fatal but memory
            if memory_error(err):
                self.channel.send({"type": "fatal", "kind": "memory_limit", "step": name, "error": str(err)[:2000]})
                os._exit(protocol.EXIT_MEMORY)
            self.channel.send(
                {
                    "type": "step",
                    "name": name,
                    "ok": False,
                    "kind": "model_error",
                    "error": f"{type(err).__name__}: {str(err)[:4000]}",
                    "seconds": time.perf_counter() - start,
                }
            )
            traceback.print_exc(file=sys.stderr)
            return None
        self.channel.send(
            {"type": "step", "name": name, "ok": True, "result": result, "seconds": time.perf_counter() - start}
        )
        return result

    def skip(self, name: str, why: str) -> None:
        self.channel.send({"type": "step", "name": name, "ok": False, "kind": "skipped", "error": why})

    def scan(self) -> None:
        from . import scanning

        self.step("scan", lambda: scanning.scan(self.job["artifact"]["path"]))

    def model(self) -> None:
        from . import datasets, loaders, probes

        steps: dict[str, dict[str, Any]] = self.job.get("steps", {})
        golden_box: dict[str, Any] = {}
        if self.job.get("golden") and any(s in steps for s in ("features", "predict", "determinism")):

            def read() -> dict[str, Any]:
                golden_box["g"] = datasets.load_golden(self.job)
                return {"rows": golden_box["g"].rows, "input_error": golden_box["g"].input_error}

            self.step("golden", read)
        golden = golden_box.get("g")
        if "features" in steps:
            if golden is None:
                self.skip("features", "no golden dataset could be read")
            else:
                self.step("features", lambda: datasets.feature_stats(golden, steps["features"].get("edges", {})))
        artifact = self.job["artifact"]
        box: dict[str, Any] = {}

        def load() -> dict[str, Any]:
            model = loaders.load(artifact["path"], artifact["format"], self.job)
            box["m"] = model
            return {"loader": model.loader, **model.details}

        self.step("load", load)
        model = box.get("m")
        for name in MODEL_STEPS:
            if name not in steps:
                continue
            if model is None:
                self.skip(name, "the model did not load")
                continue
            params = steps[name]
            if name == "signature":
                self.step(name, functools.partial(probes.signature, model, self.job, params))
            elif name == "predict":
                self.step(name, functools.partial(self._predict, model, golden, params))
            elif name == "determinism":
                self.step(name, functools.partial(self._determinism, model, golden, params))
            elif name == "latency":
                self.step(name, functools.partial(probes.latency, model, self.job, params))
            elif name == "memory":
                self.step(name, probes.memory)

    def _predict(self, model: Any, golden: Any, params: dict[str, Any]) -> dict[str, Any]:
        from . import probes

        if golden is None:
            raise ValueError("no golden dataset")
        if golden.input_error:
            raise ValueError(golden.input_error)
        predictions = probes.predict(model, golden.inputs, params)
        return {
            "rows": int(predictions.shape[0]),
            "output_shape": [int(d) for d in predictions.shape],
            "predictions": predictions.astype("float64").tolist(),
            "labels": golden.labels.tolist(),
        }

    def _determinism(self, model: Any, golden: Any, params: dict[str, Any]) -> dict[str, Any]:
        from . import probes

        rows = int(params.get("rows", 64))
        if golden is not None and not golden.input_error and golden.inputs:
            inputs, source = [a[:rows] for a in golden.inputs], "golden"
        else:
            inputs, source = probes.probe_batch(self.job.get("inputs", []), rows, int(self.job.get("seed", 0))), "probe"
        return probes.determinism(model, inputs, int(params.get("runs", 3))) | {"input": source}


def main() -> int:
    channel = Channel()
    try:
        job = json.loads(sys.stdin.read())
        if job.get("protocol") != protocol.PROTOCOL_VERSION or job.get("kind") not in ("scan", "model"):
            raise ValueError("unknown protocol version or job kind")
        _prepare(job)
    except Exception as err:  # noqa: BLE001
        channel.send({"type": "fatal", "kind": "bad_job", "error": f"{type(err).__name__}: {err}"})
        return protocol.EXIT_BAD_JOB
    from . import hardening

    try:
        facts = hardening.verify_isolation()
        facts["seccomp"] = hardening.install_seccomp()
    except Exception as err:  # noqa: BLE001 - fail closed: no artifact is opened without the filter
        channel.send({"type": "fatal", "kind": "hardening", "error": f"{type(err).__name__}: {err}"})
        return protocol.EXIT_HARDENING
    channel.send({"type": "ready", "runtime": _versions(), "sandbox": facts})
    runner = Runner(channel, job)
    if job["kind"] == "scan":
        runner.scan()
    else:
        runner.model()
    channel.send({"type": "done"})
    sys.stdout.flush()
    return protocol.EXIT_OK
