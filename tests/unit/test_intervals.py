"""Unit tests of etl/intervals.py: exact binomial intervals, the weighted statistics against scikit-learn, and the
cluster bootstrap against a slow reference that resamples Ids one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from etl import intervals
from etl.metrics import score

TIED_PROBABILITIES = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5 + 1e-9, 0.75, 0.9, 1.0])


@st.composite
def scored_rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with both classes, probabilities from a small set (many ties) and positive integer weights."""
    size = draw(st.integers(2, 40))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=size, max_size=size)))
    labels[:2] = [0, 1]
    probabilities = np.array(draw(st.lists(TIED_PROBABILITIES, min_size=size, max_size=size)))
    weights = np.array(draw(st.lists(st.integers(1, 5), min_size=size, max_size=size)), dtype=float)
    return labels, probabilities, weights


def cytology_like(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from probabilities that take few distinct values, as a model on integer features gives."""
    rng = np.random.default_rng(seed)
    probabilities = np.round(rng.beta(0.6, 0.9, rows), 2)
    return (rng.random(rows) < probabilities).astype(int), probabilities


def test_a_proportion_has_the_exact_clopper_pearson_interval():
    none_of_ten = intervals.proportion(0, 10)
    assert none_of_ten["estimate"] == 0 and none_of_ten["lower"] == 0
    assert none_of_ten["upper"] == pytest.approx(1 - 0.025 ** (1 / 10))  # the closed form when no success
    assert intervals.proportion(10, 10)["lower"] == pytest.approx(0.025 ** (1 / 10))
    assert intervals.proportion(3, 7)["method"] == "Clopper-Pearson exact"


def test_a_proportion_of_no_trials_has_no_estimate():
    assert intervals.proportion(0, 0) == {"estimate": None, "lower": None, "upper": None, "successes": 0,
                                          "trials": 0, "method": "Clopper-Pearson exact"}


def test_threshold_intervals_count_a_probability_at_the_threshold_as_positive():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.5, 0.2, 0.5, 0.4, 0.1, 0.0])
    table = intervals.threshold_intervals(labels, probabilities, 0.5)
    assert table["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 2}
    expected = {"recall": (2, 3), "specificity": (3, 4), "precision": (2, 3), "npv": (3, 4), "accuracy": (5, 7),
                "prevalence": (3, 7)}
    for name, (successes, trials) in expected.items():
        assert table[name] == intervals.proportion(successes, trials), name


@settings(deadline=None)  # a property of values, not of speed: a loaded machine must not fail it
@given(scored_rows())
def test_weighted_curve_metrics_equal_scikit_learn_with_ties(rows):
    labels, probabilities, weights = rows
    for row_weights in (np.ones_like(weights), weights):
        as_matrix = row_weights[None, :]
        assert intervals.weighted_roc_auc(as_matrix, labels, probabilities)[0] == pytest.approx(
            roc_auc_score(labels, probabilities, sample_weight=row_weights), abs=1e-12)
        assert intervals.weighted_average_precision(as_matrix, labels, probabilities)[0] == pytest.approx(
            average_precision_score(labels, probabilities, sample_weight=row_weights), abs=1e-12)
        assert intervals.weighted_brier_score(as_matrix, labels, probabilities)[0] == pytest.approx(
            brier_score_loss(labels, probabilities, sample_weight=row_weights), abs=1e-12)


@settings(deadline=None)
@given(scored_rows(), st.sampled_from([0.1, 0.5, 0.75]))
def test_weighted_label_metrics_equal_the_pipeline_scores(rows, threshold):
    labels, probabilities, _ = rows
    counts = intervals.weighted_counts(np.ones((1, labels.size)), labels, probabilities, threshold)
    expected = score(labels, probabilities, threshold)
    for name, metric in intervals.LABEL_METRICS.items():
        assert metric(counts)[0] == pytest.approx(expected[name], abs=1e-12), name


def test_ids_of_the_same_composition_are_one_type_and_the_original_weights_count_the_rows():
    labels = np.array([0, 1, 0, 1, 0, 0])
    probabilities = np.array([0.2, 0.7, 0.2, 0.7, 0.2, 0.2])
    groups = np.array(["a", "a", "b", "b", "c", "d"])  # a and b hold the same two atoms; c and d one each
    atoms = intervals.atoms_of(labels, [probabilities], groups)
    assert atoms.clusters == 4 and sorted(atoms.type_counts) == [2, 2]
    original = atoms.weights(atoms.type_counts[None, :])[0]
    assert dict(zip(zip(atoms.labels, atoms.probabilities[0], strict=True), original, strict=True)) == {
        (0, 0.2): 4, (1, 0.7): 2}


def reference_bootstrap(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, replicates: int,
                        seed: int) -> np.ndarray:
    """ROC-AUC of replicates drawn the slow way: G Ids with replacement, their rows stacked, scikit-learn."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    rows_of = {group: np.flatnonzero(groups == group) for group in ids}
    values = []
    for _ in range(replicates):
        rows = np.concatenate([rows_of[group] for group in rng.choice(ids, size=ids.size)])
        values.append(roc_auc_score(labels[rows], probabilities[rows]))
    return np.array(values)


def bootstrap_auc(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, replicates: int,
                  seed: int) -> np.ndarray:
    """ROC-AUC of every replicate of the fast bootstrap."""
    atoms = intervals.atoms_of(labels, [probabilities], groups)
    return np.concatenate([intervals.weighted_roc_auc(weights, atoms.labels, atoms.probabilities[0])
                           for weights in intervals.replicate_weights(atoms, replicates, seed)])


@pytest.mark.parametrize("rows_per_id", [1, 3])
def test_the_bootstrap_has_the_distribution_of_resampling_ids_one_by_one(rows_per_id):
    labels, probabilities = cytology_like(120, seed=3)
    groups = np.arange(labels.size) // rows_per_id
    fast = bootstrap_auc(labels, probabilities, groups, 2000, seed=1)
    slow = reference_bootstrap(labels, probabilities, groups, 2000, seed=2)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.003)
    assert fast.std() == pytest.approx(slow.std(), rel=0.08)
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), abs=0.01)


