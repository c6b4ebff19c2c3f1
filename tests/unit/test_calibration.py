"""Unit tests of etl/calibration.py (weak calibration against known truths, the reliability curve against
scikit-learn's binning) and of the reliability diagram it feeds."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.calibration import calibration_curve

from etl import calibration, charts, intervals

ROWS = 200_000


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn as Bernoulli(p): probabilities p that are calibrated by construction, and their logits."""
    rng = np.random.default_rng(0)
    logits = rng.normal(-0.5, 1.5, ROWS)
    return (rng.random(ROWS) < expit(logits)).astype(int), logits


def test_calibrated_probabilities_have_intercept_zero_and_slope_one(calibrated):
    labels, logits = calibrated
    intercept, slope = calibration.weak_calibration(labels, expit(logits))
    assert intercept == pytest.approx(0, abs=0.02) and slope == pytest.approx(1, abs=0.02)


def test_probabilities_too_high_on_the_logit_scale_have_a_negative_intercept(calibrated):
    labels, logits = calibrated
    intercept, slope = calibration.weak_calibration(labels, expit(logits + 0.64))
    assert intercept == pytest.approx(-0.64, abs=0.02) and slope == pytest.approx(1, abs=0.02)


def test_probabilities_too_extreme_have_a_slope_below_one(calibrated):
    labels, logits = calibrated
    assert calibration.weak_calibration(labels, expit(2 * logits))[1] == pytest.approx(0.5, abs=0.01)


def test_weights_count_as_repeated_rows():
    rng = np.random.default_rng(1)
    probabilities = rng.random(300)
    labels = (rng.random(300) < probabilities ** 1.5).astype(int)
    weights = rng.integers(1, 4, 300)
    repeated = calibration.weak_calibration(np.repeat(labels, weights), np.repeat(probabilities, weights))
    assert calibration.weak_calibration(labels, probabilities, weights) == pytest.approx(repeated, abs=1e-9)


def test_every_replicate_of_small_overconfident_data_fits_as_a_general_optimiser_does():
    """A full Newton step from afar overshoots on logits this extreme; the fit must still find each maximum."""
    rng = np.random.default_rng(5)
    true_logits = rng.normal(-0.6, 2.5, 130)
    labels = (rng.random(130) < expit(true_logits)).astype(int)
    probabilities = expit(2.5 * true_logits)  # overconfident: slope 0.4
    weights = rng.multinomial(130, np.full(130, 1 / 130), size=100).astype(float)
    _, slopes = intervals.weighted_weak_calibration(weights, labels, probabilities)
    scores = intervals.logit(probabilities)

    def negative_log_likelihood(coefficients: np.ndarray, row_weights: np.ndarray) -> float:
        linear = coefficients[0] + coefficients[1] * scores
        return -np.sum(row_weights * (labels * linear - np.logaddexp(0, linear)))

    expected = [minimize(negative_log_likelihood, np.zeros(2), args=(row,), method="BFGS",
                         options={"gtol": 1e-10}).x[1] for row in weights]
    assert slopes == pytest.approx(expected, abs=1e-5)


def test_perfectly_separated_labels_have_no_slope():
    intercept, slope = calibration.weak_calibration(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert np.isfinite(intercept) and np.isnan(slope)


def test_the_reliability_curve_bins_as_scikit_learn_with_exact_intervals():
    rng = np.random.default_rng(2)
    probabilities = np.r_[rng.random(500), 0.0, 0.1, 0.5, 1.0]  # edges included
    labels = (rng.random(probabilities.size) < probabilities).astype(int)
    curve = calibration.reliability_curve(labels, probabilities)
    observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="uniform")
    assert [point["observed"] for point in curve] == pytest.approx(observed)
    assert [point["mean_predicted"] for point in curve] == pytest.approx(predicted)
    assert [point["bin"] for point in curve] == [f"0.{tenth}-{(tenth + 1) / 10:.1f}" for tenth in range(10)]
    assert sum(point["rows"] for point in curve) == probabilities.size
    for point in curve:
        assert (point["lower"], point["upper"]) == pytest.approx(
            [intervals.proportion(point["malignant"], point["rows"])[bound] for bound in ("lower", "upper")])


