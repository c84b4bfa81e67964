"""Validator benchmark: a ~400 MB torch state_dict validated end to end, and the sandbox's overhead.

    bazel run //tools/bench:validator_bench            # as root (the worker switches to uid 65534)

Part 1 registers the model (mlp/v1, weights-only torch state_dict) with a golden set in a real
registry process, validates it with the real validator (in-process server, sandboxed workers) and
prints the time of every check from the report (the digest check includes the download).
Part 2 loads the same file (torch.load(weights_only=True, mmap=True) + architecture + a first
inference) the way the worker does, once in the sandbox (setpriv, prlimit, bwrap, seccomp) and
once as a plain subprocess, alternating, and prints medians and the sandboxed/unsandboxed ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import torch
from safetensors.numpy import save_file

from causeway.common.v1 import model_pb2, tensor_pb2, validation_pb2
from causeway.registry.v1 import artifact_service_pb2_grpc, registry_service_pb2, registry_service_pb2_grpc
from causeway.registry.v1 import model_pb2 as rm
from causeway.validator.v1 import report_pb2
from causeway.validator.v1 import validator_service_pb2 as vpb
from causeway.validator.v1 import validator_service_pb2_grpc as vgrpc
from libs.architectures.registry import MLP
from libs.grpc_server.server import GrpcServer
from libs.grpc_server.settings import ServerSettings
from services.validator.app import build_app
from services.validator.config import load_config
from services.validator.worker import runtime
from services.validator.worker.inside import loaders
from services.validator.worker.launcher import Bind, Limits, Sandbox, SandboxSettings
from tools.bench.common import MIB, file_chunks, file_sha256, running_registry, sha256_digest, token, upload_requests

POLICY = """\
name: bench
description: "every check on a large weights-only model (no environment, so torch_state_dict is allowed)"
timeout: 30m
allowed_formats: [torch_state_dict]
sandbox: {memory_bytes: 6GiB, cpu_time_limit: 20m, max_file_bytes: 64MiB, wall_time_limit: 20m}
checks:
  - {name: digest, type: digest_match}
  - {name: scan, type: artifact_scan}
  - {name: format, type: format_allowlist}
  - {name: safe_load, type: safe_load}
  - {name: signature, type: signature_match, parameters: {batch_size: 4}}
  - name: golden_metrics
    type: metric_gate
    thresholds: [{metric: auroc, comparator: ">=", absolute: 0.0}]
  - name: latency
    type: latency_budget
    parameters: {batch_size: 1, requests: 50, warmup: 5}
    thresholds: [{metric: latency_p95_ms, comparator: "<=", absolute: 100000}]
  - name: memory
    type: memory_budget
    thresholds: [{metric: peak_memory_bytes, comparator: "<=", absolute: 6442450944}]
  - {name: determinism, type: determinism, parameters: {runs: 2, rows: 64}}
  - name: features
    type: feature_consistency
    severity: advisory
    thresholds: [{metric: psi_max, comparator: "<=", absolute: 1000}]
"""

# The same work as the worker's load step; `{harden}` is the worker's hardening, or nothing.
LOAD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {code!r})
import numpy as np, torch
from validator_worker import loaders
torch.set_num_threads(1)
t1 = time.perf_counter()
{harden}
t2 = time.perf_counter()
model = loaders.load({path!r}, "torch_state_dict", {{"architecture": "mlp/v1"}})
t3 = time.perf_counter()
model.run([np.zeros((1, {width}), dtype=np.float32)])
t4 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "hardening": t2 - t1, "load": t3 - t2, "first_inference": t4 - t3}}))
"""
HARDEN = "from validator_worker import hardening; hardening.verify_isolation(); hardening.install_seccomp()"


def make_model(root: Path, width: int, layers: int) -> Path:
    torch.manual_seed(0)
    model = MLP([width] * (layers + 1) + [1])
    path = root / "model.pt"
    torch.save(model.state_dict(), path)
    return path


def make_golden(root: Path, width: int, rows: int) -> Path:
    rng = np.random.default_rng(0)
    path = root / "golden.safetensors"
    x = rng.standard_normal((rows, width)).astype(np.float32)
    save_file({"x": x, "label": (x[:, 0] > 0).astype(np.int64)}, str(path))
    return path


def upload(channel: grpc.Channel, md, path: Path) -> str:
    digest = file_sha256(path)
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
    stub.UploadArtifact(upload_requests(file_chunks(path), digest, path.stat().st_size, path.name), metadata=md)
    return digest


