"""The validator in-process against the real registry binary (a subprocess), with real tokens.

with validator_stack(tmp_path, policies_dir) as stack:
    version = stack.register("tox21", models.torchscript(...), "torchscript", golden=..., tags=...)
    run = stack.validate("tox21", version, policy="dev")
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, tensor_pb2
from causeway.registry.v1 import (
    artifact_pb2,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from causeway.registry.v1 import model_pb2 as rm
from causeway.validator.v1 import run_pb2
from causeway.validator.v1 import validator_service_pb2 as vpb
from causeway.validator.v1 import validator_service_pb2_grpc as vpb_grpc
from libs.auth.dev_idp import DevIdentityProvider
from libs.auth.interceptor import bearer
from libs.grpc_server.server import GrpcServer
from libs.testing.grpc_servers import test_settings
from libs.testing.registry_process import RegistryProcess, registry_process
from services.validator.app import ValidatorApp, build_app
from services.validator.config import load_config
from services.validator.domain.policies import DEFAULT_DIR
from services.validator.tests.support import models

TEAM = "oncology"
CHUNK = 1024 * 1024
TERMINAL = (run_pb2.RUN_STATE_COMPLETED, run_pb2.RUN_STATE_ERRORED, run_pb2.RUN_STATE_CANCELLED)

# Test-only policies (no environment): what the hostile-model tests need.
TEST_POLICIES = {
    "contain.yaml": """\
name: contain
description: scanners OFF and raw pickle allowed, to prove the sandbox alone contains a payload
timeout: 5m
allowed_formats: [pickle, torchscript]
sandbox: {memory_bytes: 3GiB, cpu_time_limit: 60s, max_file_bytes: 8MiB, wall_time_limit: 90s}
checks:
  - {name: digest, type: digest_match}
  - {name: format, type: format_allowlist}
  - {name: load, type: safe_load}
""",
    "tight.yaml": """\
name: tight
description: small limits, to show a hostile model is stopped and reported
timeout: 5m
allowed_formats: [torchscript]
sandbox: {memory_bytes: 2GiB, cpu_time_limit: 8s, max_file_bytes: 8MiB, wall_time_limit: 90s}
checks:
  - {name: digest, type: digest_match}
  - {name: scan, type: artifact_scan}
  - {name: format, type: format_allowlist}
  - {name: load, type: safe_load}
  - {name: signature, type: signature_match, parameters: {batch_size: 4}}
""",
    "quick.yaml": """\
name: quick
description: no sandbox needed (digest and format only), for API tests that need finished runs fast
timeout: 5m
allowed_formats: [torchscript, safetensors, onnx]
sandbox: {memory_bytes: 1GiB, cpu_time_limit: 60s, max_file_bytes: 8MiB, wall_time_limit: 60s}
checks:
  - {name: digest, type: digest_match}
  - {name: format, type: format_allowlist}
""",
    "slow.yaml": """\
name: slow
description: generous limits, for cancelling a run that is busy in its worker
timeout: 30m
allowed_formats: [torchscript]
sandbox: {memory_bytes: 3GiB, cpu_time_limit: 20m, max_file_bytes: 8MiB, wall_time_limit: 20m}
checks:
  - {name: format, type: format_allowlist}
  - {name: load, type: safe_load}
  - {name: signature, type: signature_match}
