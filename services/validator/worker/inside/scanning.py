"""picklescan and modelscan over the artifact, inside the sandbox (they parse untrusted bytes).

Both read pickle opcodes without executing them; they decide what to scan by file extension,
which is why the launcher binds the artifact as /input/model.<ext> for its format.
"""

from __future__ import annotations

import logging
from typing import Any


def _picklescan(path: str) -> dict[str, Any]:
    from picklescan.scanner import SafetyLevel, scan_file_path

    result = scan_file_path(path)
    flagged = [
        {"module": g.module, "name": g.name, "safety": g.safety.name}
        for g in result.globals
        if g.safety != SafetyLevel.Innocuous
    ]
    return {
        "scanner": "picklescan",
        "issues": int(result.issues_count),
        "infected_files": int(result.infected_files),
        "scanned_files": int(result.scanned_files),
        "error": bool(result.scan_err),
        "findings": [f for f in flagged if f["safety"] == "Dangerous"],
        "suspicious": [f for f in flagged if f["safety"] != "Dangerous"],
    }


def _modelscan(path: str) -> dict[str, Any]:
    from modelscan.modelscan import ModelScan

    logging.getLogger("modelscan").setLevel(logging.ERROR)
    report = ModelScan().scan(path)
    summary = report.get("summary", {})
    issues = report.get("issues", [])
    return {
        "scanner": "modelscan",
        "issues": int(summary.get("total_issues", len(issues))),
        "scanned_files": int(summary.get("scanned", {}).get("total_scanned", 0)),
        "skipped_files": int(summary.get("skipped", {}).get("total_skipped", 0)),
        "error": bool(report.get("errors")),
        "errors": [str(e.get("description", e)) if isinstance(e, dict) else str(e) for e in report.get("errors", [])],
        "findings": [
            {k: str(i.get(k, "")) for k in ("severity", "module", "operator", "source", "description")} for i in issues
        ],
    }


def scan(path: str) -> dict[str, Any]:
    """Both scanners' results; the service decides what counts as a finding."""
    return {"results": [_picklescan(path), _modelscan(path)]}


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("picklescan", "modelscan"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out
