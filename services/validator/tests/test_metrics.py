"""Golden-set metrics agree with scikit-learn and refuse what they cannot score."""

import numpy as np
import pytest
from sklearn import metrics as sk

from services.validator.domain import metrics


def test_binary_metrics_match_sklearn_including_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    scores = np.round(np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1), 2)  # many ties
    got = metrics.compute(scores.tolist(), labels.tolist(), task=metrics.BINARY)
    assert got["auroc"] == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, scores >= 0.5))
    assert got["f1"] == pytest.approx(sk.f1_score(labels, scores >= 0.5))


def test_logits_and_two_column_outputs():
    labels = np.array([0, 1, 1, 0, 1])
    logits = np.array([-2.0, 1.5, 0.2, -0.1, 3.0])
    got = metrics.compute(logits.reshape(-1, 1).tolist(), labels.tolist(), task=metrics.BINARY, output="logits")
    assert got["accuracy"] == 1.0 and got["auroc"] == 1.0
    two = np.stack([-logits, logits], axis=1)
    assert metrics.compute(two.tolist(), labels.tolist(), task=metrics.BINARY, output="logits")["auroc"] == 1.0


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[labels] * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = metrics.compute(probs.tolist(), labels.tolist(), task=metrics.MULTICLASS)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, probs.argmax(1)))
    assert got["f1"] == pytest.approx(sk.f1_score(labels, probs.argmax(1), average="macro"))
    assert got["auroc"] == pytest.approx(sk.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_regression_metrics():
    got = metrics.compute([[1.0], [2.0], [4.0]], [1.0, 1.0, 1.0], task=metrics.REGRESSION)
    assert got["mae"] == pytest.approx(4 / 3)
    assert got["rmse"] == pytest.approx(np.sqrt(10 / 3))


@pytest.mark.parametrize(
    ("pred", "labels", "kwargs", "fragment"),
    [
        ([0.2, 1.7], [0, 1], {"task": metrics.BINARY}, "outside [0, 1]"),
        ([0.2, 0.7], [0, 0], {"task": metrics.BINARY}, "both classes"),
        ([0.2, float("nan")], [0, 1], {"task": metrics.BINARY}, "NaN"),
        ([0.2], [0, 1], {"task": metrics.BINARY}, "1 predictions for 2 labels"),
        ([[0.1, 0.9]], [5], {"task": metrics.MULTICLASS}, "class indices"),
        ([0.5], [1], {"task": metrics.BINARY, "output": "raw"}, "output tag"),
    ],
)
def test_unscorable_predictions_are_refused(pred, labels, kwargs, fragment):
    with pytest.raises(metrics.MetricError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        metrics.compute(pred, labels, **kwargs)
