"""Evaluating a check's thresholds against measured (and champion) values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from services.validator.domain.policy_model import GE, Threshold
from services.validator.domain.results import ERROR, FAILED, PASSED, SKIPPED, ThresholdOutcome


def _holds(value: float, comparator: str, bound: float) -> bool:
    if not (math.isfinite(value) and math.isfinite(bound)):
        return False
    return value >= bound if comparator == GE else value <= bound


def relative_bound(champion: float, comparator: str, max_degradation: float) -> float:
    """The worst value still within `max_degradation` of the champion, in the bad direction."""
    slack = abs(champion) * max_degradation
    return champion - slack if comparator == GE else champion + slack


def evaluate(
    thresholds: Iterable[Threshold],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None = None,
    *,
    champion_error: str = "",
    applicable: Iterable[str] | None = None,
) -> list[ThresholdOutcome]:
    """One outcome per threshold.

    Thresholds on metrics outside `applicable` are SKIPPED (e.g. RMSE on a classifier); relative
    ones are SKIPPED without a champion, and ERROR when the champion could not be measured.
    """
    allowed = set(applicable) if applicable is not None else None
    out = []
    for t in thresholds:
        if allowed is not None and t.metric not in allowed:
            out.append(ThresholdOutcome(t, math.nan, math.nan, SKIPPED, note="metric does not apply to this model"))
            continue
        value = candidate.get(t.metric)
        if value is None:
            out.append(ThresholdOutcome(t, math.nan, math.nan, ERROR, note=f"{t.metric} was not measured"))
            continue
        if t.max_relative_degradation is None:
            assert t.absolute is not None, "a threshold is absolute or relative (policies.py checks)"
            bound = float(t.absolute)
            status = PASSED if _holds(value, t.comparator, bound) else FAILED
            out.append(ThresholdOutcome(t, value, bound, status))
            continue
        if champion_error:
            out.append(ThresholdOutcome(t, value, math.nan, ERROR, note=f"champion: {champion_error}"))
            continue
        if champion is None:
            out.append(ThresholdOutcome(t, value, math.nan, SKIPPED, note="no champion to compare against"))
            continue
        reference = champion.get(t.metric)
        if reference is None:
            out.append(ThresholdOutcome(t, value, math.nan, ERROR, note=f"champion {t.metric} was not measured"))
            continue
        bound = relative_bound(reference, t.comparator, t.max_relative_degradation)
        status = PASSED if _holds(value, t.comparator, bound) else FAILED
        out.append(ThresholdOutcome(t, value, bound, status, champion_value=reference))
    return out


def status_of(outcomes: Iterable[ThresholdOutcome]) -> str:
    """FAILED if any threshold failed, else ERROR if any errored, else PASSED."""
    statuses = [o.status for o in outcomes]
    if FAILED in statuses:
        return FAILED
    if ERROR in statuses:
        return ERROR
    return PASSED


def describe(outcomes: Iterable[ThresholdOutcome]) -> str:
    """A one-line summary, e.g. "auroc 0.912 >= 0.900; auroc 0.912 >= 0.906 (champion 0.915)"."""
    parts = []
    for o in outcomes:
        t = o.threshold
        if o.status == SKIPPED:
            parts.append(f"{t.metric} skipped ({o.note})")
        elif o.status == ERROR:
            parts.append(f"{t.metric} error ({o.note})")
        else:
            relation = t.comparator if o.status == PASSED else ("<" if t.comparator == GE else ">")
            text = f"{t.metric} {o.candidate_value:.6g} {relation} {o.effective_bound:.6g}"
            if o.champion_value is not None:
                text += f" (champion {o.champion_value:.6g}, at most {t.max_relative_degradation:.2%} worse)"
            parts.append(text)
    return "; ".join(parts)
