"""The single-machine runtime: the same deployments, applied to local gpu-runner processes.

Each environment has a "stable" runner (what serves the environment) and, for canaries, a
"canary" runner; both are real gpu-runner processes (RunnerService + Open Inference Protocol on
one port, Prometheus metrics on another). A direct deployment loads the version on the stable
runner (the runner checks the gates and the artifact digest itself), checks it is ready over
OIP, and unloads the version it replaces. A canary loads the new version on the canary runner,
then per step sends probe inferences split by the step's traffic share, scrapes both runners'
metrics and applies the AnalysisTemplate's criteria (domain/canary.py): promote moves the
version to the stable runner, abort unloads it. Decisions go to the audit chain via `progress`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
import urllib.request
from collections.abc import Callable

import grpc
import numpy as np

from causeway.common.v1 import model_pb2
from causeway.runner.v1 import model_pb2 as runner_model_pb2
from causeway.runner.v1 import runner_service_pb2 as rpb
from causeway.runner.v1 import runner_service_pb2_grpc as rgrpc
from inference import grpc_service_pb2 as oip
from inference import grpc_service_pb2_grpc as oip_grpc
from libs.auth.client_tokens import FileTokenSource
from libs.errors.domain_errors import FailedPrecondition, InvalidArgument
from services.deployer.clients.grpc_errors import translate
from services.deployer.domain import canary as analysis
from services.deployer.domain.records import CanaryAnalysis, Deployment, ModelRef, State

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16}


@dataclasses.dataclass(frozen=True)
class RunnerEndpoint:
    environment: str
    role: str  # "stable" or "canary"
    address: str
    metrics_url: str


def parse_runners(entries: tuple[str, ...]) -> dict[tuple[str, str], RunnerEndpoint]:
    """`<env>/<role>=<host:port>@<metrics url>` entries (the LOCAL_RUNNERS setting)."""
    out = {}
    for entry in entries:
        try:
            key, _, rest = entry.partition("=")
            env, role = key.split("/")
            address, metrics = rest.split("@", 1)
        except ValueError:
            raise InvalidArgument(f"LOCAL_RUNNERS entry {entry!r}: expected env/role=host:port@metrics_url") from None
        out[(env, role)] = RunnerEndpoint(env, role, address, metrics)
    return out


class _Runner:
    def __init__(self, endpoint: RunnerEndpoint, tokens: FileTokenSource) -> None:
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint.address)
        self.manage = rgrpc.RunnerServiceStub(self.channel)
        self.infer = oip_grpc.GRPCInferenceServiceStub(self.channel)
        self.tokens = tokens

    def _call(self, method, request, timeout: float = 300.0):
        try:
            return method(request, metadata=self.tokens.metadata(), timeout=timeout)
        except grpc.RpcError as err:
            raise translate(err, f"runner {self.endpoint.address}") from None

    def load(self, model: ModelRef) -> None:
        self._call(
            self.manage.LoadModel,
            rpb.LoadModelRequest(model=model_pb2.ModelRef(name=model.name, version=model.version)),
        )
        ready = self._call(self.infer.ModelReady, oip.ModelReadyRequest(name=model.name, version=str(model.version)))
        if not ready.ready:
            raise FailedPrecondition(f"{model} loaded but not ready on {self.endpoint.address}")

    def unload(self, model: ModelRef) -> None:
        try:
            self.manage.UnloadModel(
                rpb.UnloadModelRequest(model=model_pb2.ModelRef(name=model.name, version=model.version)),
                metadata=self.tokens.metadata(),
                timeout=60,
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise translate(err, f"runner {self.endpoint.address}") from None

    def loaded(self) -> list[tuple[str, int, bool]]:
        models = self._call(self.manage.ListModels, rpb.ListModelsRequest(), timeout=10).models
        return [(m.model.name, m.model.version, m.state == runner_model_pb2.LOADED_MODEL_STATE_READY) for m in models]

    def probe_request(self, model: ModelRef) -> oip.ModelInferRequest | None:
        """One inference of zeros shaped like the model's inputs (dynamic dims as 1)."""
        meta = self._call(
            self.infer.ModelMetadata, oip.ModelMetadataRequest(name=model.name, version=str(model.version))
        )
        request = oip.ModelInferRequest(model_name=model.name, model_version=str(model.version))
        for spec in meta.inputs:
            if spec.datatype not in NUMPY:
                return None  # cannot make up BYTES/BOOL inputs meaningfully
            shape = [d if d > 0 else 1 for d in spec.shape]
            request.inputs.append(
                oip.ModelInferRequest.InferInputTensor(name=spec.name, datatype=spec.datatype, shape=shape)
            )
            request.raw_input_contents.append(np.zeros(shape, dtype=NUMPY[spec.datatype]).tobytes())
        return request

    def send(self, request: oip.ModelInferRequest) -> None:
        # A failed call is counted by the runner's own metrics: that is what the analysis reads.
        with contextlib.suppress(grpc.RpcError):
            self.infer.ModelInfer(request, metadata=self.tokens.metadata(), timeout=30)

    def sample(self) -> analysis.Sample:
        with urllib.request.urlopen(self.endpoint.metrics_url, timeout=10) as response:  # noqa: S310 - configured URL
            return analysis.parse(response.read().decode())

    def close(self) -> None:
        self.channel.close()


