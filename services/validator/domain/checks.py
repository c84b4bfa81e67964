"""The pluggable checks: one class per CheckType, each turning facts into an Outcome.

A check gets the run's context and its spec from the policy. It never loads anything itself: the
context fetches verified bytes and talks to sandboxed workers; the check judges what comes back.
Add a check by writing a class with `type` and `run()` and registering it in `default_checks()`.
"""

from __future__ import annotations

from typing import Any, Protocol

from libs.errors.domain_errors import DataLoss, NotFound
from services.validator.domain import features as feature_rules
from services.validator.domain import metrics as metric_rules
from services.validator.domain import policy_model as pm
from services.validator.domain import thresholds as th
from services.validator.domain.context import CheckRefused, RunContext, stopped_outcome
from services.validator.domain.ports import StepResult, WorkerStopped
from services.validator.domain.results import ERROR, FAILED, PASSED, Metric, Outcome
from services.validator.domain.signature import compare_signature


class Check(Protocol):
    type: str

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome: ...


def _metrics(values: dict[str, float], names: tuple[str, ...]) -> tuple[Metric, ...]:
    return tuple(Metric(n, float(values[n]), pm.UNITS.get(n, "")) for n in names if n in values)


def _model_step(ctx: RunContext, name: str, what: str) -> StepResult | Outcome:
    """The candidate worker's result for `name`, or the Outcome explaining why there is none."""
    try:
        result = ctx.step(ctx.model(), name)
    except WorkerStopped as err:
        return stopped_outcome(err, what)
    if not result.ok:
        status = FAILED if result.kind in ("model_error", "skipped") else ERROR
        return Outcome(status, f"{what}: {result.error}", {"error": result.error})
    return result


def _thresholded(spec: pm.CheckSpec, values: dict[str, float], evidence: dict[str, Any], **kwargs: Any) -> Outcome:
    outcomes = th.evaluate(spec.thresholds, values, **kwargs)
    names = pm.METRICS_BY_TYPE.get(spec.type, ())
    return Outcome(th.status_of(outcomes), th.describe(outcomes), evidence, _metrics(values, names), tuple(outcomes))


class DigestMatch:
    type = pm.DIGEST_MATCH

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        expected = ctx.version.artifact_digest
        try:
            download = ctx.artifact()
        except (DataLoss, NotFound) as err:
            return Outcome(FAILED, f"the registry could not deliver sha256:{expected}: {err.message}", {})
        evidence = {
            "expected": f"sha256:{expected}",
            "computed": f"sha256:{download.digest}",
            "size_bytes": download.size,
        }
        if download.digest != expected:
            return Outcome(FAILED, f"fetched bytes hash to sha256:{download.digest}, not sha256:{expected}", evidence)
        return Outcome(PASSED, f"sha256:{expected} ({download.size} bytes) matches the registry", evidence)


class ArtifactScan:
    type = pm.ARTIFACT_SCAN

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        try:
            result = ctx.scan()
        except WorkerStopped as err:
            return stopped_outcome(err, "the scanners were stopped")
        if not result.ok:
            return Outcome(ERROR, f"scanning failed: {result.error}", {"error": result.error})
        scanners = result.result.get("results", [])
        findings = sum(int(s.get("issues", 0)) + int(s.get("infected_files", 0) > 0) for s in scanners)
        errors = [s.get("scanner", "?") for s in scanners if s.get("error")]
        metrics = (Metric("findings", float(sum(int(s.get("issues", 0)) for s in scanners))),)
        evidence = {"scanners": scanners}
        if findings:
            names = sorted(
                {
                    f"{f.get('module')}.{f.get('name') or f.get('operator')}"
                    for s in scanners
                    for f in s.get("findings", [])
                }
            )
            return Outcome(FAILED, "unsafe content found: " + (", ".join(names) or "see evidence"), evidence, metrics)
        if errors:
            return Outcome(ERROR, f"scanner error in {', '.join(errors)}", evidence, metrics)
        scanned = sum(int(s.get("scanned_files", 0)) for s in scanners)
        note = "" if scanned else " (nothing pickle-based to scan in this format)"
        return Outcome(PASSED, f"picklescan and modelscan found nothing unsafe{note}", evidence, metrics)


class FormatAllowlist:
    type = pm.FORMAT_ALLOWLIST

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        fmt, allowed = ctx.version.format, list(ctx.policy.allowed_formats)
        evidence = {"format": fmt, "allowed_formats": allowed, "environment": ctx.policy.environment}
        if fmt in allowed:
            return Outcome(PASSED, f"format {fmt} is allowed by policy {ctx.policy.name}", evidence)
        return Outcome(
            FAILED, f"format {fmt} is not allowed by policy {ctx.policy.name} ({', '.join(allowed)})", evidence
        )


class SafeLoad:
    type = pm.SAFE_LOAD

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        step = _model_step(ctx, "load", "loading failed")
        if isinstance(step, Outcome):
            return step
        loader = str(step.result.get("loader", ""))
        evidence = dict(step.result) | {
            "load_seconds": round(step.seconds, 3),
            "worker_start_seconds": round(ctx.model_start_seconds, 3),  # sandbox set-up and imports
        }
        if "UNRESTRICTED" in loader:
            return Outcome(FAILED, f"loaded with {loader}, which is not a safe loader", evidence)
        return Outcome(PASSED, f"loaded in the sandbox with {loader}", evidence)


