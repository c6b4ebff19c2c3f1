"""Drift between the rows a model was trained on and a batch it scores: the training profile (what preprocess
saves beside the splits), the population stability index (PSI) of each feature, and what chance alone gives at the
batch's size.

The features are scores 1-10 with missing values, so each has eleven natural bins: the values 1..10 and
"missing"; no binning choice is needed. For the bin shares p (training) and q (batch),
PSI = sum((q - p) * ln(q / p)); a share of 0 becomes PSI_EPSILON first, so that a value never seen on one side
counts as a large (finite) shift rather than an infinite one. By the usual reading, PSI < 0.1 is no shift,
0.1-0.2 a moderate one and > 0.2 (DRIFT_PSI_THRESHOLD) a shift worth a look.

That reading holds for large batches only: a batch of 50 rows drawn from the training rows themselves has a PSI
well above 0.2 by chance (eleven bins, and each rare bin it happens to miss adds about 0.1 through PSI_EPSILON).
So each PSI comes with its null distribution: the PSI of NULL_DRAWS batches of the same number of rows drawn from
the training bins (multinomial, seeded by NULL_SEED: the same batch always gets the same verdict), computed exactly
as the batch's. From it, the p-value (1 + draws at or above the PSI) / (1 + NULL_DRAWS) and `chance_psi`, the PSI
that chance exceeds with probability below FEATURE_ALPHA at this batch size. A feature drifts when its PSI is above
both DRIFT_PSI_THRESHOLD (the shift is large enough to matter) and its chance_psi (chance does not explain it):
then, and only then, its p-value is below FEATURE_ALPHA. A batch like the training rows is reported drifted with
probability about FAMILY_ALPHA at most (Bonferroni over the nine features), whatever its size.

The share of predicted malignant rows is compared with the share of malignant rows in training: a change in who
is sent for scoring shows there even when each feature's shift is small.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from etl.dataset import FEATURES, SCORE_MAX, SCORE_MIN, TARGET

PSI_EPSILON = 1e-4  # the share given to an empty bin
PSI_DECIMALS = 6  # PSIs are reported, pushed and compared at this precision, the null's too
MISSING_BIN = "missing"
BINS = [*(str(value) for value in range(SCORE_MIN, SCORE_MAX + 1)), MISSING_BIN]
NULL_DRAWS = 2000  # batches drawn from the training bins per feature: the PSI's null distribution
NULL_SEED = 20261204  # a constant, not SEED: the verdict on a batch does not depend on how the model was trained
FAMILY_ALPHA = 0.01  # the chance that a batch like the training rows is reported drifted (any feature)
FEATURE_ALPHA = FAMILY_ALPHA / len(FEATURES)  # Bonferroni: each of the nine features is tested at this level
# The most null draws at or above a batch's PSI that still give a p-value below FEATURE_ALPHA:
# (1 + k) / (1 + NULL_DRAWS) < FEATURE_ALPHA  <=>  k <= ceil(FEATURE_ALPHA * (1 + NULL_DRAWS)) - 2 (1 for 2000 draws).
NULL_EXCEEDANCES = math.ceil(FEATURE_ALPHA * (1 + NULL_DRAWS)) - 2  # >= 0: enough draws for FEATURE_ALPHA


def value_counts(column: pd.Series) -> dict[str, int]:
    """How many cells hold each score 1..10 and how many are missing (a valid, typed column)."""
    counts = column.value_counts(dropna=True)
    return {**{str(value): int(counts.get(value, 0)) for value in range(SCORE_MIN, SCORE_MAX + 1)},
            MISSING_BIN: int(column.isna().sum())}


def training_profile(train: pd.DataFrame) -> dict[str, Any]:
    """The training rows' profile: per feature the count of each bin, the row count and the malignant share."""
    return {"rows": len(train), "malignant_share": float(train[TARGET].mean()),
            "bins": BINS, "features": {name: value_counts(train[name]) for name in FEATURES}}


