"""How well the predicted probabilities match the observed malignant shares: the weak calibration (intercept and
slope, Van Calster et al. 2019, "Calibration: the Achilles heel of predictive analytics"), the reliability curve
with an exact interval per bin, and the histogram of predicted risks drawn beneath it."""

from __future__ import annotations

from typing import Any

import numpy as np

from etl.intervals import CONFIDENCE, bootstrap_intervals, proportion, weighted_weak_calibration

BINS = 10  # equal-width bins of the reliability curve
HISTOGRAM_BINS = 20


def weak_calibration(labels: np.ndarray, probabilities: np.ndarray,
                     weights: np.ndarray | None = None) -> tuple[float, float]:
    """Calibration intercept (the intercept of a logistic regression of the label with logit(p) as offset; 0 when
    the predictions are right on average) and calibration slope (the slope on logit(p); below 1 when they are too
    extreme). NaN when the fit has no maximum (labels perfectly separated by p)."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    intercept, slope = weighted_weak_calibration(weights[None, :], np.asarray(labels),
                                                 np.asarray(probabilities, dtype=float))
    return float(intercept[0]), float(slope[0])


def bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """Each probability's equal-width bin on [0, 1], as scikit-learn's `calibration_curve(strategy="uniform")`
    assigns it (an edge belongs to the bin below it; 1.0 to the last)."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probabilities)


def bin_label(index: int, bins: int) -> str:
    """The bin's edges as text, e.g. "0.0-0.1": to 1 decimal when the edges allow, else 2."""
    decimals = 1 if 10 % bins == 0 else 2
    return f"{index / bins:.{decimals}f}-{(index + 1) / bins:.{decimals}f}"


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per non-empty equal-width bin: its rows, malignant count, mean predicted probability and observed malignant
    share with its exact (Clopper-Pearson) interval."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    index = bin_index(probabilities, bins)
    curve = []
    for number in np.unique(index):
        in_bin = index == number
        observed = proportion(int(labels[in_bin].sum()), int(in_bin.sum()), CONFIDENCE)
        curve.append({"bin": bin_label(number, bins), "rows": observed["trials"], "malignant": observed["successes"],
                      "mean_predicted": float(probabilities[in_bin].mean()), "observed": observed["estimate"],
                      "lower": observed["lower"], "upper": observed["upper"]})
    return curve


def expected_calibration_error(curve: list[dict[str, Any]]) -> float:
    """The rows-weighted mean distance of the reliability curve from the diagonal."""
    rows = sum(point["rows"] for point in curve)
    return sum(point["rows"] * abs(point["observed"] - point["mean_predicted"]) for point in curve) / rows


def predicted_risk_histogram(probabilities: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Rows per equal-width bin of predicted probability (empty bins included), binned as the reliability curve."""
    counts = np.bincount(bin_index(np.asarray(probabilities, dtype=float), bins), minlength=bins)
    return [{"bin": bin_label(number, bins), "from": number / bins, "to": (number + 1) / bins, "rows": int(rows)}
            for number, rows in enumerate(counts)]


def calibration_summary(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, *, replicates: int,
                        seed: int, bins: int = BINS, bootstrap: dict[str, dict] | None = None) -> dict[str, Any]:
    """The reliability curve, its expected calibration error, the Brier score of always predicting the malignant
    share, and the calibration intercept and slope with their cluster-bootstrap intervals. Pass `bootstrap` (what
    `bootstrap_intervals` returned for the same rows) to reuse its intervals; otherwise they are drawn here."""
    bootstrap = bootstrap or bootstrap_intervals(labels, probabilities, groups, replicates=replicates, seed=seed)
    curve = reliability_curve(labels, probabilities, bins)
    share = float(np.mean(labels))
    return {"bins": bins, "binning": f"{bins} equal-width bins on [0, 1]", "curve": curve,
            "expected_calibration_error": expected_calibration_error(curve),
            "brier_score_of_prevalence": share * (1 - share),
            "intercept": bootstrap["calibration_intercept"], "slope": bootstrap["calibration_slope"]}
