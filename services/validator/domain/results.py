"""Check outcomes and the verdict rule (plain data, JSON round-trippable for the run store)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

from services.validator.domain.policy_model import Threshold

PASSED, FAILED, ERROR, SKIPPED = "PASSED", "FAILED", "ERROR", "SKIPPED"
STATUSES = (PASSED, FAILED, ERROR, SKIPPED)


def clean(value: Any) -> Any:
    """JSON-safe evidence: NaN/inf become strings, tuples lists, keys strings (Struct rules)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    return str(value)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str = ""


@dataclasses.dataclass(frozen=True)
class ThresholdOutcome:
    threshold: Threshold
    candidate_value: float
    effective_bound: float
    status: str
    champion_value: float | None = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check decided; the engine adds name, type, severity and timing."""

    status: str
    message: str
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    thresholds: tuple[ThresholdOutcome, ...] = ()


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    type: str
    status: str
    severity: str
    message: str
    evidence: Mapping[str, Any]
    metrics: tuple[Metric, ...]
    thresholds: tuple[ThresholdOutcome, ...]
    start_time: dt.datetime
    duration_seconds: float

    @classmethod
    def of(cls, spec: Any, outcome: Outcome, start: dt.datetime, seconds: float) -> CheckResult:
        return cls(
            name=spec.name,
            type=spec.type,
            status=outcome.status,
            severity=spec.severity,
            message=outcome.message,
            evidence=clean(dict(outcome.evidence)),
            metrics=outcome.metrics,
            thresholds=outcome.thresholds,
            start_time=start,
            duration_seconds=seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "severity": self.severity,
            "message": self.message,
            "evidence": clean(dict(self.evidence)),
            "metrics": [dataclasses.asdict(m) for m in self.metrics],
            "thresholds": [
                {
                    "threshold": t.threshold.to_dict(),
                    "candidate_value": t.candidate_value,
                    "effective_bound": t.effective_bound,
                    "status": t.status,
                    "champion_value": t.champion_value,
                    "note": t.note,
                }
                for t in self.thresholds
            ],
            "start_time": self.start_time.isoformat(),
            "duration_seconds": self.duration_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            name=data["name"],
            type=data["type"],
            status=data["status"],
            severity=data["severity"],
            message=data["message"],
            evidence=data.get("evidence", {}),
            metrics=tuple(Metric(**m) for m in data.get("metrics", [])),
            thresholds=tuple(
                ThresholdOutcome(
                    threshold=Threshold.from_dict(t["threshold"]),
                    candidate_value=t["candidate_value"],
                    effective_bound=t["effective_bound"],
                    status=t["status"],
                    champion_value=t.get("champion_value"),
                    note=t.get("note", ""),
                )
                for t in data.get("thresholds", [])
            ),
            start_time=dt.datetime.fromisoformat(data["start_time"]),
            duration_seconds=float(data["duration_seconds"]),
        )


def verdict(results: Iterable[CheckResult]) -> str:
    """REQUIRED checks decide: any FAILED -> FAILED, else any ERROR -> ERROR, else PASSED."""
    required = [r for r in results if r.severity == "REQUIRED"]
    if any(r.status == FAILED for r in required):
        return FAILED
    if any(r.status == ERROR for r in required):
        return ERROR
    return PASSED
