"""Canary analysis over the runners' RED metrics: the same formulas as the AnalysisTemplate's PromQL.

In a cluster Argo Rollouts evaluates the PromQL in analysis.yaml; on one machine the deployer
scrapes each runner's /metrics before and after a step and computes the same numbers from the
deltas: error rate = non-OK ModelInfer calls / all ModelInfer calls; latency quantiles from the
grpc_server_handling_seconds histogram with Prometheus' histogram_quantile interpolation; a
relative bound compares canary / max(stable, floor) with 1 + max_relative_increase.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

from services.deployer.domain.records import CanaryCriterion, MetricResult

SERVICE, METHOD = "inference.GRPCInferenceService", "ModelInfer"
FLOORS = {"error_rate": 0.001}
DEFAULT_FLOOR = 0.0001


@dataclasses.dataclass(frozen=True)
class Sample:
    """Cumulative ModelInfer counters of one runner at one moment."""

    calls_by_code: dict[str, float]
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending

    def minus(self, earlier: Sample) -> Sample:
        codes = set(self.calls_by_code) | set(earlier.calls_by_code)
        calls = {c: self.calls_by_code.get(c, 0.0) - earlier.calls_by_code.get(c, 0.0) for c in codes}
        before = dict(earlier.buckets)
        return Sample(calls, tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets))


def parse(metrics_text: str) -> Sample:
    """The ModelInfer counters from a Prometheus text exposition."""
    calls: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.labels.get("grpc_service") != SERVICE or s.labels.get("grpc_method") != METHOD:
                continue
            if s.name == "grpc_server_handled_total":
                calls[s.labels["grpc_code"]] = calls.get(s.labels["grpc_code"], 0.0) + s.value
            elif s.name == "grpc_server_handling_seconds_bucket":
                buckets[float(s.labels["le"])] = s.value
    return Sample(calls, tuple(sorted(buckets.items())))


def error_rate(sample: Sample) -> float | None:
    total = sum(sample.calls_by_code.values())
    if total <= 0:
        return None
    return sum(n for code, n in sample.calls_by_code.items() if code != "OK") / total


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus histogram_quantile: linear interpolation inside the bucket holding rank q * count."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound  # the highest finite bound, as Prometheus does
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def value(metric: str, sample: Sample) -> float | None:
    if metric == "error_rate":
        return error_rate(sample)
    return quantile(0.99 if metric == "latency_p99_seconds" else 0.95, sample.buckets)


def evaluate(criteria: Sequence[CanaryCriterion], stable: Sample, canary: Sample) -> tuple[MetricResult, ...]:
    """Each criterion on this step's deltas; passed is None when the canary had no traffic."""
    results = []
    for criterion in criteria:
        base, cand = value(criterion.metric, stable), value(criterion.metric, canary)
        if cand is None:
            results.append(MetricResult(criterion, base, None, None))
            continue
        if criterion.max_value is not None:
            passed = cand <= criterion.max_value
        else:
            floor = FLOORS.get(criterion.metric, DEFAULT_FLOOR)
            passed = cand / max(base or 0.0, floor) <= 1.0 + (criterion.max_relative_increase or 0.0)
        results.append(MetricResult(criterion, base, cand, passed))
    return tuple(results)


def decide(results: Sequence[MetricResult]) -> str:
    """ "abort" if any criterion failed or had no data (inconclusive is not good enough), else "promote"."""
    return "promote" if results and all(r.passed for r in results) else "abort"
