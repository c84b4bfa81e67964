"""The validation report: a causeway.validator.v1.ValidationReport, its canonical JSON and digest.

The bytes recorded in the registry (and bound by approvals) are the RFC 8785 canonicalization of
the report's proto3 JSON mapping; the digest is their SHA-256. The report never contains its own
digest. Protobuf messages are used here only as the schema of those bytes (no gRPC).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Mapping, Sequence

from google.protobuf import json_format

from causeway.common.v1 import digest_pb2, environment_pb2, model_pb2, validation_pb2
from causeway.validator.v1 import policy_pb2, report_pb2
from services.validator.domain.canonical_json import canonicalize
from services.validator.domain.policy_model import GE, Threshold
from services.validator.domain.results import CheckResult


def digest(hex_value: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_value)


def check_type_enum(name: str) -> policy_pb2.CheckType.ValueType:
    return policy_pb2.CheckType.Value("CHECK_TYPE_" + name)


def status_enum(name: str) -> report_pb2.CheckStatus.ValueType:
    return report_pb2.CheckStatus.Value("CHECK_STATUS_" + name) if name else report_pb2.CHECK_STATUS_UNSPECIFIED


def severity_enum(name: str) -> policy_pb2.CheckSeverity.ValueType:
    return policy_pb2.CheckSeverity.Value("CHECK_SEVERITY_" + name)


def format_enum(name: str) -> model_pb2.ModelFormat.ValueType:
    return model_pb2.ModelFormat.Value("MODEL_FORMAT_" + name.upper()) if name else model_pb2.MODEL_FORMAT_UNSPECIFIED


def environment_enum(name: str) -> environment_pb2.Environment.ValueType:
    return (
        environment_pb2.Environment.Value("ENVIRONMENT_" + name.upper())
        if name
        else environment_pb2.ENVIRONMENT_UNSPECIFIED
    )


def verdict_enum(name: str) -> validation_pb2.ValidationVerdict.ValueType:
    if not name:
        return validation_pb2.VALIDATION_VERDICT_UNSPECIFIED
    return validation_pb2.ValidationVerdict.Value("VALIDATION_VERDICT_" + name)


def threshold_proto(t: Threshold) -> policy_pb2.MetricThreshold:
    comparator = policy_pb2.COMPARATOR_GREATER_OR_EQUAL if t.comparator == GE else policy_pb2.COMPARATOR_LESS_OR_EQUAL
    msg = policy_pb2.MetricThreshold(metric=t.metric, comparator=comparator)
    if t.max_relative_degradation is not None:
        msg.max_relative_degradation = float(t.max_relative_degradation)
    elif t.absolute is not None:
        msg.absolute = float(t.absolute)
    return msg


def check_result_proto(result: CheckResult) -> report_pb2.CheckResult:
    msg = report_pb2.CheckResult(
        name=result.name,
        type=check_type_enum(result.type),
        status=status_enum(result.status),
        severity=severity_enum(result.severity),
        message=result.message,
    )
    msg.evidence.update(dict(result.evidence))
    for m in result.metrics:
        msg.metrics.add(name=m.name, value=m.value, unit=m.unit)
    for t in result.thresholds:
        out = msg.thresholds.add(
            threshold=threshold_proto(t.threshold),
            candidate_value=t.candidate_value,
            effective_bound=t.effective_bound,
            status=status_enum(t.status),
        )
        if t.champion_value is not None and math.isfinite(t.champion_value):
            out.champion_value = t.champion_value
    msg.start_time.FromDatetime(result.start_time)
    msg.duration.FromNanoseconds(round(result.duration_seconds * 1e9))
    return msg


@dataclasses.dataclass(frozen=True)
class ReportInput:
    run_id: str
    model: tuple[str, int]
    artifact_digest: str
    format: str
    policy_name: str
    policy_digest: str
    environment: str
    champion: tuple[str, int] | None
    verdict: str
    checks: Sequence[CheckResult]
    start_time: dt.datetime
    finish_time: dt.datetime
    runtime_info: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class SealedReport:
    proto: report_pb2.ValidationReport
    json: bytes
    digest: str


def build(data: ReportInput) -> SealedReport:
    """The report message, its canonical JSON bytes and their SHA-256 (hex)."""
    msg = report_pb2.ValidationReport(
        run_id=data.run_id,
        model=model_pb2.ModelRef(name=data.model[0], version=data.model[1]),
        artifact_digest=digest(data.artifact_digest),
        format=format_enum(data.format),
        policy_name=data.policy_name,
        policy_digest=digest(data.policy_digest),
        environment=environment_enum(data.environment),
        verdict=verdict_enum(data.verdict),
    )
    if data.champion is not None:
        msg.champion.CopyFrom(model_pb2.ModelRef(name=data.champion[0], version=data.champion[1]))
    msg.checks.extend(check_result_proto(c) for c in data.checks)
    msg.start_time.FromDatetime(data.start_time)
    msg.finish_time.FromDatetime(data.finish_time)
    msg.runtime_info.update({k: str(v) for k, v in data.runtime_info.items()})
    body = canonicalize(json_format.MessageToDict(msg))
    return SealedReport(proto=msg, json=body, digest=hashlib.sha256(body).hexdigest())


def parse(report_json: bytes) -> report_pb2.ValidationReport:
    """The structured report back from its recorded bytes."""
    return json_format.Parse(report_json, report_pb2.ValidationReport())
