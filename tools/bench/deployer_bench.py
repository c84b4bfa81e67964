"""Deployer benchmark: request-to-commit latency of deploy, promote and rollback, and render plus
validate time of a GitOps tree with 1,000 model deployments.

    bazel run //tools/bench:deployer_bench -- [--requests 30] [--models 1000]

Latency: the real registry process (gates), the deployer in this process behind its real gRPC
server and auth, a local bare GitOps repository. Each RPC returns after its commit is published,
so the round trip is request-to-commit. Render: 1,000 model directories written by the
deployer's own manifest code into one environment and committed; then what Argo CD renders for
that environment (its overlay plus one Application per model directory) with `kubectl
kustomize`, schema validation of every object and the pod-policy checks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc

from causeway.common.v1 import environment_pb2 as envpb
from causeway.common.v1 import model_pb2
from causeway.deployer.v1 import deployer_service_pb2 as svc
from gitops.validation import policy
from gitops.validation.render import render
from gitops.validation.schemas import ManifestValidator
from libs.auth.dev_idp import DevIdentityProvider
from libs.testing.registry_process import registry_process
from services.deployer.domain import manifests
from services.deployer.domain.records import Strategy
from services.deployer.storage.gitops_repo import Change, GitopsRepo
from services.deployer.tests.harness import deployer_harness, gitops_source
from services.deployer.tests.registry_fixture import Registry


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"p50 {statistics.median(values) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {values[-1] * 1000:7.1f} ms"
    )


def latency(tmp: Path, requests: int) -> None:
    idp = DevIdentityProvider(tmp / "idp")
    with registry_process(tmp / "registry", idp) as proc:
        channel = grpc.insecure_channel(proc.address)
        grpc.channel_ready_future(channel).result(timeout=30)
        registry = Registry(proc.process, idp, channel)
        names = [f"bench-{uuid.uuid4().hex[:6]}" for _ in range(requests)]
        versions = {n: (registry.release(n, through="test"), registry.release(n, through="test")) for n in names}
        with deployer_harness(tmp, registry) as dep:
            md = dep.md()
            timings: dict[str, list[float]] = {"deploy (dev, direct commit)": [], "redeploy v2 (dev)": []}
            timings["promote dev->test (PR branch)"] = []
            timings["rollback (dev, restore v1)"] = []
            for name in names:
                v1, v2 = versions[name]
                for label, version in (("deploy (dev, direct commit)", v1), ("redeploy v2 (dev)", v2)):
                    request = svc.DeployModelRequest(
                        model=model_pb2.ModelRef(name=name, version=version),
                        environment=envpb.ENVIRONMENT_DEV,
                        cloud=envpb.CLOUD_AWS,
                        reason="bench",
                    )
                    start = time.perf_counter()
                    dep.stub.DeployModel(request, metadata=md)
                    timings[label].append(time.perf_counter() - start)
                start = time.perf_counter()
                dep.stub.PromoteModel(
                    svc.PromoteModelRequest(
                        model_name=name,
                        source_environment=envpb.ENVIRONMENT_DEV,
                        target_environment=envpb.ENVIRONMENT_TEST,
                        cloud=envpb.CLOUD_AWS,
                        reason="bench",
                    ),
                    metadata=md,
                )
                timings["promote dev->test (PR branch)"].append(time.perf_counter() - start)
                start = time.perf_counter()
                dep.stub.RollbackModel(
                    svc.RollbackModelRequest(
                        model_name=name, environment=envpb.ENVIRONMENT_DEV, cloud=envpb.CLOUD_AWS, reason="bench"
                    ),
                    metadata=md,
                )
                timings["rollback (dev, restore v1)"].append(time.perf_counter() - start)
            commits = dep.git("rev-list", "--count", "--all")
        channel.close()
    print(f"request-to-commit latency, {requests} models, sequential ({commits} commits in the repository):")
    for label, values in timings.items():
        print(f"  {label:32s} {_ms(values)}")


BATCH = 25


def render_and_validate(tmp: Path, models: int, workers: int) -> None:
    repo = GitopsRepo(tmp / "gitops.git").open(seed=gitops_source())
    env_dir = "gitops/models/aws/prod"
    runner = "registry.causeway.example/causeway/gpu-runner@sha256:" + "4" * 64
    files: dict[str, bytes | None] = {}
    names = [f"model-{i:04d}" for i in range(models)]
    start = time.perf_counter()
    for i, name in enumerate(names):
        strategy = Strategy.canary() if i % 10 == 0 else Strategy()  # every tenth a canary Rollout
        release = manifests.Release(
            name,
            1 + i % 7,
            f"sha256:{uuid.uuid4().hex * 2}",
            str(uuid.uuid4()),
            "prod",
            "aws",
            strategy,
            runner,
            "http://prometheus:9090",
            "registry.causeway.svc:50051",
        )
        for file, content in manifests.render(release).items():
            files[f"{env_dir}/{name}/{file}"] = content
    generate = time.perf_counter() - start
    start = time.perf_counter()
    repo.update(lambda _s: Change(files, f"bench: {models} models\n", "Bench", "bench@causeway.localhost"))
    commit = time.perf_counter() - start
    checkout = tmp / "checkout"
    archive = subprocess.run(["git", f"--git-dir={repo.path}", "archive", "main"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(checkout)  # noqa: S202 - our own archive
    root = checkout / "gitops"
    validator = ManifestValidator(root / "schemas")
    # What Argo CD renders: the environment's Application and one Application per model directory.
    overlays = [root / "envs" / "aws" / "prod"] + [root / "models" / "aws" / "prod" / n for n in names]
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:  # kustomize runs as a subprocess
        rendered_sets = list(pool.map(render, overlays))
    rendered = time.perf_counter() - start
    objects = [obj for objs in rendered_sets for obj in objs]
    # What CI can do instead: kustomize over batches of model directories (a parent listing 25
    # of them renders the same objects; much bigger batches hit kustomize's superlinear growth).
    batches = []
    for b in range(0, len(names), BATCH):
        batch = root / "models" / "aws" / "prod" / f"_batch{b // BATCH:03d}"
        batch.mkdir()
        listing = "".join(f"  - ../{n}\n" for n in names[b : b + BATCH])
        (batch / "kustomization.yaml").write_text(f"resources:\n{listing}")
        batches.append(batch)
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:
        batched = sum(len(objs) for objs in pool.map(render, batches))
    rendered_batched = time.perf_counter() - start
    assert batched == len(objects) - len(rendered_sets[0]), (batched, len(objects))
    start = time.perf_counter()
    errors = validator.all_errors(objects)
    validated = time.perf_counter() - start
    start = time.perf_counter()
    violations = policy.violations(objects)
    checked = time.perf_counter() - start
    print(f"tree with {models} model deployments in aws/prod ({len(files)} files written, {len(objects)} objects):")
    print(f"  generate manifests                {generate:7.2f} s")
    print(f"  one atomic commit of all of them  {commit:7.2f} s")
    print(f"  kubectl kustomize, {len(overlays)} overlays  {rendered:7.2f} s  ({workers} in parallel)")
    print(f"  kubectl kustomize, {len(batches)} batches of {BATCH}  {rendered_batched:7.2f} s  (same model objects)")
    print(f"  schema validation                 {validated:7.2f} s  ({len(errors)} errors)")
    print(f"  pod policy                        {checked:7.2f} s  ({len(violations)} violations)")
    print(f"  render + validate + policy        {rendered + validated + checked:7.2f} s  (per Application)")
    print(f"  render + validate + policy        {rendered_batched + validated + checked:7.2f} s  (batched)")
    if errors or violations:
        print("\n".join((errors + violations)[:10]))
        sys.exit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="parallel kustomize renders (the machine has 2 cores)")
    args = parser.parse_args()
    # `bazel run` does not export RUNFILES_DIR; registry_process finds the binary through it.
    os.environ.setdefault("RUNFILES_DIR", str(Path(__file__).parents[3]))
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as tmp, contextlib.suppress(KeyboardInterrupt):
        latency(Path(tmp) / "latency", args.requests)
        render_and_validate(Path(tmp) / "render", args.models, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
