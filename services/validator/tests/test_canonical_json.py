"""RFC 8785 canonical JSON and the report built on it."""

import datetime as dt
import hashlib
import json
from typing import Any

import pytest

from services.validator.domain import report as reports
from services.validator.domain.canonical_json import canonicalize
from services.validator.domain.policy_model import Threshold
from services.validator.domain.results import CheckResult, Metric, ThresholdOutcome


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (333333333.33333329, "333333333.3333333"),
        (0.30000000000000004, "0.30000000000000004"),
        (12345678901234567890.0, "12345678901234567000"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(value, text):
    assert canonicalize(value) == text.encode()


def test_objects_are_sorted_by_utf16_code_units_without_whitespace():
    # RFC 8785 section 3.2.3 example ordering: "\u20ac" sorts before "\ud83d\ude00" in UTF-16.
    # U+FB33 sorts after U+1F600 in UTF-16 (surrogates D83D..), though not by code point.
    value = {"b": [1, True, None], "a": "x\n\u00e9", "\ufb33": 4, "\U0001f600": 1, "\u20ac": 2, "\r": 3}
    expected = '{"\\r":3,"a":"x\\n\u00e9","b":[1,true,null],"\u20ac":2,"\U0001f600":1,"\ufb33":4}'
    assert canonicalize(value) == expected.encode()


def test_nan_and_huge_integers_are_refused():
    with pytest.raises(ValueError):
        canonicalize(float("nan"))
    with pytest.raises(ValueError):
        canonicalize(2**60)


def _result(status="PASSED", value=0.91):
    t = Threshold("auroc", ">=", absolute=0.9)
    return CheckResult(
        name="gate",
        type="METRIC_GATE",
        status=status,
        severity="REQUIRED",
        message="auroc 0.91 >= 0.9",
        evidence={"rows": 200, "nested": {"a": [1, 2.5, "x"]}},
        metrics=(Metric("auroc", value),),
        thresholds=(ThresholdOutcome(t, value, 0.9, status),),
        start_time=dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
        duration_seconds=1.25,
    )


def _input(**overrides):
    base: dict[str, Any] = dict(
        run_id="r-1",
        model=("tox21", 3),
        artifact_digest="a" * 64,
        format="safetensors",
        policy_name="prod",
        policy_digest="b" * 64,
        environment="prod",
        champion=("tox21", 2),
        verdict="PASSED",
        checks=[_result()],
        start_time=dt.datetime(2026, 1, 2, 3, 4, 0, tzinfo=dt.UTC),
        finish_time=dt.datetime(2026, 1, 2, 3, 5, 0, tzinfo=dt.UTC),
        runtime_info={"torch": "2.13.0+cpu"},
    )
    base.update(overrides)
    return reports.ReportInput(**base)


def test_report_bytes_are_canonical_proto3_json_with_their_own_digest():
    sealed = reports.build(_input())
    assert sealed.digest == hashlib.sha256(sealed.json).hexdigest()
    # Canonical: re-serializing the parsed bytes gives the same bytes.
    assert canonicalize(json.loads(sealed.json)) == sealed.json
    data = json.loads(sealed.json)
    assert data["verdict"] == "VALIDATION_VERDICT_PASSED"
    assert data["model"] == {"name": "tox21", "version": "3"}  # int64 as a string (proto3 JSON)
    assert data["checks"][0]["evidence"]["rows"] == 200
    assert "reportDigest" not in data and sealed.digest not in sealed.json.decode()
    assert reports.parse(sealed.json) == sealed.proto


def test_same_content_same_digest_and_any_change_changes_it():
    assert reports.build(_input()).digest == reports.build(_input()).digest
    assert reports.build(_input(verdict="FAILED")).digest != reports.build(_input()).digest
    changed = _input(checks=[_result(value=0.9100000001)])
    assert reports.build(changed).digest != reports.build(_input()).digest


def test_check_results_round_trip_through_the_store_format():
    result = _result()
    assert CheckResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