def register(channel: grpc.Channel, md, model: Path, golden: Path, width: int) -> tuple[int, float]:
    start = time.perf_counter()
    registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
    registry.CreateRegisteredModel(
        registry_service_pb2.CreateRegisteredModelRequest(name="bench-mlp", owner_team="bench"), metadata=md
    )
    request = registry_service_pb2.CreateModelVersionRequest(
        model_name="bench-mlp",
        artifact_digest=sha256_digest(upload(channel, md, model)),
        format=model_pb2.MODEL_FORMAT_TORCH_STATE_DICT,
        tags={"task": "binary-classification", "architecture": "mlp/v1", "output": "logits"},
        request_id=str(uuid.uuid4()),
    )
    request.signature.inputs.add(name="x", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, width])
    request.signature.outputs.add(name="p", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 1])
    g = request.golden_dataset
    g.dataset.name, g.dataset.role, g.dataset.format = (
        "bench-golden",
        rm.DATASET_ROLE_GOLDEN,
        rm.DATASET_FORMAT_SAFETENSORS,
    )
    g.dataset.digest.CopyFrom(sha256_digest(upload(channel, md, golden)))
    g.label_key = "label"
    for i in range(8):  # a small baseline: feature consistency is timed, not judged (advisory)
        stat = request.training_baseline.features.add(name=f"x:{i}")
        stat.numeric.min, stat.numeric.max = -5.0, 5.0
        stat.numeric.histogram.bin_edges.extend([-5.0, -1.0, 0.0, 1.0, 5.0])
        stat.numeric.histogram.counts.extend([16, 34, 34, 16])
    version = registry.CreateModelVersion(request, metadata=md).version.ref.version
    return int(version), time.perf_counter() - start


def validate(registry_address: str, idp, root: Path, version: int) -> dict:
    """One validation with the real validator; returns timings from the run and its report."""
    policies = root / "policies"
    policies.mkdir()
    (policies / "bench.yaml").write_text(POLICY)
    (root / "validator.token").write_text(idp.service_token("validator"))
    work = Path(tempfile.mkdtemp(prefix="causeway-bench-", dir="/tmp"))
    env = {
        "CAUSEWAY_VALIDATOR_DATA_DIR": str(root / "validator"),
        "CAUSEWAY_VALIDATOR_WORK_DIR": str(work),
        "CAUSEWAY_VALIDATOR_POLICIES_DIR": str(policies),
        "CAUSEWAY_VALIDATOR_REGISTRY_ADDRESS": registry_address,
        "CAUSEWAY_VALIDATOR_AUTH_JWKS": str(idp.jwks_path),
        "CAUSEWAY_VALIDATOR_AUTH_ISSUER": idp.issuer,
        "CAUSEWAY_VALIDATOR_AUTH_AUDIENCE": idp.audience,
        "CAUSEWAY_VALIDATOR_AUTH_SERVICE_TOKEN_FILE": str(root / "validator.token"),
    }
    try:
        app = build_app(load_config(env))
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    app.start()
    server = GrpcServer(
        app.bindings, ServerSettings(port=0, metrics_port=-1, grace_seconds=0), interceptors=app.interceptors
    )
    server.start()
    md = token(idp, "bench-user", teams=("bench",))
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = vgrpc.ValidatorServiceStub(channel)
            start = time.perf_counter()
            ref = model_pb2.ModelRef(name="bench-mlp", version=version)
            run = stub.StartValidation(vpb.StartValidationRequest(model=ref, policy_name="bench"), metadata=md).run
            for _ in stub.WatchValidationRun(vpb.WatchValidationRunRequest(run_id=run.run_id), metadata=md):
                pass
            total = time.perf_counter() - start
            run = stub.GetValidationRun(vpb.GetValidationRunRequest(run_id=run.run_id), metadata=md).run
            if not run.report_digest.hex:
                raise SystemExit(f"validation did not complete: {run.state} {run.message}")
            report = stub.GetValidationReport(vpb.GetValidationReportRequest(run_id=run.run_id), metadata=md).report
    finally:
        server.stop(0)
        app.close()
        shutil.rmtree(work, ignore_errors=True)
    checks = [(c.name, c.duration.ToNanoseconds() / 1e9, report_pb2.CheckStatus.Name(c.status)) for c in report.checks]
    load = next(c for c in report.checks if c.name == "safe_load").evidence
    return {
        "total": total,
        "checks": checks,
        "verdict": validation_pb2.ValidationVerdict.Name(report.verdict),
        "worker_start": load["worker_start_seconds"],
        "load": load["load_seconds"],
    }


