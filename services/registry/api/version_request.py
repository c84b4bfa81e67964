"""Well-formedness of CreateModelVersion's structured fields, before the domain sees them.

Each problem becomes INVALID_ARGUMENT naming the field path, so a client can fix its request.
The result is the `metadata` dict the domain stores (proto3 JSON form).
"""

from __future__ import annotations

import math
import re
from typing import Any

from causeway.common.v1 import tensor_pb2
from causeway.registry.v1 import registry_service_pb2
from libs.errors.domain_errors import InvalidArgument
from services.registry.api.convert import digest_hex, to_dict
from services.registry.domain import naming

_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_.:\-/]{1,128}$")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_METRIC = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


def _bad(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {problem}")


def _tensors(specs, field: str) -> None:
    names = set()
    if len(specs) > 256:
        raise _bad(field, "at most 256 tensors")
    for i, spec in enumerate(specs):
        where = f"{field}[{i}]"
        if not _TENSOR_NAME.match(spec.name):
            raise _bad(f"{where}.name", "1-128 of letters, digits and _ . : - /")
        if spec.name in names:
            raise _bad(f"{where}.name", f"duplicate tensor name {spec.name!r}")
        names.add(spec.name)
        if spec.datatype == tensor_pb2.DATA_TYPE_UNSPECIFIED:
            raise _bad(f"{where}.datatype", "required")
        if len(spec.shape) > 16 or any(d < -1 for d in spec.shape):
            raise _bad(f"{where}.shape", "at most 16 dimensions, each -1 (dynamic) or >= 0")


def _safe(value: str, field: str, limit: int) -> str:
    return naming.text(value, field, limit)


def _lineage(lineage, field: str = "lineage") -> None:
    _safe(lineage.training_run_id, f"{field}.training_run_id", 256)
    _safe(lineage.training_run_uri, f"{field}.training_run_uri", 2048)
    if len(lineage.datasets) > 100:
        raise _bad(f"{field}.datasets", "at most 100 datasets")
    for i, dataset in enumerate(lineage.datasets):
        where = f"{field}.datasets[{i}]"
        _safe(dataset.name, f"{where}.name", 256)
        _safe(dataset.uri, f"{where}.uri", 2048)
        digest_hex(dataset.digest, f"{where}.digest", required=False)
        if dataset.row_count < 0:
            raise _bad(f"{where}.row_count", "must not be negative")
    code = lineage.code
    _safe(code.repository_url, f"{field}.code.repository_url", 2048)
    if code.commit_sha and not _COMMIT.match(code.commit_sha):
        raise _bad(f"{field}.code.commit_sha", "7-64 lowercase hexadecimal characters")
    if ".." in code.path.split("/") or code.path.startswith("/"):
        raise _bad(f"{field}.code.path", "a relative path inside the repository, without '..'")
    _safe(code.path, f"{field}.code.path", 1024)
    if lineage.HasField("parent"):
        naming.model_name(lineage.parent.name, f"{field}.parent.name")
        if lineage.parent.version < 1:
            raise _bad(f"{field}.parent.version", "must be 1 or more")


def _baseline(baseline, field: str = "training_baseline") -> None:
    digest_hex(baseline.dataset_digest, f"{field}.dataset_digest", required=False)
    if baseline.sample_count < 0:
        raise _bad(f"{field}.sample_count", "must not be negative")
    names = set()
    for i, feature in enumerate(baseline.features):
        where = f"{field}.features[{i}]"
        if not _TENSOR_NAME.match(feature.name) or feature.name in names:
            raise _bad(f"{where}.name", "required, unique, 1-128 of letters, digits and _ . : - /")
        names.add(feature.name)
        if not 0.0 <= feature.missing_fraction <= 1.0:
            raise _bad(f"{where}.missing_fraction", "must be within [0, 1]")
        if feature.HasField("numeric"):
            hist = feature.numeric.histogram
            if hist.counts and len(hist.bin_edges) != len(hist.counts) + 1:
                raise _bad(f"{where}.numeric.histogram", "needs exactly one more bin edge than counts")
            values = [feature.numeric.mean, feature.numeric.stddev, feature.numeric.min, feature.numeric.max]
            if not all(math.isfinite(v) for v in values):
                raise _bad(f"{where}.numeric", "statistics must be finite numbers")


def metadata_of(request: registry_service_pb2.CreateModelVersionRequest) -> dict[str, Any]:
    """Validate the structured fields and return them as the domain's metadata dict."""
    _tensors(request.signature.inputs, "signature.inputs")
    _tensors(request.signature.outputs, "signature.outputs")
    _lineage(request.lineage)
    _baseline(request.training_baseline)
    if request.HasField("golden_dataset"):
        digest_hex(request.golden_dataset.dataset.digest, "golden_dataset.dataset.digest")
        _safe(request.golden_dataset.label_key, "golden_dataset.label_key", 256)
    if len(request.training_metrics) > 100:
        raise _bad("training_metrics", "at most 100 metrics")
    for key, value in request.training_metrics.items():
        if not _METRIC.match(key):
            raise _bad(f"training_metrics[{key[:40]!r}]", "name of 1-128 letters, digits and _ . - /")
        if not math.isfinite(value):
            raise _bad(f"training_metrics[{key!r}]", "must be a finite number")
    metadata: dict[str, Any] = {}
    for field in ("signature", "lineage", "training_baseline", "golden_dataset"):
        if request.HasField(field):
            metadata[field] = to_dict(getattr(request, field))
    if request.training_metrics:
        metadata["training_metrics"] = dict(request.training_metrics)
    return metadata