def test_rows_of_one_id_move_together_so_duplicating_rows_under_one_id_widens_the_interval():
    labels, probabilities = cytology_like(150, seed=4)
    copies = 4
    repeated_labels, repeated_probabilities = np.tile(labels, copies), np.tile(probabilities, copies)
    under_one_id = np.tile(np.arange(labels.size), copies)  # each Id holds its row 4 times
    under_distinct_ids = np.arange(repeated_labels.size)

    def width(groups: np.ndarray) -> float:
        auc = intervals.bootstrap_intervals(repeated_labels, repeated_probabilities, groups, replicates=1000,
                                            seed=5)["roc_auc"]
        return auc["upper"] - auc["lower"]

    assert width(under_one_id) > 1.6 * width(under_distinct_ids)  # sqrt(4) = 2 in theory; resampling rows gives 1


def test_bootstrap_intervals_bracket_the_estimate_and_repeat_with_the_seed():
    labels, probabilities = cytology_like(300, seed=6)
    groups = np.arange(labels.size) // 2
    result = intervals.bootstrap_intervals(labels, probabilities, groups, replicates=400, seed=7)
    assert set(result) == {"roc_auc", "pr_auc", "brier_score", "calibration_intercept", "calibration_slope"}
    assert result["roc_auc"]["estimate"] == pytest.approx(roc_auc_score(labels, probabilities), abs=1e-12)
    assert result["pr_auc"]["estimate"] == pytest.approx(average_precision_score(labels, probabilities), abs=1e-12)
    for name, record in result.items():
        assert record["lower"] < record["estimate"] < record["upper"], name
        assert (record["method"], record["replicates"], record["clusters"], record["seed"]) == (
            intervals.BOOTSTRAP_METHOD, 400, 150, 7)
    assert intervals.bootstrap_intervals(labels, probabilities, groups, replicates=400, seed=7) == result
    json.dumps(result, allow_nan=False)  # plain JSON numbers, as metrics.json needs
    assert intervals.bootstrap_intervals(labels, probabilities, groups, replicates=400, seed=8) != result