def load_once(sandboxed: bool, sandbox: Sandbox, code: Path, model: Path, width: int) -> dict:
    """Spawn -> model loaded and run once, timed from outside; the script's own step times inside."""
    if sandboxed:
        script = LOAD_SCRIPT.format(code=runtime.MOUNT, harden=HARDEN, path="/input/model.pt", width=width)
        limits = Limits(memory_bytes=6 << 30, cpu_seconds=600, max_file_bytes=64 * MIB, wall_seconds=600)
        binds = [Bind(str(code), runtime.MOUNT), Bind(str(model), "/input/model.pt")]
        start = time.perf_counter()
        proc = sandbox.start(binds, [sandbox.settings.python, "-I", "-B", "-c", script], limits, b"")
        out = proc.stdout.read()
        ended = proc.wait(600)
        if ended.returncode != 0:
            raise SystemExit(f"sandboxed load failed ({ended.returncode}): {ended.stderr_tail}")
    else:
        script = LOAD_SCRIPT.format(code=str(code), harden="", path=str(model), width=width)
        start = time.perf_counter()
        out = subprocess.run(
            [sandbox.settings.python, "-I", "-B", "-c", script], capture_output=True, check=True
        ).stdout
    return json.loads(out) | {"wall": time.perf_counter() - start}


def overhead(model: Path, width: int, repeats: int) -> dict:
    python = runtime.default_python()
    sandbox = Sandbox(SandboxSettings(python=python, runtime_paths=runtime.default_runtime_paths(python)))
    work = Path(tempfile.mkdtemp(prefix="causeway-bench-", dir="/tmp"))
    try:
        code = runtime.stage_worker_code(runtime.make_private_dir(work, 65534), 65534)
        staged = work / "model.pt"
        shutil.copyfile(model, staged)
        runtime.seal_file(staged, 65534)
        load_once(False, sandbox, code, staged, width)  # warm the page cache for both
        runs: dict[str, list[dict]] = {"sandboxed": [], "unsandboxed": []}
        for _ in range(repeats):
            runs["unsandboxed"].append(load_once(False, sandbox, code, staged, width))
            runs["sandboxed"].append(load_once(True, sandbox, code, staged, width))
        torch.set_num_threads(1)  # as in the worker
        start = time.perf_counter()  # the same loader in this process: no process start, no sandbox
        loaded = loaders.load(str(staged), "torch_state_dict", {"architecture": "mlp/v1"})
        loaded.run([np.zeros((1, width), dtype=np.float32)])
        in_process = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    return {"median": median, "in_process": in_process, "repeats": repeats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=6, help="hidden layers of width x width")
    parser.add_argument("--rows", type=int, default=256, help="golden rows")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the sandboxed worker switches to uid 65534", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="validator-bench-"))
    try:
        model = make_model(root, args.width, args.layers)
        golden = make_golden(root, args.width, args.rows)
        size = model.stat().st_size
        print(
            f"model: mlp/v1 {args.layers}x{args.width}^2 torch state_dict, {size / 1e6:.1f} MB; golden {args.rows} rows"
        )
        with running_registry(root / "stack") as (registry, idp):
            md = token(idp, "bench-user", teams=("bench",))
            with grpc.insecure_channel(registry.address) as channel:
                version, setup = register(channel, md, model, golden, args.width)
            print(f"setup (upload {size / 1e6:.0f} MB + golden, register): {setup:.2f} s")
            result = validate(registry.address, idp, root, version)
        print(f"\nvalidation, end to end: {result['total']:.2f} s (verdict {result['verdict']})")
        for name, seconds, status in result["checks"]:
            print(f"  {name:<16} {seconds:8.2f} s   {status.removeprefix('CHECK_STATUS_')}")
            if name == "safe_load":
                rest = seconds - result["worker_start"] - result["load"]
                print(
                    f"    worker start (sandbox set-up + imports) {result['worker_start']:.2f} s, golden read + "
                    f"feature stats {rest:.2f} s, torch.load + architecture {result['load']:.2f} s"
                )
        o = overhead(model, args.width, args.repeats)
        s, u = o["median"]["sandboxed"], o["median"]["unsandboxed"]
        print(
            f"\nsandbox overhead, same load (median of {o['repeats']}; the same loader in-process, "
            f"no process start: {o['in_process']:.3f} s):"
        )
        print(f"  {'':<16} {'sandboxed':>10} {'unsandboxed':>12}")
        for key in ("wall", "imports", "hardening", "load", "first_inference"):
            print(f"  {key:<16} {s[key]:9.3f}s {u[key]:11.3f}s")
        print(f"  ratio wall (spawn -> loaded and run once): {s['wall'] / u['wall']:.3f}")
        load_s, load_u = s["load"] + s["first_inference"], u["load"] + u["first_inference"]
        print(f"  ratio load + first inference:              {load_s / load_u:.3f}")
        print(f"  ratio sandboxed wall / in-process load:    {s['wall'] / o['in_process']:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
