"""What the validator needs to know about a model version, as plain data (from the registry)."""

from __future__ import annotations

import dataclasses
from typing import Any

# Tags read by the validator (see README "Model tags").
TAG_TASK = "task"
TAG_ARCHITECTURE = "architecture"
TAG_OUTPUT = "output"

FORMAT_EXTENSIONS = {
    "safetensors": ".safetensors",
    "torchscript": ".pt",
    "onnx": ".onnx",
    "torch_state_dict": ".pt",
    "pickle": ".pkl",
    "mlflow_model": ".tar",
}
DATASET_EXTENSIONS = {"parquet": ".parquet", "safetensors": ".safetensors"}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # OIP name: FP32, INT64, ...
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclasses.dataclass(frozen=True)
class FeatureBaseline:
    name: str
    kind: str  # "numeric" | "categorical" | "unknown"
    missing_fraction: float = 0.0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    stddev: float | None = None
    bin_edges: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    categories: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass(frozen=True)
class GoldenDataset:
    name: str
    digest: str
    format: str  # "parquet" | "safetensors" | other (unsupported)
    input_mapping: dict[str, str]
    label_key: str
    row_count: int = 0


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    archived: bool
    artifact_digest: str
    artifact_size: int
    format: str  # lower-case ModelFormat name without prefix
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tags: dict[str, str]
    golden: GoldenDataset | None = None
    baseline: tuple[FeatureBaseline, ...] = ()
    baseline_digest: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def task(self) -> str:
        return self.tags.get(TAG_TASK, "")

    @property
    def architecture(self) -> str:
        return self.tags.get(TAG_ARCHITECTURE, "")

    @property
    def output_kind(self) -> str:
        return self.tags.get(TAG_OUTPUT, "probabilities")
