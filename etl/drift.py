"""Drift between the rows a model was trained on and a batch it scores: the training profile (what preprocess
saves beside the splits) and the population stability index (PSI) of each feature.

The features are scores 1-10 with missing values, so each has eleven natural bins: the values 1..10 and
"missing"; no binning choice is needed. For the bin shares p (training) and q (batch),
PSI = sum((q - p) * ln(q / p)); a share of 0 becomes PSI_EPSILON first, so that a value never seen on one side
counts as a large (finite) shift rather than an infinite one. By the usual reading, PSI < 0.1 is no shift,
0.1-0.2 a moderate one and > 0.2 (DRIFT_PSI_THRESHOLD) a shift worth a look. The share of predicted malignant
rows is compared with the share of malignant rows in training: a change in who is sent for scoring shows there
even when each feature's shift is small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl.dataset import FEATURES, SCORE_MAX, SCORE_MIN, TARGET

PSI_EPSILON = 1e-4  # the share given to an empty bin
MISSING_BIN = "missing"
BINS = [*(str(value) for value in range(SCORE_MIN, SCORE_MAX + 1)), MISSING_BIN]


def value_counts(column: pd.Series) -> dict[str, int]:
    """How many cells hold each score 1..10 and how many are missing (a valid, typed column)."""
    counts = column.value_counts(dropna=True)
    return {**{str(value): int(counts.get(value, 0)) for value in range(SCORE_MIN, SCORE_MAX + 1)},
            MISSING_BIN: int(column.isna().sum())}


def training_profile(train: pd.DataFrame) -> dict[str, Any]:
    """The training rows' profile: per feature the count of each bin, the row count and the malignant share."""
    return {"rows": len(train), "malignant_share": float(train[TARGET].mean()),
            "bins": BINS, "features": {name: value_counts(train[name]) for name in FEATURES}}


def shares(counts: dict[str, int]) -> np.ndarray:
    """Bin shares in BINS order, empty bins at PSI_EPSILON."""
    values = np.array([counts.get(name, 0) for name in BINS], dtype="float64")
    return np.maximum(values / max(values.sum(), 1.0), PSI_EPSILON)


def psi(expected: dict[str, int], actual: dict[str, int]) -> float:
    """Population stability index of `actual` bin counts against `expected` ones."""
    p, q = shares(expected), shares(actual)
    return float(np.sum((q - p) * np.log(q / p)))


def drift_summary(profile: dict[str, Any], samples: pd.DataFrame, predicted_malignant_share: float,
                  threshold: float) -> dict[str, Any]:
    """Each feature's PSI between the training profile and the batch `samples`, the largest, whether it passes
    `threshold`, and the predicted malignant share beside the training one."""
    per_feature = {name: round(psi(profile["features"][name], value_counts(samples[name])), 6) for name in FEATURES}
    worst = max(per_feature, key=per_feature.__getitem__)
    return {"measure": "psi", "threshold": threshold, "psi": per_feature, "max_psi": per_feature[worst],
            "max_psi_feature": worst, "drifted": per_feature[worst] > threshold,
            "drifted_features": sorted(name for name, value in per_feature.items() if value > threshold),
            "predicted_malignant_share": round(predicted_malignant_share, 6),
            "training_malignant_share": round(profile["malignant_share"], 6), "training_rows": profile["rows"]}