def bin_counts(counts: dict[str, int]) -> np.ndarray:
    """Bin counts in BINS order."""
    return np.array([counts.get(name, 0) for name in BINS], dtype="float64")


def shares(counts: np.ndarray) -> np.ndarray:
    """Bin shares of counts along the last axis (BINS order), empty bins at PSI_EPSILON."""
    return np.maximum(counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0), PSI_EPSILON)


def psi_of_counts(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI of `actual` bin counts against `expected` ones along the last axis (any leading shape), rounded to
    PSI_DECIMALS: the one formula of the batch's PSI and of its null draws."""
    p, q = shares(expected), shares(actual)
    return np.round(np.sum((q - p) * np.log(q / p), axis=-1), PSI_DECIMALS)


def psi(expected: dict[str, int], actual: dict[str, int]) -> float:
    """Population stability index of `actual` bin counts against `expected` ones."""
    return float(psi_of_counts(bin_counts(expected), bin_counts(actual)))


def null_psi(expected: np.ndarray, rows: int) -> np.ndarray:
    """The PSI of NULL_DRAWS batches of `rows` rows drawn from the training bins `expected` (features x bins): an
    array features x NULL_DRAWS, the same for the same input (NULL_SEED)."""
    training_shares = expected / expected.sum(axis=-1, keepdims=True)
    draws = np.random.default_rng(NULL_SEED).multinomial(rows, training_shares,
                                                         size=(NULL_DRAWS, len(expected)))
    return psi_of_counts(expected, draws.astype("float64")).T


def chance(observed: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the p-value of the `observed` PSI among its `null` draws, and chance_psi: the largest PSI whose
    p-value is not below FEATURE_ALPHA, so that p-value < FEATURE_ALPHA exactly when the PSI is above it."""
    at_or_above = (null >= observed[:, np.newaxis]).sum(axis=1)
    chance_psi = np.sort(null, axis=1)[:, NULL_DRAWS - 1 - NULL_EXCEEDANCES]  # the (NULL_EXCEEDANCES + 1)th largest
    return (1 + at_or_above) / (1 + NULL_DRAWS), chance_psi


def drift_summary(profile: dict[str, Any], samples: pd.DataFrame, predicted_malignant_share: float,
                  threshold: float) -> dict[str, Any]:
    """Each feature's PSI between the training profile and the batch `samples` with its p-value and chance_psi at
    the batch's size, the largest PSI, the features that drifted (PSI above both `threshold` and chance_psi), and
    the predicted malignant share beside the training one."""
    expected = np.stack([bin_counts(profile["features"][name]) for name in FEATURES])
    actual = np.stack([bin_counts(value_counts(samples[name])) for name in FEATURES])
    observed = psi_of_counts(expected, actual)
    p_values, chance_psi = chance(observed, null_psi(expected, len(samples)))
    per_feature = dict(zip(FEATURES, map(float, observed), strict=True))
    drifted = sorted(name for name, value, bar in zip(FEATURES, observed, chance_psi, strict=True)
                     if value > threshold and value > bar)
    worst = max(per_feature, key=per_feature.__getitem__)
    return {"measure": "psi", "threshold": threshold, "psi": per_feature, "max_psi": per_feature[worst],
            "max_psi_feature": worst, "drifted": bool(drifted), "drifted_features": drifted,
            "p_value": {name: round(float(value), 6) for name, value in zip(FEATURES, p_values, strict=True)},
            "chance_psi": dict(zip(FEATURES, map(float, chance_psi), strict=True)),
            "rows": len(samples), "null_draws": NULL_DRAWS, "alpha": FEATURE_ALPHA, "family_alpha": FAMILY_ALPHA,
            "predicted_malignant_share": round(predicted_malignant_share, 6),
            "training_malignant_share": round(profile["malignant_share"], 6), "training_rows": profile["rows"]}