def test_many_composition_types_cap_the_replicates_but_never_below_the_minimum(monkeypatch):
    labels, _ = cytology_like(500, seed=8)
    continuous = np.random.default_rng(9).random(labels.size)
    monkeypatch.setattr(intervals, "MAX_CELLS", 250 * labels.size)
    capped = intervals.bootstrap_intervals(labels, continuous, np.arange(labels.size), replicates=1000, seed=1)
    assert capped["roc_auc"]["replicates"] == 250 and capped["roc_auc"]["replicates_requested"] == 1000
    monkeypatch.setattr(intervals, "MAX_CELLS", 10)
    floor = intervals.bootstrap_intervals(labels, continuous, np.arange(labels.size), replicates=1000, seed=1)
    assert floor["roc_auc"]["replicates"] == intervals.MIN_REPLICATES


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "brier_score", "recall", "f1", "balanced_accuracy",
                                    "accuracy", "precision", "specificity"])
def test_identical_models_differ_by_exactly_zero(metric):
    labels, probabilities = cytology_like(200, seed=10)
    result = intervals.paired_difference(labels, probabilities, probabilities, np.arange(200) // 2, metric=metric,
                                         thresholds=(0.3, 0.3), replicates=300, seed=1)
    assert (result["difference"], result["lower"], result["upper"]) == (0, 0, 0)
    assert result["challenger"] == result["champion"] == pytest.approx(
        score(labels, probabilities, 0.3)[metric], abs=1e-12)


def test_a_much_worse_challenger_has_an_interval_below_zero_and_the_models_own_thresholds_are_used():
    labels, probabilities = cytology_like(200, seed=11)
    noisy = np.clip(probabilities + np.random.default_rng(12).normal(0, 0.4, labels.size), 0, 1)
    groups = np.arange(200)
    for metric in ("roc_auc", "balanced_accuracy"):
        result = intervals.paired_difference(labels, noisy, probabilities, groups, metric=metric,
                                             thresholds=(0.6, 0.4), replicates=500, seed=2)
        assert result["lower"] < result["difference"] < result["upper"] < 0, metric
        assert result["challenger"] == pytest.approx(score(labels, noisy, 0.6)[metric], abs=1e-12)
        assert result["champion"] == pytest.approx(score(labels, probabilities, 0.4)[metric], abs=1e-12)


def test_an_unknown_metric_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown metric 'auc'.*roc_auc"):
        intervals.paired_difference(np.array([0, 1]), np.array([0.2, 0.8]), np.array([0.2, 0.8]),
                                    np.array([1, 2]), metric="auc", thresholds=(0.5, 0.5), replicates=10, seed=1)


def test_many_distinct_probabilities_are_bootstrapped_at_a_stated_resolution_that_moves_no_figure():
    rng = np.random.default_rng(0)
    rows = intervals.MAX_EXACT_LEVELS * 3
    probabilities = rng.uniform(size=rows)
    labels = (rng.uniform(size=rows) < probabilities).astype(int)
    groups = np.arange(rows)
    record = intervals.bootstrap_intervals(labels, probabilities, groups, replicates=200, seed=0)
    assert record["roc_auc"]["rounded_to_decimals"] == intervals.RESOLUTION_DECIMALS
    assert abs(record["roc_auc"]["estimate"] - roc_auc_score(labels, probabilities)) < 1e-4
    assert abs(record["brier_score"]["estimate"] - brier_score_loss(labels, probabilities)) < 1e-4
    few = intervals.bootstrap_intervals(labels[:500], probabilities[:500], groups[:500], replicates=200, seed=0)
    assert few["roc_auc"]["rounded_to_decimals"] is None
    assert few["roc_auc"]["estimate"] == pytest.approx(roc_auc_score(labels[:500], probabilities[:500]), abs=1e-12)


def test_ids_of_one_row_and_of_several_are_typed_by_their_whole_composition():
    # Ids 0..4 sorted, atoms sorted within each: {3}, {1, 2}, {3}, {1, 2}, {1, 1}
    sorted_atoms = np.array([3, 1, 2, 3, 1, 2, 1, 1])
    id_starts = np.array([0, 1, 3, 4, 6])
    types = intervals.composition_types(sorted_atoms, id_starts)
    assert types[0] == types[2] and types[1] == types[3]
    assert len({types[0], types[1], types[4]}) == 3
