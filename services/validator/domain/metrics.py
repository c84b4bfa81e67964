"""Golden-set metrics from predictions and labels (numpy only, deterministic).

How model outputs are read is set by version tags (README "Model tags"):
  task    binary-classification | multiclass-classification | regression
  output  probabilities (default) | logits   (classification only)

Binary: an output of shape [n] or [n, 1] is the positive-class score, [n, 2] two class scores
(column 1 is positive); the predicted class is score >= decision_threshold (default 0.5).
Multiclass: [n, k] class scores, argmax; F1 and AUROC are macro averages (AUROC one-vs-rest over
the classes present in the labels). Regression: [n] or [n, 1]; RMSE and MAE.
"""

from __future__ import annotations

import numpy as np

BINARY, MULTICLASS, REGRESSION = "binary-classification", "multiclass-classification", "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
OUTPUT_KINDS = ("probabilities", "logits")


class MetricError(ValueError):
    """Predictions or labels cannot be scored as the task says (shape, range, classes)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def auroc_binary(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic, ties counted half (Mann-Whitney U)."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise MetricError("AUROC needs both classes in the golden labels")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def f1_binary(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(predicted & labels))
    fp = float(np.sum(predicted & ~labels))
    fn = float(np.sum(~predicted & labels))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _binary_scores(pred: np.ndarray, output: str) -> np.ndarray:
    if pred.ndim == 2 and pred.shape[1] == 2:
        probs = _softmax(pred) if output == "logits" else pred
        return probs[:, 1]
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim != 1:
        raise MetricError(f"binary classification needs outputs [n], [n, 1] or [n, 2], got {list(pred.shape)}")
    return _sigmoid(pred) if output == "logits" else pred


def classification(
    pred: np.ndarray, labels: np.ndarray, *, task: str, output: str = "probabilities", decision_threshold: float = 0.5
) -> dict[str, float]:
    labels = np.asarray(labels).reshape(-1)
    if pred.shape[0] != labels.shape[0]:
        raise MetricError(f"{pred.shape[0]} predictions for {labels.shape[0]} labels")
    if task == BINARY:
        scores = _binary_scores(pred, output)
        if output == "probabilities" and (np.nanmin(scores) < 0 or np.nanmax(scores) > 1):
            raise MetricError("scores are outside [0, 1]: tag the version output=logits if the model emits logits")
        truth = labels.astype(np.int64)
        if not set(np.unique(truth)) <= {0, 1}:
            raise MetricError("binary labels must be 0 or 1")
        truth_b = truth.astype(bool)
        predicted = scores >= decision_threshold
        return {
            "accuracy": float(np.mean(predicted == truth_b)),
            "f1": f1_binary(truth_b, predicted),
            "auroc": auroc_binary(truth_b, scores),
        }
    if task == MULTICLASS:
        if pred.ndim != 2 or pred.shape[1] < 2:
            raise MetricError(f"multiclass classification needs outputs [n, k], got {list(pred.shape)}")
        probs = _softmax(pred) if output == "logits" else pred
        truth = labels.astype(np.int64)
        if truth.min() < 0 or truth.max() >= probs.shape[1]:
            raise MetricError(f"labels must be class indices in [0, {probs.shape[1] - 1}]")
        predicted = np.argmax(probs, axis=1)
        classes = np.unique(truth)
        f1s = [f1_binary(truth == c, predicted == c) for c in classes]
        aucs = [auroc_binary(truth == c, probs[:, c]) for c in classes] if len(classes) > 1 else []
        out = {"accuracy": float(np.mean(predicted == truth)), "f1": float(np.mean(f1s))}
        if aucs:
            out["auroc"] = float(np.mean(aucs))
        return out
    raise MetricError(f"unknown classification task {task!r}")


def regression(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    truth = np.asarray(labels, dtype=np.float64).reshape(-1)
    if pred.ndim != 1 or pred.shape[0] != truth.shape[0]:
        raise MetricError(f"regression needs outputs [n] or [n, 1] for {truth.shape[0]} labels, got {list(pred.shape)}")
    err = pred.astype(np.float64) - truth
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def compute(
    predictions: list, labels: list, *, task: str, output: str = "probabilities", decision_threshold: float = 0.5
) -> dict[str, float]:
    """All metrics of `task` for the predictions and labels a worker reported."""
    pred = np.asarray(predictions, dtype=np.float64)
    if pred.size == 0:
        raise MetricError("no predictions")
    if np.isnan(pred).any():
        raise MetricError("the model produced NaN predictions")
    if task == REGRESSION:
        return regression(pred, np.asarray(labels))
    if output not in OUTPUT_KINDS:
        raise MetricError(f"output tag must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    return classification(pred, np.asarray(labels), task=task, output=output, decision_threshold=decision_threshold)
