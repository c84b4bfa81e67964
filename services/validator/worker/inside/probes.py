"""What the worker measures on a loaded model. It reports facts; the service judges them.

Every probe is seeded from the job, so the same job on the same artifact gives the same numbers
(latency and memory aside, which are measurements of the machine).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .loaders import LoadedModel, datatype_of
from .protocol import OIP_TO_NUMPY


def probe_batch(specs: Sequence[dict[str, Any]], batch_size: int, seed: int) -> list[np.ndarray]:
    """Synthetic inputs in the declared datatypes and shapes (-1 becomes `batch_size`)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = [batch_size if d == -1 else int(d) for d in spec.get("shape", [])]
        dtype = OIP_TO_NUMPY.get(spec.get("datatype", ""), None)
        if dtype is None:
            raise ValueError(f"input {spec.get('name')!r}: datatype {spec.get('datatype')!r} cannot be probed")
        if dtype == "bool":
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        elif dtype.startswith(("int", "uint")):
            arrays.append(rng.integers(0, 10, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(size=shape).astype(dtype))
    return arrays


def describe(arrays: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    return [{"datatype": datatype_of(a), "shape": [int(d) for d in a.shape]} for a in arrays]


def signature(model: LoadedModel, job: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Run a probe batch; report what went in, what came out and what the artifact declares."""
    batch = int(params.get("batch_size", 4))
    inputs = probe_batch(job.get("inputs", []), batch, int(job.get("seed", 0)))
    result: dict[str, Any] = {
        "batch_size": batch,
        "probe_inputs": describe(inputs),
        "artifact_inputs": model.declared_inputs,
        "artifact_outputs": model.declared_outputs,
    }
    try:
        outputs = model.run(inputs)
    except Exception as err:
        if _is_memory(err):
            raise
        result["probe_error"] = f"{type(err).__name__}: {str(err)[:2000]}"
        return result
    result["outputs"] = describe(outputs)
    return result


def _is_memory(err: BaseException) -> bool:
    from .protocol import memory_error

    return memory_error(err)


def _batches(inputs: Sequence[np.ndarray], size: int):
    rows = inputs[0].shape[0] if inputs else 0
    for start in range(0, rows, size):
        yield [a[start : start + size] for a in inputs]


def predict(model: LoadedModel, inputs: Sequence[np.ndarray], params: dict[str, Any]) -> np.ndarray:
    """The model's first (or `output_index`) output on all rows, batch by batch."""
    index = int(params.get("output_index", 0))
    size = max(1, int(params.get("batch_size", 256)))
    parts = []
    for batch in _batches(inputs, size):
        outputs = model.run(batch)
        if index >= len(outputs):
            raise ValueError(f"model returned {len(outputs)} outputs; output {index} was asked for")
        parts.append(np.asarray(outputs[index]))
    if not parts:
        raise ValueError("the golden dataset has no rows")
    return np.concatenate(parts, axis=0)


def determinism(model: LoadedModel, inputs: Sequence[np.ndarray], runs: int) -> dict[str, Any]:
    """Run the same inputs `runs` times; the largest element-wise difference to the first run."""
    first = [np.asarray(o, dtype=np.float64) for o in model.run(inputs)]
    max_diff, bitwise = 0.0, True
    for _ in range(max(1, runs) - 1):
        again = [np.asarray(o, dtype=np.float64) for o in model.run(inputs)]
        for a, b in zip(first, again, strict=True):
            if a.shape != b.shape:
                return {"runs": runs, "max_abs_diff": float("inf"), "bitwise_equal": False, "shape_changed": True}
            if a.size:
                diff = np.abs(a - b)
                nan_mismatch = np.isnan(a) != np.isnan(b)
                if nan_mismatch.any():
                    return {"runs": runs, "max_abs_diff": float("inf"), "bitwise_equal": False}
                max_diff = max(max_diff, float(np.nanmax(diff)) if not np.isnan(diff).all() else 0.0)
            bitwise = bitwise and a.tobytes() == b.tobytes()
    return {"runs": runs, "max_abs_diff": max_diff, "bitwise_equal": bitwise, "rows": int(inputs[0].shape[0])}


def latency(model: LoadedModel, job: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """p50/p95 of single inferences of a probe batch, after warm-up."""
    batch = int(params.get("batch_size", 1))
    requests = max(1, int(params.get("requests", 100)))
    warmup = max(0, int(params.get("warmup", 5)))
    inputs = probe_batch(job.get("inputs", []), batch, int(job.get("seed", 0)))
    for _ in range(warmup):
        model.run(inputs)
    samples = []
    for _ in range(requests):
        start = time.perf_counter_ns()
        model.run(inputs)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    values = np.asarray(samples)
    return {
        "batch_size": batch,
        "requests": requests,
        "warmup": warmup,
        "latency_p50_ms": float(np.percentile(values, 50)),
        "latency_p95_ms": float(np.percentile(values, 95)),
        "latency_max_ms": float(values.max()),
    }


def memory() -> dict[str, Any]:
    """Peak resident memory of this process so far (VmHWM), which includes the runtime."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()

    def kib(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0]) * 1024

    return {"peak_memory_bytes": kib("VmHWM"), "rss_bytes": kib("VmRSS"), "peak_virtual_bytes": kib("VmPeak")}
