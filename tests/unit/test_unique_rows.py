"""Unit tests of etl/unique_rows.py: the distinct-row codes, and linear models fitted on the distinct rows with
their counts as weights giving the fit on every row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bench.make_data import generate
from etl.dataset import features_and_labels
from etl.unique_rows import UniqueRowsClassifier, distinct_rows


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    """5,000 rows resampled from the bundled data (many repeated rows), NaN imputed with 1, as the model sees them."""
    frame = generate(5_000, seed=4).apply(pd.to_numeric, errors="coerce")  # text cells; "NA" becomes NaN
    features, labels, _ = features_and_labels(frame)
    return np.nan_to_num(features.to_numpy(), nan=1.0), labels


def test_distinct_rows_codes_every_row_by_its_first_occurrence():
    values = np.array([[1.0, 2.0], [3.0, np.nan], [1.0, 2.0], [2.0, 1.0], [3.0, np.nan], [1.0, 3.0]])
    codes, first = distinct_rows(values)
    assert codes.tolist() == [0, 1, 0, 2, 1, 3] and first.tolist() == [0, 1, 3, 5]
    np.testing.assert_array_equal(values[first][codes], values)  # NaN rows are one distinct row too


def test_distinct_rows_agrees_with_numpy_where_no_column_repeats():
    values = np.random.default_rng(0).normal(size=(3_000, 12))
    values[::3] = values[1::3]  # a third of the rows repeat another
    codes, first = distinct_rows(values)
    assert len(first) == len(np.unique(values, axis=0)) == 2_000
    np.testing.assert_array_equal(values[first][codes], values)
    assert distinct_rows(np.empty((0, 3)))[1].tolist() == []


@pytest.mark.parametrize("estimator", [
    LogisticRegression(max_iter=1000, class_weight="balanced"),
    LinearSVC(class_weight="balanced", random_state=0),
], ids=["logreg", "linear_svm"])
def test_a_linear_model_on_the_weighted_distinct_rows_is_the_model_on_every_row(rows, estimator):
    values, labels = rows
    compressed = UniqueRowsClassifier(estimator).fit(values, labels)
    assert compressed.distinct_rows_ < len(labels) / 5
    every_row = clone(estimator).fit(values, labels)
    # the same loss's minimum, up to the solver's tolerance (liblinear stops at a gradient norm of 1e-4)
    np.testing.assert_allclose(compressed.estimator_.coef_, every_row.coef_, atol=1e-5)
    np.testing.assert_array_equal(compressed.predict(values), every_row.predict(values))
    _, first = distinct_rows(np.column_stack([values, labels]))
    unweighted = clone(estimator).fit(values[first], labels[first])
    assert np.abs(unweighted.coef_ - every_row.coef_).max() > 1e-3  # the counts matter: without them it differs


def test_given_sample_weights_multiply_the_counts(rows):
    values, labels = rows
    weights = np.where(labels == 1, 3.0, 1.0)
    compressed = UniqueRowsClassifier(LogisticRegression(max_iter=1000)).fit(values, labels, sample_weight=weights)
    every_row = LogisticRegression(max_iter=1000).fit(values, labels, sample_weight=weights)
    np.testing.assert_allclose(compressed.predict_proba(values), every_row.predict_proba(values), atol=1e-8)
    assert compressed.classes_.tolist() == [0, 1] and compressed.n_features_in_ == values.shape[1]
