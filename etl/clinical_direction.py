"""The clinical direction of the cytology scores, and a check of a fitted model against it.

Each of the nine scores grades how abnormal the cells look (1 normal, 10 most abnormal): a higher score on any of
them should never lower the predicted risk of malignancy. The check raises one score of each row by one step and
looks at what the model's risk does; it needs only predict_proba, so it takes the fitted pipeline or the
thresholded model alike.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from etl.dataset import FEATURES, SCORE_MAX

NON_DECREASING = 1
CLINICAL_DIRECTION: dict[str, int] = {name: NON_DECREASING for name in FEATURES}
DIRECTION_NAMES = {NON_DECREASING: "non-decreasing"}
TOLERANCE = 1e-9  # a smaller fall of the risk is floating-point noise, not a direction


class ProbabilisticModel(Protocol):
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


def risk(model: ProbabilisticModel, features: pd.DataFrame) -> np.ndarray:
    """The model's probability of malignancy for each row."""
    return model.predict_proba(features)[:, 1]


def feature_direction(model: ProbabilisticModel, features: pd.DataFrame, baseline: np.ndarray,
                      feature: str) -> dict[str, Any]:
    """What raising `feature` by one step does to the risk of each row that can be raised (not missing, below the
    top score), against the feature's clinical direction."""
    raisable = (features[feature] < SCORE_MAX).to_numpy()  # NaN (missing) compares False: it is skipped
    raised = features[raisable].assign(**{feature: features.loc[raisable, feature] + 1})
    change = (risk(model, raised) - baseline[raisable]) * CLINICAL_DIRECTION[feature]
    lowered = change < -TOLERANCE
    return {"feature": feature, "expected": DIRECTION_NAMES[CLINICAL_DIRECTION[feature]],
            "rows_checked": int(raisable.sum()), "rows_lowered": int(lowered.sum()),
            "largest_drop": float(np.clip(-change, 0.0, None).max(initial=0.0)),
            "follows_clinical_direction": not lowered.any()}


def direction_check(model: ProbabilisticModel, rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per feature: how many of `rows` had their risk lowered by raising that feature one step, the
    largest fall, and whether the model follows the clinical direction there. Other columns of `rows` are
    ignored."""
    features = rows[FEATURES].astype("float64")
    baseline = risk(model, features)
    return [feature_direction(model, features, baseline, feature) for feature in FEATURES]
