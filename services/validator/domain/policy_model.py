"""What a validation policy is: checks, thresholds, formats and sandbox limits (plain data).

Names mirror causeway.validator.v1: check types and severities are the enum names without their
prefix (`METRIC_GATE`, `REQUIRED`), formats the ModelFormat names in lower case (`safetensors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

DIGEST_MATCH = "DIGEST_MATCH"
ARTIFACT_SCAN = "ARTIFACT_SCAN"
FORMAT_ALLOWLIST = "FORMAT_ALLOWLIST"
SAFE_LOAD = "SAFE_LOAD"
SIGNATURE_MATCH = "SIGNATURE_MATCH"
METRIC_GATE = "METRIC_GATE"
LATENCY_BUDGET = "LATENCY_BUDGET"
MEMORY_BUDGET = "MEMORY_BUDGET"
DETERMINISM = "DETERMINISM"
FEATURE_CONSISTENCY = "FEATURE_CONSISTENCY"
CHECK_TYPES = (
    DIGEST_MATCH,
    ARTIFACT_SCAN,
    FORMAT_ALLOWLIST,
    SAFE_LOAD,
    SIGNATURE_MATCH,
    METRIC_GATE,
    LATENCY_BUDGET,
    MEMORY_BUDGET,
    DETERMINISM,
    FEATURE_CONSISTENCY,
)
# Checks that load or run the model in the sandbox.
MODEL_CHECKS = frozenset({SAFE_LOAD, SIGNATURE_MATCH, METRIC_GATE, LATENCY_BUDGET, MEMORY_BUDGET, DETERMINISM})
# A REQUIRED check of these types that does not pass stops everything after it (SKIPPED): a model
# whose bytes, scan, format, loading or interface is wrong is never run further.
GATING_CHECKS = frozenset({DIGEST_MATCH, ARTIFACT_SCAN, FORMAT_ALLOWLIST, SAFE_LOAD, SIGNATURE_MATCH})

REQUIRED, ADVISORY = "REQUIRED", "ADVISORY"
GE, LE = ">=", "<="

FORMATS = ("safetensors", "torchscript", "onnx", "torch_state_dict", "mlflow_model", "pickle")
# What each environment may allow (ADR 0003): code-free or IR formats everywhere, pickle-based torch
# weights (always loaded weights_only) in dev only, raw pickle never in an environment's policy.
ENVIRONMENT_FORMATS = {
    "prod": frozenset({"safetensors", "torchscript", "onnx"}),
    "test": frozenset({"safetensors", "torchscript", "onnx"}),
    "dev": frozenset({"safetensors", "torchscript", "onnx", "torch_state_dict"}),
}
ENVIRONMENTS = ("dev", "test", "prod")

# Metrics each check type measures (and thresholds may name).
CLASSIFICATION_METRICS = ("accuracy", "f1", "auroc")
REGRESSION_METRICS = ("rmse", "mae")
METRICS_BY_TYPE: Mapping[str, tuple[str, ...]] = {
    METRIC_GATE: CLASSIFICATION_METRICS + REGRESSION_METRICS,
    LATENCY_BUDGET: ("latency_p50_ms", "latency_p95_ms"),
    MEMORY_BUDGET: ("peak_memory_bytes",),
    DETERMINISM: ("max_abs_diff",),
    FEATURE_CONSISTENCY: ("psi_max", "schema_mismatches", "range_violations", "missing_fraction_delta_max"),
}
UNITS = {"latency_p50_ms": "ms", "latency_p95_ms": "ms", "peak_memory_bytes": "bytes"}

# Allowed parameters per check type: name -> (kind, minimum, maximum).
PARAMETERS: Mapping[str, Mapping[str, tuple[type, float, float]]] = {
    SIGNATURE_MATCH: {"batch_size": (int, 1, 4096)},
    METRIC_GATE: {"batch_size": (int, 1, 65536), "decision_threshold": (float, 0.0, 1.0)},
    LATENCY_BUDGET: {"batch_size": (int, 1, 4096), "requests": (int, 1, 100_000), "warmup": (int, 0, 10_000)},
    DETERMINISM: {"runs": (int, 2, 100), "rows": (int, 1, 100_000), "tolerance": (float, 0.0, 1e9)},
    FEATURE_CONSISTENCY: {"range_tolerance": (float, 0.0, 100.0)},
}


@dataclasses.dataclass(frozen=True)
class Threshold:
    """`metric comparator absolute`, or at most `max_relative_degradation` worse than the champion."""

    metric: str
    comparator: str
    absolute: float | None = None
    max_relative_degradation: float | None = None

    @property
    def relative(self) -> bool:
        return self.max_relative_degradation is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "comparator": self.comparator}
        if self.relative:
            out["max_relative_degradation"] = self.max_relative_degradation
        else:
            out["absolute"] = self.absolute
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        return cls(
            metric=data["metric"],
            comparator=data["comparator"],
            absolute=data.get("absolute"),
            max_relative_degradation=data.get("max_relative_degradation"),
        )


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    name: str
    type: str
    severity: str = REQUIRED
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    thresholds: tuple[Threshold, ...] = ()

    @property
    def required(self) -> bool:
        return self.severity == REQUIRED

    def param(self, name: str, default: Any) -> Any:
        return self.parameters.get(name, default)


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    cpu_seconds: int
    max_file_bytes: int
    wall_seconds: float


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    description: str
    environment: str  # "" for a policy no environment requires (e.g. test fixtures)
    digest: str  # sha256 hex of the policy file's bytes
    source: str
    checks: tuple[CheckSpec, ...]
    allowed_formats: tuple[str, ...]
    timeout_seconds: float
    sandbox: SandboxLimits

    def check_types(self) -> set[str]:
        return {c.type for c in self.checks}

    def first(self, check_type: str) -> CheckSpec | None:
        return next((c for c in self.checks if c.type == check_type), None)

    @property
    def unrestricted_pickle(self) -> bool:
        """Raw pickles are loaded (in the sandbox) only under policies no environment can require."""
        return not self.environment and "pickle" in self.allowed_formats
