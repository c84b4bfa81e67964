"""Thresholds against absolute and champion-relative bounds, feature consistency, signatures."""

import datetime as dt
import math

import pytest

from services.validator.domain import features, signature, thresholds
from services.validator.domain.policy_model import Threshold
from services.validator.domain.results import CheckResult, verdict
from services.validator.domain.versions import FeatureBaseline, TensorSpec, VersionInfo

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

AUROC_ABS = Threshold("auroc", ">=", absolute=0.8)
AUROC_REL = Threshold("auroc", ">=", max_relative_degradation=0.01)
RMSE_REL = Threshold("rmse", "<=", max_relative_degradation=0.05)


def test_absolute_and_relative_bounds():
    out = thresholds.evaluate([AUROC_ABS, AUROC_REL], {"auroc": 0.85}, {"auroc": 0.90})
    assert [o.status for o in out] == ["PASSED", "FAILED"]
    assert out[1].effective_bound == pytest.approx(0.891)
    assert out[1].champion_value == 0.90
    assert thresholds.status_of(out) == "FAILED"
    assert "champion 0.9" in thresholds.describe(out)
    lower = thresholds.evaluate([RMSE_REL], {"rmse": 1.04}, {"rmse": 1.0})
    assert lower[0].status == "PASSED" and lower[0].effective_bound == pytest.approx(1.05)


def test_relative_without_champion_is_skipped_and_a_broken_champion_is_an_error():
    out = thresholds.evaluate([AUROC_ABS, AUROC_REL], {"auroc": 0.85}, None)
    assert [o.status for o in out] == ["PASSED", "SKIPPED"]
    assert thresholds.status_of(out) == "PASSED"
    out = thresholds.evaluate([AUROC_REL], {"auroc": 0.85}, None, champion_error="champion crashed")
    assert out[0].status == "ERROR" and thresholds.status_of(out) == "ERROR"


def test_metrics_of_another_task_are_skipped_and_nan_never_passes():
    out = thresholds.evaluate([AUROC_ABS, RMSE_REL], {"rmse": 1.0}, {"rmse": 1.0}, applicable=("rmse", "mae"))
    assert [o.status for o in out] == ["SKIPPED", "PASSED"]
    assert thresholds.evaluate([AUROC_ABS], {"auroc": math.nan})[0].status == "FAILED"


def test_verdict_rule():
    def res(status, severity="REQUIRED"):
        return CheckResult("c", "DETERMINISM", status, severity, "", {}, (), (), START, 0.0)

    assert verdict([res("PASSED"), res("FAILED", "ADVISORY")]) == "PASSED"
    assert verdict([res("ERROR"), res("PASSED")]) == "ERROR"
    assert verdict([res("ERROR"), res("FAILED")]) == "FAILED"
    assert verdict([res("SKIPPED"), res("PASSED")]) == "PASSED"


BASELINE = (
    FeatureBaseline("age", "numeric", 0.0, 18.0, 90.0, 50.0, 10.0, (18.0, 40.0, 60.0, 90.0), (30, 40, 30)),
    FeatureBaseline("dose", "numeric", 0.1, 0.0, 10.0, 5.0, 2.0),
    FeatureBaseline("site", "categorical", 0.0, categories=(("a", 10),)),
)


def _golden(age_counts, age_range=(18.0, 90.0), dose_missing=10, extra=False):
    feats = {
        "age": {
            "kind": "numeric",
            "count": 100,
            "missing": 0,
            "min": age_range[0],
            "max": age_range[1],
            "histogram": {"counts": list(age_counts), "below": 0, "above": 0},
        },
        "dose": {"kind": "numeric", "count": 100, "missing": dose_missing, "min": 0.0, "max": 10.0},
        "site": {"kind": "categorical", "count": 100, "missing": 0},
    }
    if extra:
        feats["weight"] = {"kind": "numeric", "count": 100, "missing": 0}
    return {"rows": 100, "features": feats}


def test_consistent_features():
    metrics, evidence = features.compare(BASELINE, _golden((30, 40, 30)))
    assert metrics == {
        "schema_mismatches": 0.0,
        "range_violations": 0.0,
        "missing_fraction_delta_max": pytest.approx(0.0),
        "psi_max": pytest.approx(0.0),
    }
    assert evidence["features_compared"] == 3


def test_drift_ranges_missing_values_and_schema_are_each_measured():
    metrics, evidence = features.compare(
        BASELINE, _golden((5, 10, 85), age_range=(10.0, 95.0), dose_missing=40, extra=True)
    )
    assert metrics["psi_max"] > 0.25
    assert metrics["range_violations"] == 1.0 and evidence["out_of_range"][0]["feature"] == "age"
    assert metrics["missing_fraction_delta_max"] == pytest.approx(0.3)
    assert metrics["schema_mismatches"] == 1.0 and evidence["not_in_baseline"] == ["weight"]
    # A tolerance of 10% of the baseline range admits 95 (90 + 7.2) but not 10 (18 - 7.2).
    metrics, _ = features.compare(BASELINE, _golden((30, 40, 30), age_range=(12.0, 95.0)), range_tolerance=0.1)
    assert metrics["range_violations"] == 0.0


def _version(inputs, outputs):
    return VersionInfo("m", 1, False, "a" * 64, 1, "onnx", tuple(inputs), tuple(outputs), {})


X = TensorSpec("x", "FP32", (-1, 12))
P = TensorSpec("p", "FP32", (-1, 1))


def test_signature_matches_and_mismatches():
    version = _version([X], [P])
    ok = {
        "artifact_inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 12]}],
        "outputs": [{"datatype": "FP32", "shape": [4, 1]}],
    }
    assert signature.compare_signature(version, ok) == ([], [])
    wrong_width = {"probe_error": "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x12 and 10x8)"}
    mismatches, _ = signature.compare_signature(version, wrong_width)
    assert "rejected a probe batch" in mismatches[0]
    wrong_out = {"outputs": [{"datatype": "FP32", "shape": [4, 3]}]}
    assert "declared [-1, 1]" in signature.compare_signature(version, wrong_out)[0][0]
    onnx_names = {
        "artifact_inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 12]}],
        "outputs": [{"datatype": "FP32", "shape": [4, 1]}],
    }
    assert "called 'input'" in signature.compare_signature(version, onnx_names)[0][0]
    torchscript_names = {"artifact_inputs": [{"name": "features"}], "outputs": [{"datatype": "FP32", "shape": [4, 1]}]}
    assert signature.compare_signature(version, torchscript_names) == (
        [],
        ["input 'x' is called 'features' in the artifact"],
    )
