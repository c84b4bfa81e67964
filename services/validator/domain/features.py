"""Feature consistency: the golden set's features against the version's training baseline.

Metrics (all lower is better):
  schema_mismatches           baseline features missing from the golden set, golden features
                              the baseline does not know, and numeric/categorical kind changes
  range_violations            numeric features whose golden min/max lie outside the baseline's
                              [min, max] widened by range_tolerance x (max - min)
  missing_fraction_delta_max  largest |golden missing fraction - baseline missing fraction|
  psi_max                     largest population stability index over features with a baseline
                              histogram (golden values binned on the baseline's own edges; values
                              outside them count in two extra outer bins)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from services.validator.domain.versions import FeatureBaseline

PSI_EPSILON = 1e-4


def psi(expected: Iterable[float], actual: Iterable[float]) -> float:
    """Population stability index of two count vectors over the same bins."""
    e, a = list(expected), list(actual)
    te, ta = sum(e), sum(a)
    if te <= 0 or ta <= 0:
        return 0.0
    total = 0.0
    for ei, ai in zip(e, a, strict=True):
        pe = max(ei / te, PSI_EPSILON)
        pa = max(ai / ta, PSI_EPSILON)
        total += (pa - pe) * math.log(pa / pe)
    return total


def edges_for(baseline: Iterable[FeatureBaseline]) -> dict[str, list[float]]:
    """Histogram edges the worker must bin the golden features on."""
    return {f.name: list(f.bin_edges) for f in baseline if f.kind == "numeric" and len(f.bin_edges) >= 2}


def compare(
    baseline: Iterable[FeatureBaseline], golden: Mapping[str, Any], range_tolerance: float = 0.0
) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, evidence) comparing golden feature stats (from the worker) with the baseline."""
    base = {f.name: f for f in baseline}
    stats: Mapping[str, Mapping[str, Any]] = golden.get("features", {})
    missing = sorted(set(base) - set(stats))
    extra = sorted(set(stats) - set(base))
    kind_changes = sorted(
        n for n in set(base) & set(stats) if base[n].kind != "unknown" and base[n].kind != stats[n].get("kind")
    )
    out_of_range: list[dict[str, Any]] = []
    missing_deltas: dict[str, float] = {}
    psis: dict[str, float] = {}
    for name in sorted(set(base) & set(stats)):
        b, g = base[name], stats[name]
        count = max(int(g.get("count", 0)), 1)
        missing_deltas[name] = abs(int(g.get("missing", 0)) / count - b.missing_fraction)
        if b.kind != "numeric" or g.get("kind") != "numeric":
            continue
        if b.min is not None and b.max is not None and "min" in g:
            slack = (b.max - b.min) * range_tolerance
            if g["min"] < b.min - slack or g["max"] > b.max + slack:
                out_of_range.append(
                    {"feature": name, "golden": [g["min"], g["max"]], "baseline": [b.min, b.max], "tolerance": slack}
                )
        hist = g.get("histogram")
        if hist and b.counts and len(hist.get("counts", [])) == len(b.counts):
            expected = [0, *b.counts, 0]
            actual = [hist.get("below", 0), *hist["counts"], hist.get("above", 0)]
            psis[name] = psi(expected, actual)
    metrics = {
        "schema_mismatches": float(len(missing) + len(extra) + len(kind_changes)),
        "range_violations": float(len(out_of_range)),
        "missing_fraction_delta_max": max(missing_deltas.values(), default=0.0),
        "psi_max": max(psis.values(), default=0.0),
    }
    evidence = {
        "features_compared": len(set(base) & set(stats)),
        "missing_in_golden": missing,
        "not_in_baseline": extra,
        "kind_changed": kind_changes,
        "out_of_range": out_of_range,
        "psi": {k: round(v, 6) for k, v in sorted(psis.items())},
        "missing_fraction_delta": {k: round(v, 6) for k, v in sorted(missing_deltas.items())},
        "golden_rows": golden.get("rows", 0),
    }
    return metrics, evidence