class SignatureMatch:
    type = pm.SIGNATURE_MATCH

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        step = _model_step(ctx, "signature", "the signature probe failed")
        if isinstance(step, Outcome):
            return step
        mismatches, notes = compare_signature(ctx.version, step.result)
        evidence = {"mismatches": mismatches, "notes": notes, "observed": step.result}
        if mismatches:
            return Outcome(FAILED, "declared signature does not match the model: " + "; ".join(mismatches), evidence)
        return Outcome(PASSED, "inputs and outputs match the registered signature on a probe batch", evidence)


class MetricGate:
    type = pm.METRIC_GATE

    def _score(self, ctx: RunContext, result: StepResult, spec: pm.CheckSpec) -> dict[str, float]:
        v = ctx.version
        data = result.result
        return metric_rules.compute(
            data.get("predictions", []),
            data.get("labels", []),
            task=v.task,
            output=v.output_kind,
            decision_threshold=float(spec.param("decision_threshold", 0.5)),
        )

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        v = ctx.version
        if v.task not in metric_rules.TASKS:
            return Outcome(FAILED, f"the version's tag task must be one of {', '.join(metric_rules.TASKS)}", {})
        applicable = pm.REGRESSION_METRICS if v.task == metric_rules.REGRESSION else pm.CLASSIFICATION_METRICS
        if not any(t.metric in applicable for t in spec.thresholds):
            return Outcome(FAILED, f"no threshold of this check applies to a {v.task} model", {})
        if ctx.golden() is None:
            return Outcome(FAILED, ctx.golden_error, {})
        step = _model_step(ctx, "predict", "scoring the golden set failed")
        if isinstance(step, Outcome):
            return step
        golden = v.golden
        assert golden is not None  # ctx.golden() found it
        evidence: dict[str, Any] = {
            "task": v.task,
            "golden_dataset": {
                "name": golden.name,
                "digest": f"sha256:{golden.digest}",
                "rows": step.result.get("rows"),
            },
        }
        try:
            values = self._score(ctx, step, spec)
        except metric_rules.MetricError as err:
            return Outcome(FAILED, f"cannot score the predictions: {err}", evidence)
        champion, champion_error = None, ""
        if ctx.champion is not None and any(t.relative for t in spec.thresholds):
            evidence["champion"] = {"model": ctx.champion.ref, "digest": f"sha256:{ctx.champion.artifact_digest}"}
            try:
                result = ctx.champion_predictions(int(spec.param("batch_size", 256)))
                if not result.ok:
                    raise CheckRefused(ERROR, result.error)
                champion = self._score(ctx, result, spec)
                evidence["champion"]["metrics"] = champion
            except (CheckRefused, WorkerStopped, metric_rules.MetricError) as err:
                champion_error = getattr(err, "message", None) or str(err)
        return _thresholded(
            spec, values, evidence, champion=champion, champion_error=champion_error, applicable=applicable
        )


class LatencyBudget:
    type = pm.LATENCY_BUDGET

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        step = _model_step(ctx, "latency", "timing inference failed")
        if isinstance(step, Outcome):
            return step
        values: dict[str, float] = {
            k: float(step.result[k]) for k in ("latency_p50_ms", "latency_p95_ms") if k in step.result
        }
        return _thresholded(spec, values, dict(step.result))


class MemoryBudget:
    type = pm.MEMORY_BUDGET

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        step = _model_step(ctx, "memory", "measuring memory failed")
        if isinstance(step, Outcome):
            return step
        values = {"peak_memory_bytes": float(step.result.get("peak_memory_bytes", 0))}
        return _thresholded(spec, values, dict(step.result) | {"limit_bytes": ctx.policy.sandbox.memory_bytes})


class Determinism:
    type = pm.DETERMINISM

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        step = _model_step(ctx, "determinism", "repeated inference failed")
        if isinstance(step, Outcome):
            return step
        diff = float(step.result.get("max_abs_diff", float("inf")))
        tolerance = float(spec.param("tolerance", 0.0))
        evidence = dict(step.result) | {"tolerance": tolerance}
        metrics = (Metric("max_abs_diff", diff),)
        if spec.thresholds:
            return _thresholded(spec, {"max_abs_diff": diff}, evidence)
        if diff <= tolerance:
            return Outcome(
                PASSED,
                f"{step.result.get('runs')} runs agree (max difference {diff:g} <= {tolerance:g})",
                evidence,
                metrics,
            )
        return Outcome(FAILED, f"repeated runs differ by up to {diff:g} (tolerance {tolerance:g})", evidence, metrics)


class FeatureConsistency:
    type = pm.FEATURE_CONSISTENCY

    def run(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        if not ctx.version.baseline:
            return Outcome(FAILED, "the version has no training baseline to compare against", {})
        if ctx.golden() is None:
            return Outcome(FAILED, ctx.golden_error, {})
        step = _model_step(ctx, "features", "reading the golden features failed")
        if isinstance(step, Outcome):
            return step
        values, evidence = feature_rules.compare(
            ctx.version.baseline, step.result, float(spec.param("range_tolerance", 0.0))
        )
        evidence["baseline_digest"] = f"sha256:{ctx.version.baseline_digest}" if ctx.version.baseline_digest else ""
        return _thresholded(spec, values, evidence)


def default_checks() -> dict[str, Check]:
    checks: list[Check] = [
        DigestMatch(),
        ArtifactScan(),
        FormatAllowlist(),
        SafeLoad(),
        SignatureMatch(),
        MetricGate(),
        LatencyBudget(),
        MemoryBudget(),
        Determinism(),
        FeatureConsistency(),
    ]
    return {c.type: c for c in checks}