""",
}


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(hex_value: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_value)


def policies_dir(root: Path, extra: dict[str, str] | None = None) -> Path:
    """The shipped dev/test/prod policies plus the test-only ones."""
    target = root / "policies"
    target.mkdir(parents=True, exist_ok=True)
    for file in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(file, target / file.name)
    for name, text in {**TEST_POLICIES, **(extra or {})}.items():
        (target / name).write_text(text)
    return target


@dataclasses.dataclass
class Stack:
    idp: DevIdentityProvider
    registry: RegistryProcess
    registry_channel: grpc.Channel
    app: ValidatorApp | None  # None when the validator runs as its own process (test_startup)
    server: GrpcServer | None
    channel: grpc.Channel
    env: dict[str, str]

    @property
    def validator(self) -> vpb_grpc.ValidatorServiceStub:
        return vpb_grpc.ValidatorServiceStub(self.channel)

    def md(self, subject: str = "alice", roles: Iterable[str] = ("researcher",), teams: Iterable[str] = (TEAM,)):
        return bearer(self.idp.issue(subject, roles, teams=teams))

    # ---- registry side (test setup through the registry's own API) ----
    def upload(self, data: bytes, filename: str = "model.bin") -> str:
        digest = digest_of(data)
        meta = artifact_pb2.UploadArtifactMetadata(
            digest=_digest(digest), size_bytes=len(data), layout=artifact_pb2.ARTIFACT_LAYOUT_FILE, filename=filename
        )
        requests = [artifact_service_pb2.UploadArtifactRequest(metadata=meta)]
        requests += [
            artifact_service_pb2.UploadArtifactRequest(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)
        ]
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(self.registry_channel)
        stub.UploadArtifact(iter(requests), metadata=self.md(), timeout=120)
        return digest

    def ensure_model(self, name: str) -> None:
        stub = registry_service_pb2_grpc.RegistryServiceStub(self.registry_channel)
        try:
            stub.CreateRegisteredModel(
                registry_service_pb2.CreateRegisteredModelRequest(name=name, owner_team=TEAM, description="test"),
                metadata=self.md(),
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

    def register(
        self,
        name: str,
        artifact: bytes,
        fmt: str,
        *,
        tags: dict[str, str] | None = None,
        golden: bytes | None = None,
        baseline: bool = True,
        inputs: tuple[tuple[str, str, list[int]], ...] = (("x", "FP32", [-1, models.FEATURES]),),
        outputs: tuple[tuple[str, str, list[int]], ...] = (("p", "FP32", [-1, 1]),),
    ) -> int:
        """Upload and register a version; returns its number."""
        self.ensure_model(name)
        request = registry_service_pb2.CreateModelVersionRequest(
            model_name=name,
            artifact_digest=_digest(self.upload(artifact, f"model.{fmt}")),
            format=model_pb2.ModelFormat.Value("MODEL_FORMAT_" + fmt.upper()),
            tags=tags if tags is not None else {"task": "binary-classification"},
            request_id=str(uuid.uuid4()),
        )
        for spec_name, datatype, shape in inputs:
            request.signature.inputs.add(
                name=spec_name, datatype=tensor_pb2.DataType.Value("DATA_TYPE_" + datatype), shape=shape
            )
        for spec_name, datatype, shape in outputs:
            request.signature.outputs.add(
                name=spec_name, datatype=tensor_pb2.DataType.Value("DATA_TYPE_" + datatype), shape=shape
            )
        request.lineage.training_run_id = "run-1"
        if golden is not None:
            g = request.golden_dataset
            g.dataset.name = "golden"
            g.dataset.digest.CopyFrom(_digest(self.upload(golden, "golden.parquet")))
            g.dataset.role = rm.DATASET_ROLE_GOLDEN
            g.dataset.format = rm.DATASET_FORMAT_PARQUET
            g.input_mapping["x"] = ",".join(models.FEATURE_NAMES)
            g.label_key = "label"
        if baseline:
            b = request.training_baseline
            b.sample_count = 2000
            for f in models.baseline_features():
                stat = b.features.add(name=f["name"], missing_fraction=0.0)
                n = stat.numeric
                n.mean, n.stddev, n.min, n.max = f["mean"], f["stddev"], f["min"], f["max"]
                n.histogram.bin_edges.extend(f["edges"])
                n.histogram.counts.extend(f["counts"])
        stub = registry_service_pb2_grpc.RegistryServiceStub(self.registry_channel)
        return int(stub.CreateModelVersion(request, metadata=self.md(), timeout=60).version.ref.version)

    def set_champion(self, name: str, version: int) -> None:
        stub = registry_service_pb2_grpc.RegistryServiceStub(self.registry_channel)
        stub.SetModelAlias(
            registry_service_pb2.SetModelAliasRequest(
                model_name=name, alias=rm.MODEL_ALIAS_CHAMPION, version=version, reason="test champion"
            ),
            metadata=self.md("rita", ["release-manager"]),
        )

    def get_version(self, name: str, version: int) -> rm.ModelVersion:
        stub = registry_service_pb2_grpc.RegistryServiceStub(self.registry_channel)
        ref = model_pb2.ModelRef(name=name, version=version)
        return stub.GetModelVersion(registry_service_pb2.GetModelVersionRequest(model=ref), metadata=self.md()).version

    # ---- validator side ----
    def start(
        self,
        name: str,
        version: int,
        policy: str = "",
        environment: environment_pb2.Environment.ValueType = environment_pb2.ENVIRONMENT_UNSPECIFIED,
        **fields,
    ) -> run_pb2.ValidationRun:
        request = vpb.StartValidationRequest(model=model_pb2.ModelRef(name=name, version=version), **fields)
        if environment:
            request.environment = environment
        else:
            request.policy_name = policy
        return self.validator.StartValidation(request, metadata=self.md(), timeout=60).run

    def wait(self, run_id: str, timeout: float = 300.0) -> run_pb2.ValidationRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.validator.GetValidationRun(vpb.GetValidationRunRequest(run_id=run_id), metadata=self.md()).run
            if run.state in TERMINAL:
                return run
            time.sleep(0.2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def validate(self, name: str, version: int, policy: str, **fields) -> run_pb2.ValidationRun:
        return self.wait(self.start(name, version, policy, **fields).run_id)

    def report(self, run_id: str) -> vpb.GetValidationReportResponse:
        return self.validator.GetValidationReport(vpb.GetValidationReportRequest(run_id=run_id), metadata=self.md())


def validator_env(root: Path, idp: DevIdentityProvider, registry_address: str, policies: Path, work: Path, **extra):
    token_file = root / "validator.token"
    token_file.write_text(idp.service_token("validator"))
    env = {
        "CAUSEWAY_VALIDATOR_DATA_DIR": str(root / "validator"),
        "CAUSEWAY_VALIDATOR_WORK_DIR": str(work),
        "CAUSEWAY_VALIDATOR_POLICIES_DIR": str(policies),
        "CAUSEWAY_VALIDATOR_REGISTRY_ADDRESS": registry_address,
        "CAUSEWAY_VALIDATOR_AUTH_JWKS": str(idp.jwks_path),
        "CAUSEWAY_VALIDATOR_AUTH_ISSUER": idp.issuer,
        "CAUSEWAY_VALIDATOR_AUTH_AUDIENCE": idp.audience,
        "CAUSEWAY_VALIDATOR_AUTH_SERVICE_TOKEN_FILE": str(token_file),
    }
    env.update({f"CAUSEWAY_VALIDATOR_{k}": v for k, v in extra.items()})
    return env


@contextlib.contextmanager
def validator_app(env: dict[str, str]) -> Iterator[tuple[ValidatorApp, GrpcServer, grpc.Channel]]:
    app = build_app(load_config(env))
    app.start()
    server = GrpcServer(app.bindings, test_settings(max_workers=16), interceptors=app.interceptors).start()
    channel = grpc.insecure_channel(server.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield app, server, channel
    finally:
        channel.close()
        server.stop(0)
        app.close()


@contextlib.contextmanager
def validator_stack(root: Path, extra_policies: dict[str, str] | None = None, **settings: str) -> Iterator[Stack]:
    """Registry subprocess + validator in-process; the work dir is under /tmp (the sandbox user
    cannot traverse Bazel's test directories under /root)."""
    idp = DevIdentityProvider(root / "idp")
    work = Path(tempfile.mkdtemp(prefix="causeway-validator-", dir="/tmp"))
    try:
        with registry_process(root / "registry", idp) as registry:
            registry_channel = grpc.insecure_channel(
                registry.address, options=[("grpc.max_send_message_length", 8 * CHUNK)]
            )
            env = validator_env(root, idp, registry.address, policies_dir(root, extra_policies), work, **settings)
            with validator_app(env) as (app, server, channel):
                yield Stack(idp, registry, registry_channel, app, server, channel, env)
            registry_channel.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