class LocalRuntime:
    def __init__(
        self,
        runners: dict[tuple[str, str], RunnerEndpoint],
        tokens: FileTokenSource,
        *,
        probes_per_step: int = 40,
        max_pause_seconds: float = 30.0,
    ) -> None:
        self._runners = {key: _Runner(ep, tokens) for key, ep in runners.items()}
        self.probes_per_step = probes_per_step
        self.max_pause_seconds = max_pause_seconds
        self._aborts: dict[str, threading.Event] = {}
        self._traffic: dict[tuple[str, str], list[tuple[int, int]]] = {}

    @classmethod
    def from_config(cls, entries: tuple[str, ...], tokens: FileTokenSource, _registry=None) -> LocalRuntime:
        return cls(parse_runners(entries), tokens)

    def _runner(self, environment: str, role: str) -> _Runner:
        runner = self._runners.get((environment, role))
        if runner is None:
            raise FailedPrecondition(f"no local {role} runner for {environment} (LOCAL_RUNNERS)")
        return runner

    # ---- Runtime ------------------------------------------------------------------------------
    def apply(self, d: Deployment, progress: Callable[[State, str, CanaryAnalysis | None], None]) -> None:
        stable = self._runner(d.environment, "stable")
        previous = d.previous_model if d.previous_model and d.previous_model != d.model else None
        if d.strategy.kind != "canary" or previous is None:
            stable.load(d.model)
            if previous is not None:
                stable.unload(previous)
            self._traffic[(d.model.name, d.environment)] = [(d.model.version, 100)]
            progress(State.SUCCEEDED, f"live on the local runner {stable.endpoint.address}", None)
            return
        self._canary(d, stable, self._runner(d.environment, "canary"), previous, progress)

    def _canary(self, d: Deployment, stable: _Runner, canary: _Runner, previous: ModelRef, progress) -> None:
        stop = self._aborts.setdefault(d.deployment_id, threading.Event())
        key = (d.model.name, d.environment)
        canary.load(d.model)
        try:
            probe_new, probe_old = canary.probe_request(d.model), stable.probe_request(previous)
            for index, step in enumerate(d.strategy.steps):
                if stop.is_set():
                    return self._rollback(d, canary, previous, progress, "aborted by request")
                self._traffic[key] = [
                    (previous.version, 100 - step.traffic_percent),
                    (d.model.version, step.traffic_percent),
                ]
                before = (stable.sample(), canary.sample())
                deadline = time.monotonic() + min(step.pause_seconds, self.max_pause_seconds)
                to_canary = max(1, round(self.probes_per_step * step.traffic_percent / 100))
                for i in range(self.probes_per_step):
                    if probe_new is not None and i < to_canary:
                        canary.send(probe_new)
                    elif probe_old is not None:
                        stable.send(probe_old)
                while time.monotonic() < deadline and not stop.is_set():
                    time.sleep(0.05)
                stable_delta = stable.sample().minus(before[0])
                canary_delta = canary.sample().minus(before[1])
                results = analysis.evaluate(d.strategy.criteria, stable_delta, canary_delta)
                decision = analysis.decide(results)
                summary = ", ".join(
                    f"{r.criterion.metric}: canary {r.canary_value} vs stable {r.baseline_value} -> "
                    f"{'ok' if r.passed else ('no data' if r.passed is None else 'FAILED')}"
                    for r in results
                )
                report = CanaryAnalysis(
                    decision="pending" if decision == "promote" and step.traffic_percent < 100 else decision,
                    current_step=index,
                    traffic_percent=step.traffic_percent,
                    metrics=results,
                    message=summary,
                    analyze_time=dt.datetime.now(dt.UTC),
                )
                if decision == "abort":
                    progress(
                        State.CANARY, f"step {index} ({step.traffic_percent}%): analysis failed: {summary}", report
                    )
                    return self._rollback(
                        d, canary, previous, progress, f"canary analysis failed at {step.traffic_percent}%"
                    )
                progress(State.CANARY, f"step {index} ({step.traffic_percent}%): {summary}", report)
            stable.load(d.model)
            stable.unload(previous)
            self._traffic[key] = [(d.model.version, 100)]
            progress(State.SUCCEEDED, "canary promoted: the new version serves all traffic", None)
        finally:
            canary.unload(d.model)
            self._aborts.pop(d.deployment_id, None)

    def _rollback(self, d: Deployment, canary: _Runner, previous: ModelRef, progress, why: str) -> None:
        canary.unload(d.model)
        self._traffic[(d.model.name, d.environment)] = [(previous.version, 100)]
        progress(State.ABORTED, f"{why}; all traffic back on v{previous.version}", None)

    def abort(self, deployment_id: str) -> bool:
        event = self._aborts.get(deployment_id)
        if event is None:
            return False
        event.set()
        return True

    def status(self, model_name: str, environment: str) -> dict:
        runner = self._runners.get((environment, "stable"))
        if runner is None:
            return {}
        try:
            loaded = [(v, ready) for name, v, ready in runner.loaded() if name == model_name]
        except Exception:  # noqa: BLE001 - an unreachable runner is a status, not an error
            return {"healthy": False}
        version = max((v for v, _ in loaded), default=None)
        return {
            "version": version,
            "healthy": any(ready for _, ready in loaded),
            "traffic": self._traffic.get((model_name, environment)),
        }

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
