"""Closed-loop load generator for the runner benchmark: N clients, one row per request, JSON out.

Runs in its own process without the repository on sys.path: tritonclient bundles its own
`inference` protos, which cannot share a process with ours. Each of the N client threads has its
own connection and sends its next request as soon as the previous one is answered, so N is the
concurrency. Latencies are measured per request, end to end, in the client.

  runner_loadgen.py triton ADDRESS TOKEN MODEL VERSION FEATURES[xROWS] CONCURRENCY SECONDS
  runner_loadgen.py mlflow URL - - - FEATURES CONCURRENCY SECONDS
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time

import numpy as np

WARMUP_SECONDS = 1.0


def _triton_worker(address: str, token: str, model: str, version: str, features: int, rows: int = 1):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=address)
    headers = {"authorization": f"Bearer {token}"}
    x = np.random.default_rng().standard_normal((rows, features)).astype(np.float32)
    tensor = grpcclient.InferInput("input", [rows, features], "FP32")
    tensor.set_data_from_numpy(x)

    def call() -> None:
        result = client.infer(model, [tensor], model_version=version, headers=headers)
        result.as_numpy("output")

    return call


def _mlflow_worker(url: str, features: int):
    import requests

    session = requests.Session()
    x = np.random.default_rng().standard_normal((1, features)).astype(np.float32)
    body = json.dumps({"inputs": x.tolist()})
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        response = session.post(f"{url}/invocations", data=body, headers=headers, timeout=60)
        response.raise_for_status()
        response.json()

    return call


def run(make_call, concurrency: int, seconds: float, rows: int = 1) -> dict:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start_barrier = threading.Barrier(concurrency + 1)
    state = {"measure_from": 0.0, "stop_at": 0.0}

    def worker(index: int) -> None:
        call = make_call()
        start_barrier.wait()
        mine = latencies[index]
        while True:
            begin = time.perf_counter()
            if begin >= state["stop_at"]:
                return
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - count and report every failed request
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            end = time.perf_counter()
            if begin >= state["measure_from"] and end <= state["stop_at"]:
                mine.append(end - begin)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    state["measure_from"] = now + WARMUP_SECONDS
    state["stop_at"] = now + WARMUP_SECONDS + seconds
    start_barrier.wait()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for thread in threads:
        thread.join()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    flat = sorted(x for per in latencies for x in per)
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": len(flat),
        "rows_per_request": rows,
        "rows_per_second": rows * len(flat) / seconds,
        "p50_ms": 1000 * flat[len(flat) // 2] if flat else None,
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(len(flat) * 0.99))] if flat else None,
        "client_cpu_seconds": cpu,
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 8 or argv[0] not in ("triton", "mlflow"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, target, token, model, version, features, concurrency, seconds = argv
    features_text, _, rows_text = features.partition("x")
    features_n, rows_n, conc, secs = int(features_text), int(rows_text or 1), int(concurrency), float(seconds)
    if kind == "triton":
        make = lambda: _triton_worker(target, token, model, version, features_n, rows_n)  # noqa: E731
    else:
        make = lambda: _mlflow_worker(target, features_n)  # noqa: E731
    print(json.dumps(run(make, conc, secs, rows_n)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
