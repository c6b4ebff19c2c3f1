"""How predictions are scored (malignant = positive), in one place for the cross-validation of every candidate,
the choice of the operating threshold and the test-set evaluation."""

from __future__ import annotations

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


def recall_lower_bound(flagged: np.ndarray, positives: int, confidence: float) -> np.ndarray:
    """The one-sided lower confidence bound (Clopper-Pearson) on the recall when `flagged` of `positives` malignant
    cases are flagged; with confidence 0, the observed recall itself."""
    if confidence == 0:
        return flagged / positives
    from scipy.stats import beta  # scipy comes with scikit-learn

    return beta.ppf(1 - confidence, flagged, positives - flagged + 1)


def operating_threshold(labels: np.ndarray, probabilities: np.ndarray, target_recall: float,
                        confidence: float) -> tuple[float, bool]:
    """The highest threshold at which the recall reaches `target_recall` with `confidence` (the lower bound of
    its confidence interval reaches the target): the best specificity that does, since raising the threshold
    only clears more negatives. When none does (too few malignant cases to be that sure), the lowest malignant
    case's probability, flagging every one of them; the flag says whether the target was reached."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    if not len(positives):
        raise ValueError("no positive labels: a threshold for a target recall needs malignant cases")
    flagged = np.arange(1, len(positives) + 1)  # at the k-th highest positive's probability, k are flagged
    reaching = np.flatnonzero(recall_lower_bound(flagged, len(positives), confidence) >= target_recall - 1e-12)
    if not len(reaching):
        return float(positives[-1]), False
    return float(positives[reaching[0]]), True
