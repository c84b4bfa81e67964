"""The golden dataset inside the sandbox: parsing (Parquet or safetensors), model inputs, feature stats.

Datasets are untrusted bytes as much as models are (Parquet readers have had code-execution
bugs), so they are parsed here and never in the service.

Features are named after their columns: a scalar column `c` is feature `c`; a vector column (or
2-D tensor) `x` of width k gives features `x:0` .. `x:k-1` (the registry allows ":" in feature
names, not brackets). An input tensor is read from the column its name maps to
(GoldenDataset.input_mapping, default: the same name); a mapping value with commas
("f0,f1,f2") stacks those scalar columns into one [rows, 3] tensor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .protocol import OIP_TO_NUMPY

MAX_CATEGORIES = 50


@dataclasses.dataclass
class Golden:
    inputs: list[np.ndarray]
    labels: np.ndarray
    features: dict[str, np.ndarray]  # float64 with NaN for missing, or object arrays for categories
    rows: int
    input_error: str = ""  # set when the features could be read but not fed to the model


class InputError(ValueError):
    def __init__(self, message: str, features: dict[str, np.ndarray]) -> None:
        super().__init__(message)
        self.features = features


def _read_columns(path: str, fmt: str, max_rows: int) -> dict[str, np.ndarray]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if table.num_rows > max_rows:
            raise ValueError(f"golden dataset has {table.num_rows} rows; the limit is {max_rows}")
        columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if hasattr(column.type, "value_type"):  # list / fixed_size_list: one vector per row
                rows = column.to_pylist()
                width = max((len(r) for r in rows if r is not None), default=0)
                data = np.full((len(rows), width), np.nan)
                for i, row in enumerate(rows):
                    if row is not None:
                        data[i, : len(row)] = [np.nan if v is None else v for v in row]
                columns[name] = data
            else:
                values = column.to_numpy(zero_copy_only=False)
                if values.dtype == object and any(isinstance(v, str) for v in values):
                    columns[name] = values
                else:
                    columns[name] = np.asarray(values, dtype=np.float64)
        return columns
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(path)
        rows = {t.shape[0] for t in tensors.values() if t.ndim >= 1}
        if len(rows) != 1:
            raise ValueError(f"golden tensors disagree on the number of rows: {sorted(rows)}")
        if rows.pop() > max_rows:
            raise ValueError(f"golden dataset has more than {max_rows} rows")
        return {k: np.asarray(v) for k, v in tensors.items()}
    raise ValueError(f"golden dataset format {fmt!r} is not supported (parquet, safetensors)")


def _column(columns: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in columns:
        raise ValueError(f"golden dataset has no column {name!r}; it has {sorted(columns)}")
    return columns[name]


def _input_tensor(
    columns: dict[str, np.ndarray], source: str, spec: dict[str, Any]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The input tensor read from `source` and the raw per-feature columns it is made of."""
    names = [s.strip() for s in source.split(",") if s.strip()]
    if len(names) > 1:
        feats = {n: _column(columns, n) for n in names}
        data = np.stack([np.asarray(v, dtype=np.float64) for v in feats.values()], axis=1)
    else:
        data = _column(columns, names[0])
        width = data.shape[1] if data.ndim == 2 else 0
        feats = {f"{names[0]}:{i}": data[:, i] for i in range(width)} if width else {names[0]: data}
    shape = list(spec.get("shape", []))
    if data.ndim == 1 and len(shape) == 2 and shape[1] == 1:
        data = data.reshape(-1, 1)
    dtype = OIP_TO_NUMPY.get(spec.get("datatype", "FP32"), "float32")
    try:
        return np.ascontiguousarray(data.astype(dtype)), feats
    except (TypeError, ValueError) as err:
        raise InputError(f"input {spec['name']!r} from {source!r} cannot be read as {dtype}: {err}", feats) from err


def load_golden(job: dict[str, Any]) -> Golden:
    """Read the golden dataset described by job["golden"] and shape it for job["inputs"]."""
    golden = job["golden"]
    columns = _read_columns(golden["path"], golden["format"], int(golden.get("max_rows", 1_000_000)))
    mapping = golden.get("input_mapping", {})
    inputs: list[np.ndarray] = []
    features: dict[str, np.ndarray] = {}
    errors: list[str] = []
    for spec in job.get("inputs", []):
        try:
            tensor, feats = _input_tensor(columns, mapping.get(spec["name"], spec["name"]), spec)
        except InputError as err:
            errors.append(str(err))
            features.update(err.features)
            continue
        inputs.append(tensor)
        features.update(feats)
    labels = np.asarray(_column(columns, golden["label_key"])) if golden.get("label_key") else np.zeros(0)
    rows = len(next(iter(features.values()))) if features else len(labels)
    return Golden(inputs=inputs, labels=labels, features=features, rows=rows, input_error="; ".join(errors))


def _numeric_stats(values: np.ndarray, edges: list[float] | None) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    stats: dict[str, Any] = {"kind": "numeric", "count": int(values.size), "missing": int(values.size - present.size)}
    if present.size:
        stats.update(
            min=float(present.min()),
            max=float(present.max()),
            mean=float(present.mean()),
            stddev=float(present.std()),
        )
    if edges and len(edges) >= 2:
        counts, _ = np.histogram(present, bins=np.asarray(edges, dtype=np.float64))
        stats["histogram"] = {
            "counts": [int(c) for c in counts],
            "below": int((present < edges[0]).sum()),
            "above": int((present > edges[-1]).sum()),
        }
    return stats


def _categorical_stats(values: np.ndarray) -> dict[str, Any]:
    missing = sum(1 for v in values if v is None)
    uniques: dict[str, int] = {}
    for v in values:
        if v is not None:
            uniques[str(v)] = uniques.get(str(v), 0) + 1
    top = sorted(uniques.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
    return {
        "kind": "categorical",
        "count": len(values),
        "missing": missing,
        "distinct": len(uniques),
        "top": [{"value": k, "count": c} for k, c in top],
    }


def feature_stats(golden: Golden, edges: dict[str, list[float]]) -> dict[str, Any]:
    """Per-feature statistics of the golden set; histograms on the baseline's own bin edges."""
    out = {}
    for name, values in sorted(golden.features.items()):
        if values.dtype == object:
            out[name] = _categorical_stats(values)
        else:
            out[name] = _numeric_stats(values, edges.get(name))
    return {"rows": golden.rows, "features": out}
