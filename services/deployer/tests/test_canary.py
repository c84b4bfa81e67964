"""Local canary analysis: the AnalysisTemplate's formulas over real Prometheus expositions."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from libs.telemetry.metrics import GrpcMetrics
from services.deployer.domain import canary
from services.deployer.domain.records import CanaryCriterion

INFER = "/inference.GRPCInferenceService/ModelInfer"


def _metrics(calls: list[tuple[str, float]]) -> str:
    """The exposition text a runner serves after `calls` (code, seconds) through libs/telemetry."""
    metrics = GrpcMetrics()
    metrics.finished("/inference.GRPCInferenceService/ServerLive", "OK", 5.0)  # other methods are ignored
    for code, seconds in calls:
        metrics.started(INFER)
        metrics.finished(INFER, code, seconds)
    return generate_latest(metrics.registry).decode()


def test_error_rate_and_latency_quantiles_from_deltas() -> None:
    before = canary.parse(_metrics([("OK", 0.003)] * 10))
    after = canary.parse(_metrics([("OK", 0.003)] * 10 + [("OK", 0.003)] * 90 + [("INTERNAL", 0.003)] * 10))
    delta = after.minus(before)
    assert canary.error_rate(delta) == pytest.approx(10 / 100)
    # 100 calls all in the (0.0025, 0.005] bucket: p99 interpolates to 0.0025 + 0.0025 * 0.99.
    assert canary.quantile(0.99, delta.buckets) == pytest.approx(0.0025 + 0.0025 * 0.99)


def test_no_traffic_is_no_data_and_aborts() -> None:
    empty = canary.parse(_metrics([]))
    results = canary.evaluate([CanaryCriterion("error_rate", max_value=0.1)], empty, empty)
    assert results[0].passed is None and canary.decide(results) == "abort"


def test_relative_and_absolute_bounds() -> None:
    stable = canary.parse(_metrics([("OK", 0.01)] * 100))
    slow = canary.parse(_metrics([("OK", 0.2)] * 100))
    fast = canary.parse(_metrics([("OK", 0.01)] * 100))
    relative = [CanaryCriterion("latency_p99_seconds", max_relative_increase=0.2)]
    assert canary.decide(canary.evaluate(relative, stable, fast)) == "promote"
    assert canary.decide(canary.evaluate(relative, stable, slow)) == "abort"
    errors = canary.parse(_metrics([("OK", 0.01)] * 99 + [("UNAVAILABLE", 0.01)]))
    # Error-free stable: the 0.001 floor keeps the ratio finite (1 % vs 0.1 % floor fails +10 %).
    assert (
        canary.decide(canary.evaluate([CanaryCriterion("error_rate", max_relative_increase=0.1)], stable, errors))
        == "abort"
    )
    assert canary.decide(canary.evaluate([CanaryCriterion("error_rate", max_value=0.02)], stable, errors)) == "promote"
