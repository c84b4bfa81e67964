"""Comparing a version's registered signature with what the model really takes and returns.

Two sources of truth from the worker: what the artifact declares about itself (ONNX graphs carry
names, datatypes and shapes; TorchScript its forward() argument names) and what happened on a
probe batch built from the registered inputs (does the model accept it, and what comes out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.validator.domain.versions import TensorSpec, VersionInfo


def _shape_ok(declared: Sequence[int], actual: Sequence[int], *, dynamic_ok: bool) -> bool:
    if len(declared) != len(actual):
        return False
    for d, a in zip(declared, actual, strict=True):
        if d == -1 or (dynamic_ok and a == -1):
            continue
        if d != a:
            return False
    return True


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _against_artifact(
    kind: str, declared: Sequence[TensorSpec], artifact: Sequence[dict[str, Any]]
) -> tuple[list, list]:
    mismatches: list[str] = []
    notes: list[str] = []
    if not artifact:
        return mismatches, notes
    if len(artifact) != len(declared):
        mismatches.append(f"the artifact has {len(artifact)} {kind}s, the signature declares {len(declared)}")
        return mismatches, notes
    for spec, real in zip(declared, artifact, strict=True):
        name = real.get("name", "")
        typed = "datatype" in real
        if name and name != spec.name:
            # Formats that carry types (ONNX) are served by name, so a name is part of the contract;
            # TorchScript arguments are positional and a different name is only worth a note.
            (mismatches if typed else notes).append(f"{kind} {spec.name!r} is called {name!r} in the artifact")
        if typed and real["datatype"] != spec.datatype:
            mismatches.append(f"{kind} {spec.name!r} is {real['datatype']} in the artifact, declared {spec.datatype}")
        if "shape" in real and not _shape_ok(spec.shape, real["shape"], dynamic_ok=True):
            mismatches.append(
                f"{kind} {spec.name!r} has shape {_fmt(real['shape'])} in the artifact, declared {_fmt(spec.shape)}"
            )
    return mismatches, notes


def compare_signature(version: VersionInfo, observed: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(mismatches, notes): any mismatch fails SIGNATURE_MATCH; notes are informational."""
    mismatches, notes = _against_artifact("input", version.inputs, observed.get("artifact_inputs") or [])
    more, more_notes = _against_artifact("output", version.outputs, observed.get("artifact_outputs") or [])
    mismatches += more
    notes += more_notes
    if observed.get("probe_error"):
        mismatches.append(f"the model rejected a probe batch built from the declared inputs: {observed['probe_error']}")
        return mismatches, notes
    outputs = observed.get("outputs") or []
    declared = version.outputs
    if len(outputs) != len(declared):
        mismatches.append(f"the model returned {len(outputs)} outputs, the signature declares {len(declared)}")
        return mismatches, notes
    for spec, real in zip(declared, outputs, strict=True):
        if real.get("datatype") != spec.datatype:
            mismatches.append(f"output {spec.name!r} is {real.get('datatype')}, declared {spec.datatype}")
        if not _shape_ok(spec.shape, real.get("shape", []), dynamic_ok=False):
            mismatches.append(
                f"output {spec.name!r} has shape {_fmt(real.get('shape', []))}, declared {_fmt(spec.shape)}"
            )
    return mismatches, notes
