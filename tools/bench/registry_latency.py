"""Registry read latency through the real gRPC server vs MLflow's client on the same sqlite store.

    bazel run //tools/bench:registry_latency -- [--models 100] [--calls 300]

Seeds models (each with one version and a `task` tag) through the registry, then times the same
reads both ways, one call at a time, and prints p50/p95 per operation and the ratios. The registry
side includes the client stub, HTTP/2 on loopback, token verification, the registry's mapping
and its own MLflow calls; the MLflow side is MlflowClient in this process on the same database file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable

import grpc

from causeway.common.v1 import model_pb2, tensor_pb2
from causeway.registry.v1 import artifact_service_pb2_grpc
from causeway.registry.v1 import registry_service_pb2 as pb
from causeway.registry.v1 import registry_service_pb2_grpc as pb_grpc
from tools.bench.common import percentile, running_registry, sha256_digest, token, upload_requests

TASKS = ("tox", "admet", "solubility", "pk")


def _seed(channel: grpc.Channel, md, models: int) -> str:
    """`models` models (tag task=<one of TASKS>) with one version each; returns the first name."""
    artifact = b"benchmark weights"
    hex_digest = hashlib.sha256(artifact).hexdigest()
    artifact_service_pb2_grpc.ArtifactServiceStub(channel).UploadArtifact(
        upload_requests([artifact], hex_digest, len(artifact)), metadata=md
    )
    stub = pb_grpc.RegistryServiceStub(channel)
    for i in range(models):
        name = f"bench-{i:04d}"
        stub.CreateRegisteredModel(
            pb.CreateRegisteredModelRequest(
                name=name, owner_team="bench", description=f"model {i}", tags={"task": TASKS[i % len(TASKS)]}
            ),
            metadata=md,
        )
        request = pb.CreateModelVersionRequest(
            model_name=name, artifact_digest=sha256_digest(hex_digest), format=model_pb2.MODEL_FORMAT_SAFETENSORS
        )
        request.signature.inputs.add(name="x", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 12])
        request.signature.outputs.add(name="p", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 1])
        request.lineage.training_run_id = f"run-{i}"
        stub.CreateModelVersion(request, metadata=md)
    return "bench-0000"


def _time(call: Callable[[], object], calls: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)

    with running_registry() as (registry, idp), grpc.insecure_channel(registry.address) as channel:
        md = token(idp)
        started = time.perf_counter()
        name = _seed(channel, md, args.models)
        seeded = time.perf_counter() - started
        stub = pb_grpc.RegistryServiceStub(channel)
        ref = model_pb2.ModelRef(name=name, version=1)
        size = args.page_size

        from mlflow import MlflowClient  # only the comparison imports MLflow

        uri = f"sqlite:///{registry.data_dir / 'mlflow.db'}"
        mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
        tag_filter = "tags.`task` = 'tox'"
        operations: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (
                "get model",
                lambda: stub.GetRegisteredModel(pb.GetRegisteredModelRequest(name=name), metadata=md),
                lambda: mlflow.get_registered_model(name),
            ),
            (
                "get version",
                lambda: stub.GetModelVersion(pb.GetModelVersionRequest(model=ref), metadata=md),
                lambda: mlflow.get_model_version(name, "1"),
            ),
            (
                f"list {size} models",
                lambda: stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(page_size=size), metadata=md),
                lambda: mlflow.search_registered_models(max_results=size, order_by=["name ASC"]),
            ),
            (
                "search by tag",
                lambda: stub.SearchRegisteredModels(
                    pb.SearchRegisteredModelsRequest(tags={"task": "tox"}, page_size=size), metadata=md
                ),
                lambda: mlflow.search_registered_models(
                    filter_string=tag_filter, max_results=size, order_by=["name ASC"]
                ),
            ),
        ]
        found = len(
            stub.SearchRegisteredModels(pb.SearchRegisteredModelsRequest(tags={"task": "tox"}), metadata=md).models
        )
        assert found == len(mlflow.search_registered_models(filter_string=tag_filter, max_results=1000))

        print(f"registry_latency: {args.models} models seeded in {seeded:.1f} s through gRPC; {args.calls} calls each")
        print(f"search by tag matches {found} models; pages of {size}")
        header = ("operation", "registry p50", "p95", "mlflow p50", "p95", "ratio p50", "p95")
        print("{:<16} {:>13} {:>9} {:>11} {:>9} {:>10} {:>7}".format(*header))
        for label, via_registry, via_mlflow in operations:
            reg = _time(via_registry, args.calls, args.warmup)
            raw = _time(via_mlflow, args.calls, args.warmup)
            r50, r95, m50, m95 = (percentile(reg, 50), percentile(reg, 95), percentile(raw, 50), percentile(raw, 95))
            print(
                f"{label:<16} {r50:>10.2f} ms {r95:>6.2f} ms {m50:>8.2f} ms {m95:>6.2f} ms "
                f"{r50 / m50:>9.2f}x {r95 / m95:>6.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
