"""Unit tests of etl/decision_curve.py (net benefit, Vickers & Elkin 2006) and of the decision-curve chart."""

from __future__ import annotations

import numpy as np
import pytest

from etl import charts, decision_curve

LABELS = np.array([1, 1, 0, 0, 0])
PROBABILITIES = np.array([0.9, 0.3, 0.6, 0.2, 0.25])


def test_net_benefit_by_hand():
    [at_quarter] = decision_curve.net_benefit(LABELS, PROBABILITIES, [0.25])
    # p >= 0.25 flags 0.9, 0.3 (both malignant), 0.6 and 0.25 (benign): TP 2, FP 2; odds 1/3
    assert at_quarter == {"threshold": 0.25, "model": pytest.approx(2 / 5 - 2 / 5 / 3),
                          "treat_all": pytest.approx(0.4 - 0.6 / 3), "treat_none": 0.0, "true_positives": 2,
                          "false_positives": 2, "rows": 5}


def test_a_model_that_flags_everyone_is_treat_all():
    for row in decision_curve.net_benefit(LABELS, np.ones(LABELS.size)):
        assert row["model"] == pytest.approx(row["treat_all"], abs=1e-12)


def test_a_perfect_model_has_the_prevalence_as_net_benefit_at_every_threshold():
    table = decision_curve.net_benefit(LABELS, LABELS.astype(float))
    assert [row["model"] for row in table] == pytest.approx([0.4] * len(decision_curve.DEFAULT_THRESHOLDS))


def test_the_default_thresholds_run_from_one_to_sixty_percent():
    assert decision_curve.DEFAULT_THRESHOLDS[:2] == (0.01, 0.02) and decision_curve.DEFAULT_THRESHOLDS[-1] == 0.6
    assert len(decision_curve.DEFAULT_THRESHOLDS) == 60


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_threshold_probability_of_zero_or_one_is_refused(threshold):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        decision_curve.net_benefit(LABELS, PROBABILITIES, [threshold])


def chart(probabilities: np.ndarray, operating_threshold: float = 0.3):
    return charts.decision_curve(decision_curve.net_benefit(LABELS, probabilities), operating_threshold, "logreg",
                                 "logreg · 5 test rows")


def test_the_decision_chart_draws_three_curves_over_the_thresholds_and_marks_the_operating_threshold():
    [axes] = chart(PROBABILITIES).axes
    model, treat_all, treat_none, marker = axes.get_lines()
    for curve in (model, treat_all, treat_none):
        assert list(curve.get_xdata()) == list(decision_curve.DEFAULT_THRESHOLDS)
    assert list(marker.get_xdata()) == [0.3, 0.3]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "logreg", "Biopsy all", "Biopsy none", "Operating threshold (0.300)"]
    bottom, top = axes.get_ylim()
    assert bottom < 0 < 0.4 < top < 0.5  # treat-all reaches -0.4 * 0.6 / 0.4 + 0.4 = -0.5 at 0.6: clipped


def test_the_decision_chart_is_a_reproducible_png_that_changes_with_the_scores():
    drawn = charts.png(chart(PROBABILITIES))
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n"
    assert charts.png(chart(PROBABILITIES)) == drawn
    assert charts.png(chart(PROBABILITIES[::-1])) != drawn
    assert charts.png(chart(PROBABILITIES, operating_threshold=0.5)) != drawn
