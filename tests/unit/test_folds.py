"""Unit tests of etl/folds.py, the vectorised grouped stratified folds, on the bundled data and on resampled
data sets (bench/make_data.py), against sklearn's StratifiedGroupKFold for class balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from bench.make_data import generate
from etl.dataset import FEATURES, ID, TARGET
from etl.folds import grouped_stratified_folds
from tests.support.data import BUNDLED_CSV
from utils.errors import DataValidationError


def labels_and_groups(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame[TARGET].to_numpy(dtype=int), frame[ID].to_numpy()


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_CSV)


@pytest.fixture(scope="module")
def resampled() -> pd.DataFrame:
    return generate(5_000, seed=3).astype({TARGET: int})


def share_spread(labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest minus smallest share of label 1 over the test folds."""
    shares = [labels[test].mean() for _, test in folds]
    return max(shares) - min(shares)


@pytest.mark.parametrize("n_splits", [2, 5, 10])
def test_each_group_is_in_exactly_one_test_fold_and_never_on_both_sides(bundled, n_splits):
    labels, groups = labels_and_groups(bundled)
    folds = grouped_stratified_folds(labels, groups, n_splits, seed=42)
    assert len(folds) == n_splits
    tests = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(labels)))  # every row tested once: coverage, disjoint
    for train, test in folds:
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[test]) == {0, 1}
    fold_of_group = pd.Series(np.concatenate([[i] * len(test) for i, (_, test) in enumerate(folds)]),
                              index=groups[tests])
    assert (fold_of_group.groupby(level=0).nunique() == 1).all()


def test_same_seed_same_folds_and_another_seed_other_folds(bundled):
    labels, groups = labels_and_groups(bundled)
    first, again = (grouped_stratified_folds(labels, groups, 5, seed=7) for _ in range(2))
    other = grouped_stratified_folds(labels, groups, 5, seed=8)
    assert all(np.array_equal(a, b) for fa, fb in zip(first, again, strict=True) for a, b in zip(fa, fb, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_class_balance_per_fold_is_as_close_as_stratified_group_kfolds(bundled, resampled, seed):
    for frame in (bundled, resampled):
        labels, groups = labels_and_groups(frame)
        ours = share_spread(labels, grouped_stratified_folds(labels, groups, 5, seed))
        sklearn = share_spread(labels, list(StratifiedGroupKFold(5, shuffle=True, random_state=seed)
                                            .split(frame, labels, groups)))
        assert ours <= sklearn + 0.005, (len(frame), ours, sklearn)  # bundled: 0.007 vs 0.005 (a row per fold)


def test_fold_sizes_are_even_up_to_the_largest_group(resampled):
    labels, groups = labels_and_groups(resampled)
    sizes = [len(test) for _, test in grouped_stratified_folds(labels, groups, 5, seed=0)]
    assert max(sizes) - min(sizes) <= 2 * pd.Series(groups).value_counts().max()


def test_a_group_with_both_labels_counts_as_its_largest_label_and_stays_whole():
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    groups = np.array(["a", "a", "b", "c", "d", "e", "f", "g"])  # a: mixed, so malignant
    folds = grouped_stratified_folds(labels, groups, 2, seed=0)
    assert any(set(test) >= {0, 1} for _, test in folds)
    with pytest.raises(DataValidationError, match=r"class benign \(0\) has 3 group\(s\).*at least 4"):
        grouped_stratified_folds(labels, groups, 4, seed=0)


def test_too_few_groups_in_a_class_is_a_clear_error():
    labels, groups = np.array([0] * 10 + [1] * 10), np.array(list(range(10)) + [10, 10, 11, 11] + [12] * 6)
    with pytest.raises(DataValidationError, match=r"5 grouped stratified folds: class malignant \(1\) has 3 "
                                                  r"group\(s\).*each class needs at least 5"):
        grouped_stratified_folds(labels, groups, 5, seed=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_splits must be at least 2"):
        grouped_stratified_folds(np.array([0, 1]), np.array([1, 2]), 1, seed=0)
    with pytest.raises(ValueError, match="one length"):
        grouped_stratified_folds(np.array([0, 1]), np.array([1, 2, 3]), 2, seed=0)


def test_the_folds_work_as_sklearns_cv(bundled):
    labels, groups = labels_and_groups(bundled)
    scores = cross_val_score(DecisionTreeClassifier(random_state=0), bundled[FEATURES].fillna(0), labels,
                             cv=grouped_stratified_folds(labels, groups, 5, seed=0), scoring="roc_auc")
    assert len(scores) == 5 and scores.min() > 0.8
