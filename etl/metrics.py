"""How predictions are scored (malignant = positive), in one place for the cross-validation of every candidate,
the choice of the operating threshold and the test-set evaluation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

DEFAULT_THRESHOLD = 0.5  # what a classifier's own `predict` uses


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Every metric of predicted probabilities against labels, the label ones at `threshold` (positive when the
    probability is at least the threshold, as sklearn's FixedThresholdClassifier decides)."""
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probabilities)),
        "pr_auc": float(average_precision_score(labels, probabilities)),
        "brier_score": float(brier_score_loss(labels, probabilities, labels=[0, 1])),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "decision_threshold": float(threshold),
    }


def operating_threshold(labels: np.ndarray, probabilities: np.ndarray, target_recall: float) -> float:
    """The highest threshold at which at least `target_recall` of the positives are flagged: the best
    specificity that reaches the target, since raising the threshold only clears more negatives. It always
    exists: at the lowest positive's probability every positive is flagged (recall 1)."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    if not len(positives):
        raise ValueError("no positive labels: a threshold for a target recall needs malignant cases")
    needed = math.ceil(round(target_recall * len(positives), 9))  # round: 0.97 * 100 is 97.00000000000001
    return float(positives[max(needed, 1) - 1])
