"""Everything a run's checks share: the version, the fetched bytes, the sandboxed workers, the clock.

Downloads and workers start lazily, once, when the first check needs them. Two rules hold no
matter what the policy lists: bytes are only handed to a worker after they hashed to the
version's digest, and the model is only loaded when its format is in the policy's allow-list.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from libs.errors.domain_errors import DataLoss, NotFound
from services.validator.domain import features as feature_rules
from services.validator.domain import policy_model as pm
from services.validator.domain.ports import (
    Download,
    RegistryPort,
    SandboxUnavailable,
    StepResult,
    WorkerPort,
    WorkerSessionPort,
    WorkerStopped,
)
from services.validator.domain.results import ERROR, FAILED, Outcome
from services.validator.domain.versions import DATASET_EXTENSIONS, FORMAT_EXTENSIONS, VersionInfo

SEED = 0  # every worker seeds Python, numpy and torch with this (recorded in runtime_info)
READY_TIMEOUT_SECONDS = 120.0


class RunAborted(Exception):
    """The run cannot go on for reasons outside the model (sandbox, registry, timeout): ERRORED."""


class RunCancelled(Exception):
    """Someone cancelled the run."""


class CheckRefused(Exception):
    """A check cannot pass for a reason found before measuring anything; carries its outcome."""

    def __init__(self, status: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = Outcome(status=status, message=message, evidence=evidence or {})


def stopped_outcome(err: WorkerStopped, what: str) -> Outcome:
    """A model that broke a sandbox limit FAILS the check; a crash of ours is an ERROR."""
    status = FAILED if err.violation else ERROR
    evidence = {"worker": err.message}
    if err.violation:
        evidence["violation"] = err.violation
    return Outcome(status=status, message=f"{what}: {err.message}", evidence=evidence)


class RunContext:
    def __init__(
        self,
        *,
        run_id: str,
        policy: pm.Policy,
        version: VersionInfo,
        champion: VersionInfo | None,
        registry: RegistryPort,
        workers: WorkerPort,
        deadline: float,
        cancelled: threading.Event,
    ) -> None:
        self.run_id = run_id
        self.policy = policy
        self.version = version
        self.champion = champion
        self.registry = registry
        self.workers = workers
        self.deadline = deadline
        self.cancelled = cancelled
        self.worker_runtime: dict[str, Any] = {}
        self.last_start_seconds = 0.0  # sandbox set-up and imports of the last worker started
        self.model_start_seconds = 0.0
        self._run_dir: Path | None = None
        self._downloads: dict[str, Download] = {}
        self._sessions: list[WorkerSessionPort] = []
        self._model: WorkerSessionPort | None = None
        self._golden: tuple[Path, str] | None = None
        self._golden_error = ""
        self._champion_result: StepResult | None = None
        self._lock = threading.Lock()

    # ---- time and cancellation ----
    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RunAborted(f"the run exceeded the policy's timeout of {self.policy.timeout_seconds:g} s")
        return left

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled()

    # ---- bytes ----
    def run_dir(self) -> Path:
        if self._run_dir is None:
            self._run_dir = self.workers.new_run_dir(self.run_id)
        return self._run_dir

    def download(self, digest: str, filename: str) -> Download:
        """Fetch `digest` once into the run dir; DataLoss/NotFound propagate, Unavailable aborts."""
        if digest not in self._downloads:
            self.check_cancelled()
            download = self.registry.download(digest, self.run_dir() / filename)
            self.workers.seal(download.path)
            self._downloads[digest] = download
        return self._downloads[digest]

    def artifact(self) -> Download:
        v = self.version
        return self.download(v.artifact_digest, "model" + FORMAT_EXTENSIONS.get(v.format, ".bin"))

    def verified_artifact(self, version: VersionInfo | None = None) -> Download:
        """The version's bytes, refusing (FAILED) when they do not hash to its recorded digest."""
        v = version or self.version
        ext = FORMAT_EXTENSIONS.get(v.format, ".bin")
        try:
            download = self.download(v.artifact_digest, ("model" if v is self.version else "champion") + ext)
        except (DataLoss, NotFound) as err:
            raise CheckRefused(FAILED, f"the registry could not deliver {v.ref}'s artifact: {err.message}") from err
        if download.digest != v.artifact_digest:
            raise CheckRefused(
                FAILED,
                f"{v.ref}: fetched bytes hash to sha256:{download.digest}, not the recorded sha256:{v.artifact_digest}",
            )
        return download

    def golden(self) -> tuple[Path, str] | None:
        """(path, format) of the verified golden dataset, or None with `golden_error` saying why."""
        if self._golden is not None or self._golden_error:
            return self._golden
        g = self.version.golden
        if g is None or not g.digest:
            self._golden_error = "the version has no golden dataset"
        elif g.format not in DATASET_EXTENSIONS:
            self._golden_error = f"golden dataset format {g.format!r} is not supported (parquet, safetensors)"
        else:
            try:
                download = self.download(g.digest, "golden" + DATASET_EXTENSIONS[g.format])
            except (DataLoss, NotFound) as err:
                self._golden_error = f"the golden dataset could not be fetched: {err.message}"
            else:
                if download.digest != g.digest:
                    self._golden_error = f"the golden dataset's bytes do not hash to sha256:{g.digest}"
                else:
                    self._golden = (download.path, g.format)
        return self._golden

    @property
    def golden_error(self) -> str:
        return self._golden_error

    # ---- workers ----
    def limits(self) -> pm.SandboxLimits:
        s = self.policy.sandbox
        return pm.SandboxLimits(s.memory_bytes, s.cpu_seconds, s.max_file_bytes, min(s.wall_seconds, self.remaining()))

    def start_worker(self, job: dict[str, Any], files: list[tuple[Path, str]]) -> WorkerSessionPort:
        self.check_cancelled()
        try:
            self.workers.preflight()
            session = self.workers.start({**job, "seed": SEED}, files, self.limits())
        except SandboxUnavailable as err:
            raise RunAborted(err.message) from err
        self._sessions.append(session)
        started = time.monotonic()
        try:
            ready = session.wait_ready(min(READY_TIMEOUT_SECONDS, self.remaining()))
        except WorkerStopped as err:
            if err.cancelled:
                raise RunCancelled() from err
            raise RunAborted(err.message) from err
        if not self.worker_runtime:
            self.worker_runtime = dict(ready)
        self.last_start_seconds = time.monotonic() - started
        return session

    def step(self, session: WorkerSessionPort, name: str) -> StepResult:
        """A step's result; WorkerStopped propagates (cancellation becomes RunCancelled)."""
        try:
            return session.result(name, self.remaining())
        except WorkerStopped as err:
            if err.cancelled or self.cancelled.is_set():
                raise RunCancelled() from err
            raise

    def scan(self) -> StepResult:
        download = self.verified_artifact()
        dest = "/input/" + download.path.name
        session = self.start_worker(
            {"kind": "scan", "artifact": {"path": dest, "format": self.version.format}}, [(download.path, dest)]
        )
        try:
            return self.step(session, "scan")
        finally:
            session.close()

    def _model_job(self, v: VersionInfo, dest: str, steps: dict[str, Any]) -> tuple[dict[str, Any], list]:
        job: dict[str, Any] = {
            "kind": "model",
            "artifact": {"path": dest, "format": v.format},
            "architecture": v.architecture,
            "task": v.task,
            "unrestricted_pickle": self.policy.unrestricted_pickle and v.format == "pickle",
            "inputs": [t.to_dict() for t in self.version.inputs],
            "outputs": [t.to_dict() for t in self.version.outputs],
            "input_names": [t.name for t in self.version.inputs],
            "output_names": [t.name for t in self.version.outputs],
            "golden": None,
            "steps": steps,
        }
        files: list[tuple[Path, str]] = []
        golden = self.golden() if any(s in steps for s in ("predict", "features", "determinism")) else None
        if golden is not None:
            path, fmt = golden
            g = self.version.golden
            assert g is not None  # golden() found its dataset
            job["golden"] = {
                "path": "/input/" + path.name,
                "format": fmt,
                "input_mapping": dict(g.input_mapping),
                "label_key": g.label_key,
            }
            files.append((path, "/input/" + path.name))
        return job, files

    def _require_format(self, v: VersionInfo) -> None:
        if v.format not in self.policy.allowed_formats:
            raise CheckRefused(
                FAILED, f"{v.ref}: format {v.format} is not allowed by policy {self.policy.name}; it is never loaded"
            )

    def model(self) -> WorkerSessionPort:
        """The candidate's model worker, started on first use with every step the policy needs."""
        with self._lock:
            if self._model is not None:
                return self._model
            self._require_format(self.version)
            download = self.verified_artifact()
            steps: dict[str, Any] = {}
            for spec in self.policy.checks:
                if spec.type == pm.SIGNATURE_MATCH:
                    steps["signature"] = {"batch_size": spec.param("batch_size", 4)}
                elif spec.type == pm.METRIC_GATE:
                    steps.setdefault("predict", {"batch_size": spec.param("batch_size", 256)})
                elif spec.type == pm.LATENCY_BUDGET:
                    steps["latency"] = dict(spec.parameters)
                elif spec.type == pm.MEMORY_BUDGET:
                    steps["memory"] = {}
                elif spec.type == pm.DETERMINISM:
                    steps["determinism"] = {k: v for k, v in spec.parameters.items() if k in ("runs", "rows")}
                elif spec.type == pm.FEATURE_CONSISTENCY:
                    steps["features"] = {"edges": feature_rules.edges_for(self.version.baseline)}
            dest = "/input/" + download.path.name
            job, files = self._model_job(self.version, dest, steps)
            self._model = self.start_worker(job, [(download.path, dest), *files])
            self.model_start_seconds = self.last_start_seconds
            return self._model

    def champion_predictions(self, batch_size: int) -> StepResult:
        """The champion's predictions on the candidate's golden set, in its own sandboxed worker."""
        if self._champion_result is not None:
            return self._champion_result
        champion = self.champion
        assert champion is not None
        self._require_format(champion)
        download = self.verified_artifact(champion)
        dest = "/input/" + download.path.name
        job, files = self._model_job(champion, dest, {"predict": {"batch_size": batch_size}})
        if pm.ARTIFACT_SCAN in self.policy.check_types():
            self._scan_champion(champion, download)
        session = self.start_worker(job, [(download.path, dest), *files])
        try:
            self._champion_result = self.step(session, "predict")
        finally:
            session.close()
        return self._champion_result

    def _scan_champion(self, champion: VersionInfo, download: Download) -> None:
        dest = "/input/" + download.path.name
        job = {"kind": "scan", "artifact": {"path": dest, "format": champion.format}}
        session = self.start_worker(job, [(download.path, dest)])
        try:
            result = self.step(session, "scan")
        finally:
            session.close()
        results = result.result.get("results", []) if result.ok else []
        if not result.ok or any(r.get("issues") or r.get("error") for r in results):
            raise CheckRefused(ERROR, f"the champion {champion.ref} did not pass the artifact scan")

    def close(self) -> None:
        """Kill every worker still running and delete the run's files."""
        for session in self._sessions:
            session.close("closed")
        if self._run_dir is not None:
            self.workers.remove_run_dir(self._run_dir)

    def kill_workers(self) -> None:
        for session in list(self._sessions):
            session.close("cancelled")
