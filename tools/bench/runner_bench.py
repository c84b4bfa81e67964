"""GPU runner benchmark: in-process limit vs the runner over gRPC vs `mlflow models serve`.

One run, one small torch MLP (the same weights everywhere):
  (a) in-process TorchScript forward at the best batch size: the limit;
  (b) the runner binary, loaded from a real registry after the version passed the dev gates,
      driven by tritonclient.grpc at concurrency 1, 8 and 32, one row per request;
  (c) `mlflow models serve --env-manager local` (MLflow's own scoring server, HTTP) on the same
      module saved with mlflow.pytorch, at the same concurrencies, one row per request;
  (d) the transport floor: a bare gRPC ModelInfer with no model, auth or batching
      (oip_floor_server.py) under the same client: what one-row requests can reach here at all;
  (e) the runner at c=8 with wider requests (--wide-rows), where the per-request cost is shared.
Prints rows/s and p50/p99 for each, the ratios runner/MLflow, runner/limit and runner/floor, and
the bound the client's own CPU puts on one-row throughput.

  bazel run //tools/bench:runner_bench -- [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from libs.auth.interceptor import bearer
from services.gpu_runner.domain.tensors import Signature, TensorSpec
from services.gpu_runner.tests.registry_world import RegistryWorld
from tools.bench.common import percentile, running_registry

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "runner_loadgen.py"


def runfile(path: str) -> str:
    root = os.environ.get("RUNFILES_DIR", str(Path(__file__).parents[3]))
    candidate = Path(root) / os.environ.get("TEST_WORKSPACE", "causeway_monorepo") / path
    return str(candidate) if candidate.exists() else str(Path("bazel-bin") / path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_model(features: int, hidden: int, outputs: int):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(features, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, outputs),
    ).eval()


def torchscript_bytes(module) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def in_process_limit(ts: bytes, features: int, seconds: float) -> dict:
    """TorchScript forward in this process at several batch sizes; the best rows/s is the limit."""
    import torch

    module = torch.jit.load(io.BytesIO(ts))
    rows = {}
    for batch in (1, 8, 32, 64, 128, 256, 512, 1024):
        x = torch.randn(batch, features)
        latencies = []
        with torch.inference_mode():
            for _ in range(10):
                module(x)
            end = time.perf_counter() + seconds / 4
            while time.perf_counter() < end:
                begin = time.perf_counter()
                module(x)
                latencies.append(time.perf_counter() - begin)
        rows[batch] = {
            "rows_per_second": batch * len(latencies) / sum(latencies),
            "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99),
        }
    best = max(rows, key=lambda b: rows[b]["rows_per_second"])
    return {"best_batch": best, **rows[best], "by_batch": rows}


def server_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the server processes (and their children, e.g. uvicorn workers)."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for one in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = one.cpu_times()
                    total += times.user + times.system
    return total


def loadgen(
    kind: str, target: str, token: str, features: int, concurrency: int, seconds: float, server_pid: int, rows: int = 1
) -> dict:
    """One row of the table: the load generator in its own process; server CPU measured around it."""
    before = server_cpu([server_pid])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # keep our protos out of tritonclient
    argv = [sys.executable, str(LOADGEN), kind, target, token, "bench-mlp", "1", f"{features}x{rows}"]
    res = subprocess.run(
        [*argv, str(concurrency), str(seconds)], capture_output=True, text=True, env=env, timeout=seconds + 120
    )
    if res.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{res.stdout}\n{res.stderr}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    # Includes the client's warm-up second: an upper bound of the server's CPU per request.
    row["server_cpu_ms_per_request"] = 1000 * (server_cpu([server_pid]) - before) / max(row["requests"], 1)
    row["client_cpu_ms_per_request"] = 1000 * row["client_cpu_seconds"] / max(row["requests"], 1)
    return row


@contextlib.contextmanager
def runner_process(workdir: Path, registry_address: str, idp, settings: dict[str, str]):
    """The runner binary on a free port; stdout (JSON logs, at the production INFO level) to a file."""
    token_file = workdir / "runner-token"
    token_file.write_text(idp.service_token("gpu-runner"))
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "CAUSEWAY_GPU_RUNNER_ENVIRONMENT": "dev",
            "CAUSEWAY_GPU_RUNNER_REGISTRY_ADDRESS": registry_address,
            "CAUSEWAY_GPU_RUNNER_DATA_DIR": str(workdir / "runner"),
            "CAUSEWAY_GPU_RUNNER_PORT": str(port),
            "CAUSEWAY_GPU_RUNNER_AUTH_JWKS": str(idp.jwks_path),
            "CAUSEWAY_GPU_RUNNER_AUTH_ISSUER": idp.issuer,
            "CAUSEWAY_GPU_RUNNER_AUTH_AUDIENCE": idp.audience,
            "CAUSEWAY_GPU_RUNNER_AUTH_SERVICE_TOKEN_FILE": str(token_file),
            "CAUSEWAY_GPU_RUNNER_GRACE_SECONDS": "1",
            **{f"CAUSEWAY_GPU_RUNNER_{k}": v for k, v in settings.items()},
        }
    )
    with (
        open(workdir / "runner.log", "wb") as log,
        _process([runfile("services/gpu_runner/gpu_runner")], env=env, stdout=log, stderr=subprocess.STDOUT) as proc,
    ):
        yield f"127.0.0.1:{port}", proc.pid


def wait_runner_ready(address: str, log: Path | None, timeout: float = 180) -> None:
    from inference import grpc_service_pb2 as pb
    from inference import grpc_service_pb2_grpc as pb_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"{address} not ready" + (f"; log:\n{log.read_text()[-4000:]}" if log else ""))


@contextlib.contextmanager
def floor_server(outputs: int, max_workers: int):
    """oip_floor_server.py in its own process (its CPU is measured like the runner's)."""
    port = free_port()
    argv = [sys.executable, "-m", "tools.bench.oip_floor_server", str(port), str(outputs), str(max_workers)]
    with _process(argv) as proc:
        yield f"127.0.0.1:{port}", proc.pid


@contextlib.contextmanager
def _process(argv: list[str], **popen):
    """A subprocess stopped with SIGTERM (SIGKILL after 30 s) when the block exits."""
    proc = subprocess.Popen(argv, **popen)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def mlflow_server(model_dir: Path, workdir: Path, workers: int):
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    log = open(workdir / f"mlflow-{workers}.log", "wb")  # noqa: SIM115 - closed below
    # MLflow execs `uvicorn` by name: the venv's bin directory must be on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/ping", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow did not start:\n{(workdir / f'mlflow-{workers}.log').read_text()[-4000:]}")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # uvicorn workers are children: stop the whole group we started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        log.close()


def save_mlflow_model(module, features: int, path: Path) -> None:
    import mlflow.pytorch
    from mlflow.models import infer_signature

    x = np.zeros((1, features), np.float32)
    import torch

    y = module(torch.from_numpy(x)).detach().numpy()
    mlflow.pytorch.save_model(
        module,
        str(path),
        serialization_format="pickle",  # MLflow's own process unpickles it; the runner never would
        signature=infer_signature(x, y),
        pip_requirements=["torch", "mlflow"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row of the table")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--outputs", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-ms", type=float, default=0.5)
    parser.add_argument("--mlflow-workers", type=int, default=2, help="uvicorn workers (MLflow's default is 1)")
    parser.add_argument(
        "--wide-rows", default="32,256", help="also: runner at c=8 with these many rows per request ('': skip)"
    )
    parser.add_argument("--max-workers", type=int, default=64, help="the runner's gRPC handler threads")
    parser.add_argument("--torch-threads", type=int, default=0, help="the runner's intra-op threads (0: torch's)")
    parser.add_argument("--log-level", default="INFO", help="the runner's log level (INFO: one JSON line per RPC)")
    parser.add_argument("--skip-mlflow", action="store_true", help="runner and floor only (quicker tuning runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--report", type=Path, help="only print the table of a --json file written earlier")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0
    levels = [int(c) for c in args.concurrency.split(",")]
    module = build_model(args.features, args.hidden, args.outputs)
    ts = torchscript_bytes(module)
    results: dict = {
        "model": f"MLP {args.features}->{args.hidden}->{args.hidden}->{args.outputs} (TorchScript {len(ts)} bytes)",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "seconds_per_row": args.seconds,
    }
    print(f"model: {results['model']}; {os.cpu_count()} CPUs; load average {os.getloadavg()}", flush=True)
    results["limit"] = in_process_limit(ts, args.features, args.seconds)
    print(
        f"in-process limit: {results['limit']['rows_per_second']:.0f} rows/s at batch {results['limit']['best_batch']}",
        flush=True,
    )

    signature = Signature(
        inputs=(TensorSpec("input", "FP32", (-1, args.features)),),
        outputs=(TensorSpec("output", "FP32", (-1, args.outputs)),),
    )
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp, running_registry(Path(tmp)) as (registry, idp):
        workdir = Path(tmp)
        channel = grpc.insecure_channel(registry.address)
        world = RegistryWorld(
            channel,
            md=lambda subject, roles, teams=(): bearer(idp.issue(subject, roles, teams=teams)),
            service_md=lambda name: bearer(idp.service_token(name)),
            team="bench",
        )
        ref = world.register("bench-mlp", ts, "TORCHSCRIPT", signature)
        world.release(ref, "dev")
        token = idp.issue("bench", ["researcher"], teams=["bench"], ttl=dt.timedelta(hours=2))
        settings = {
            "PRELOAD": f"bench-mlp:{ref.version}",
            "MAX_BATCH_SIZE": str(args.max_batch_size),
            "MAX_QUEUE_DELAY_MS": str(args.max_queue_delay_ms),
            "MAX_WORKERS": str(args.max_workers),
            "GATE_RECHECK_SECONDS": "0",
            "LOG_LEVEL": args.log_level,
            "TORCH_THREADS": str(args.torch_threads),
        }
        results["runner_settings"] = settings
        results["runner"] = []
        with runner_process(workdir, registry.address, idp, settings) as (address, pid):
            wait_runner_ready(address, workdir / "runner.log")
            for level in levels:
                row = loadgen("triton", address, token, args.features, level, args.seconds, pid)
                results["runner"].append(row)
                print(f"runner c={level}: {row['rows_per_second']:.0f} rows/s", flush=True)
            results["runner_wide"] = []
            for rows in [int(r) for r in args.wide_rows.split(",") if r.strip()]:
                # where the time goes: the same runner, fewer and wider requests
                row = loadgen("triton", address, token, args.features, 8, args.seconds, pid, rows)
                results["runner_wide"].append(row)
                print(f"runner c=8 x{rows} rows: {row['rows_per_second']:.0f} rows/s", flush=True)
        results["floor"] = []
        with floor_server(args.outputs, args.max_workers) as (address, pid):
            wait_runner_ready(address, None)
            for level in levels:
                row = loadgen("triton", address, "-", args.features, level, args.seconds, pid)
                results["floor"].append(row)
                print(f"transport floor c={level}: {row['rows_per_second']:.0f} rows/s", flush=True)
        results["mlflow_workers"] = args.mlflow_workers
        results["mlflow"] = []
        if not args.skip_mlflow:
            save_mlflow_model(module, args.features, workdir / "mlflow-model")
            with mlflow_server(workdir / "mlflow-model", workdir, args.mlflow_workers) as (url, pid):
                for level in levels:
                    row = loadgen("mlflow", url, "-", args.features, level, args.seconds, pid)
                    results["mlflow"].append(row)
                    print(f"mlflow c={level}: {row['rows_per_second']:.0f} rows/s", flush=True)
        channel.close()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict) -> None:
    limit = results["limit"]
    print()
    print(f"model: {results['model']}")
    header = f"{'what':<36}{'rows/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
    print(header + f"{'srv cpu ms/req':>16}{'cli cpu ms/req':>16}")
    print(
        f"{'in-process limit (batch ' + str(limit['best_batch']) + ')':<36}"
        f"{limit['rows_per_second']:>10.0f}{limit['p50_ms']:>10.2f}{limit['p99_ms']:>10.2f}{'':>8}"
    )
    labels = {
        "runner": "runner gRPC (tritonclient)",
        "mlflow": "mlflow models serve",
        "floor": "transport floor (no model)",
    }
    rows = [(f"{labels[kind]} c={row['concurrency']}", row) for kind in labels for row in results.get(kind, [])]
    rows += [(f"runner c=8, {w['rows_per_request']} rows/request", w) for w in results.get("runner_wide", [])]
    for label, row in rows:
        print(
            f"{label:<36}{row['rows_per_second']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            f"{row['errors']:>8}{row['server_cpu_ms_per_request']:>16.2f}{row['client_cpu_ms_per_request']:>16.2f}"
        )
    print()
    # With c one-row requests in flight no batch can exceed c rows: the in-process forward at that
    # batch size is the most batching could give at this concurrency.
    by_batch = {int(b): v["rows_per_second"] for b, v in limit["by_batch"].items()}
    print(f"{'concurrency':<14}{'runner/mlflow':>15}{'runner/limit':>15}{'runner/floor':>15}{'runner/in-proc@c':>18}")
    mlflow = results["mlflow"] or [None] * len(results["runner"])
    for run_row, ml_row, floor_row in zip(results["runner"], mlflow, results["floor"], strict=True):
        level = run_row["concurrency"]
        vs_mlflow = run_row["rows_per_second"] / ml_row["rows_per_second"] if ml_row else float("nan")
        vs_limit = run_row["rows_per_second"] / limit["rows_per_second"]
        vs_floor = run_row["rows_per_second"] / floor_row["rows_per_second"]
        at_c = by_batch[max((b for b in by_batch if b <= level), default=min(by_batch))]
        print(
            f"{level:<14}{vs_mlflow:>14.1f}x{vs_limit:>14.1%}{vs_floor:>14.0%}"
            f"{run_row['rows_per_second'] / at_c:>17.0%}"
        )
    # The client alone, given every core and a server costing nothing, could not send more.
    client_ms = min(r["client_cpu_ms_per_request"] for r in results["runner"] if r["requests"])
    bound = 1000 * results["machine"]["cpus"] / client_ms
    print(
        f"\none-row bound: the client alone spends {client_ms:.2f} ms CPU per request, so {results['machine']['cpus']} "
        f"cores cannot send more than {bound:.0f} one-row requests/s = {bound / limit['rows_per_second']:.1%} "
        "of the in-process limit, whatever the server"
    )
    results["one_row_bound_rows_per_second"] = bound


if __name__ == "__main__":
    sys.exit(main())
