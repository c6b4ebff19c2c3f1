"""A classifier fitted on the distinct (row, label) pairs of its training data, each weighted by how often it occurs.

For a model whose loss is a sum over the rows (logistic regression, a linear SVM), weighting a row by its count is
the same loss as repeating it, so the fit reaches the same minimum (up to the solver's tolerance) in time that grows
with the distinct rows rather than all of them. The cytology scores are integers 1-10: the bundled 699 rows hold
about 460 distinct ones, and rows drawn from them at any size no more; data with few repeats gains nothing.
Which candidates are fitted this way is `distinct_rows` in etl/candidates.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone


def distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distinct-row code (0..D-1, in order of first appearance) and the index of each distinct row's
    first occurrence. Columns are folded in one at a time by hashing (pandas' factorize), never by sorting the
    rows: np.unique(axis=0) takes seconds on a million rows, this a fraction of one."""
    codes = np.zeros(len(values), dtype=np.int64)
    for column in values.T:
        column_codes, column_distinct = pd.factorize(column, use_na_sentinel=False)
        codes, _ = pd.factorize(codes * len(column_distinct) + column_codes)  # < rows², so it fits in int64
    first = np.empty(codes.max(initial=-1) + 1, dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # the last write wins: reversed, that is the first occurrence
    return codes, first


class UniqueRowsClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """`estimator` fitted on the distinct (row, label) pairs with their counts as sample weights; it predicts as
    the fitted estimator does. Only for estimators whose fit with weights equals the fit on repeated rows."""

    def __init__(self, estimator: BaseEstimator) -> None:
        self.estimator = estimator

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> UniqueRowsClassifier:
        """Fit a clone of `estimator` on the distinct rows of (X, y), weighted by their counts (times
        `sample_weight`, when given)."""
        values, labels = np.asarray(X, dtype=np.float64), np.asarray(y)
        codes, first = distinct_rows(np.column_stack([values, pd.factorize(labels)[0]]))
        weights = np.bincount(codes, weights=sample_weight, minlength=len(first))
        self.estimator_ = clone(self.estimator).fit(values[first], labels[first], sample_weight=weights)
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = values.shape[1]
        self.distinct_rows_ = len(first)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(X)