def test_empty_bins_are_left_out_and_the_error_is_weighted_by_rows():
    labels = np.array([0, 0, 1, 0, 1, 1])
    probabilities = np.array([0.05, 0.2, 0.3, 0.5, 0.9, 1.0])
    curve = calibration.reliability_curve(labels, probabilities, bins=5)
    assert [(point["bin"], point["rows"], point["malignant"]) for point in curve] == [
        ("0.0-0.2", 2, 0), ("0.2-0.4", 1, 1), ("0.4-0.6", 1, 0), ("0.8-1.0", 2, 2)]
    gaps = [0.125, 0.7, 0.5, 0.05]  # |observed - mean predicted| per bin
    assert calibration.expected_calibration_error(curve) == pytest.approx(
        (2 * gaps[0] + gaps[1] + gaps[2] + 2 * gaps[3]) / 6)


def test_the_histogram_counts_every_row_in_every_bin():
    histogram = calibration.predicted_risk_histogram(np.array([0.0, 0.01, 0.05, 0.51, 0.99, 1.0]))
    assert len(histogram) == 20 and sum(row["rows"] for row in histogram) == 6
    assert histogram[0] == {"bin": "0.00-0.05", "from": 0.0, "to": 0.05, "rows": 3}
    assert (histogram[10]["rows"], histogram[19]["rows"]) == (1, 2)


def test_the_summary_reuses_the_bootstrap_it_is_given():
    rng = np.random.default_rng(3)
    probabilities = np.round(rng.random(200), 1)
    labels, groups = (rng.random(200) < probabilities).astype(int), np.arange(200) // 2
    bootstrap = intervals.bootstrap_intervals(labels, probabilities, groups, replicates=200, seed=4)
    summary = calibration.calibration_summary(labels, probabilities, groups, replicates=200, seed=4)
    assert summary == calibration.calibration_summary(labels, probabilities, groups, replicates=0, seed=0,
                                                      bootstrap=bootstrap)
    assert summary["intercept"] == bootstrap["calibration_intercept"]
    assert summary["slope"] == bootstrap["calibration_slope"]
    assert (summary["bins"], summary["binning"]) == (10, "10 equal-width bins on [0, 1]")
    share = labels.mean()
    assert summary["brier_score_of_prevalence"] == pytest.approx(share * (1 - share))


def reliability_chart(labels: np.ndarray, probabilities: np.ndarray, caption: str = "logreg · 134 test rows"):
    return charts.calibration_curve(calibration.reliability_curve(labels, probabilities),
                                    calibration.predicted_risk_histogram(probabilities), "logreg", caption)


CHART_LABELS = np.array([0, 0, 0, 1, 1, 1, 0, 1])
CHART_PROBABILITIES = np.array([0.05, 0.12, 0.33, 0.38, 0.81, 0.97, 0.55, 0.61])  # 7 non-empty tenths


def test_the_reliability_diagram_draws_a_point_and_error_bar_per_bin_and_a_bar_per_risk_bin():
    figure = reliability_chart(CHART_LABELS, CHART_PROBABILITIES)
    reliability, risks = figure.axes
    diagonal, points = reliability.get_lines()[:2]
    assert list(diagonal.get_xdata()) == [0, 1] and len(points.get_xdata()) == 7
    [error_bars] = [artist for artist in reliability.collections if isinstance(artist, LineCollection)]
    assert len(error_bars.get_segments()) == 7
    assert len(risks.patches) == 20
    assert sum(bar.get_height() for bar in risks.patches) == CHART_LABELS.size


def test_the_reliability_diagram_is_a_reproducible_png_that_changes_with_the_scores():
    drawn = charts.png(reliability_chart(CHART_LABELS, CHART_PROBABILITIES))
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n"
    assert charts.png(reliability_chart(CHART_LABELS, CHART_PROBABILITIES)) == drawn
    assert charts.png(reliability_chart(CHART_LABELS, CHART_PROBABILITIES[::-1])) != drawn


def test_the_reliability_diagram_fits_a_very_long_caption():
    figure = reliability_chart(CHART_LABELS, CHART_PROBABILITIES,
                               "logreg · run " + "manual__2026-12-01T09:30:00.123456+00:00" * 6)
    figure.canvas.draw()
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())
    width, height = figure.get_size_inches()
    assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= width and drawn.y1 <= height
