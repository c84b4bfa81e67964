"""Where model versions come from: the interface the registry client implements.

`ModelSource` resolves a version, asks for the gates of the runner's environment and streams the
artifact by digest. It is the only door through which bytes reach a loader, and every
implementation is checked by `ArtifactCache` (digest) and `GatesBlocked` (governance) the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Protocol

from libs.errors.domain_errors import FailedPrecondition
from services.gpu_runner.domain.tensors import Signature

# Formats the registry knows (causeway.common.v1.ModelFormat without prefix).
TORCHSCRIPT = "TORCHSCRIPT"
SAFETENSORS = "SAFETENSORS"
ONNX = "ONNX"
MLFLOW_MODEL = "MLFLOW_MODEL"
TORCH_STATE_DICT = "TORCH_STATE_DICT"
PICKLE = "PICKLE"


@dataclasses.dataclass(frozen=True)
class ResolvedVersion:
    """A registered version as the registry describes it."""

    name: str
    version: int
    format: str
    digest: str  # sha256 hex of the artifact
    size_bytes: int
    layout: str  # "FILE" or "TAR" (a directory, e.g. an MLflow model)
    signature: Signature | None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    filename: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"


@dataclasses.dataclass(frozen=True)
class FailedGate:
    gate: str  # e.g. "VALIDATION"
    status: str  # e.g. "FAILED"
    message: str


class GatesBlocked(FailedPrecondition):
    """The registry said BLOCKED for the runner's environment; carries each failing gate."""

    def __init__(self, name: str, version: int, environment: str, failed: list[FailedGate]) -> None:
        reasons = "; ".join(f"{g.gate}: {g.message}" for g in failed) or "no reason given"
        super().__init__(f"{name} version {version} may not be loaded in {environment}: {reasons}")
        self.name = name
        self.version = version
        self.environment = environment
        self.failed = failed


class DigestMismatchError(FailedPrecondition):
    """The downloaded bytes do not hash to the version's recorded digest."""

    def __init__(self, message: str, *, declared: str, actual: str, declared_size: int, actual_size: int) -> None:
        super().__init__(message)
        self.declared = declared
        self.actual = actual
        self.declared_size = declared_size
        self.actual_size = actual_size


class ModelSource(Protocol):
    environment: str

    def resolve(self, name: str, version: int) -> ResolvedVersion:
        """The version's record; NotFound if there is none."""

    def check_gates(self, version: ResolvedVersion) -> None:
        """Return if the version may be loaded in `environment`, else raise GatesBlocked."""

    def artifact_chunks(self, digest: str) -> Iterator[bytes]:
        """The artifact's bytes, streamed (not yet verified: the caller hashes them)."""
