"""Logistic regression whose coefficients cannot be negative: a higher value of any feature never lowers the
predicted probability of the positive class. The clinical direction of the cytology scores (etl/clinical_direction.py)
asks exactly this of the default candidate; sklearn's LogisticRegression has no coefficient bounds.

It minimises sklearn's own objective for an L2-penalised logistic regression (the summed, weighted log-loss plus
0.5·||w||²/C, the intercept not penalised) with L-BFGS-B, the coefficients bounded below by 0: where the
unconstrained optimum has no negative coefficient, it is sklearn's LogisticRegression(C=C). The loss is a sum over
the rows, so fitting the distinct rows weighted by their counts gives the fit on every row (etl/unique_rows.py).
Bounded GLMs exist in glum, a compiled dependency of the Airflow image for one bound; this is scipy, already there.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data


def penalised_log_loss(params: np.ndarray, X: np.ndarray, positive: np.ndarray, weights: np.ndarray,
                       C: float) -> tuple[float, np.ndarray]:
    """The weighted log-loss plus 0.5·||w||²/C at `params` (coefficients, then the intercept), and its gradient;
    both divided by the total weight, as sklearn does, so the solver's tolerances do not depend on the row count."""
    coef, intercept = params[:-1], params[-1]
    logits = X @ coef + intercept
    total = weights.sum()
    loss = weights @ (np.logaddexp(0.0, logits) - positive * logits) + 0.5 * coef @ coef / C
    residual = weights * (expit(logits) - positive)
    gradient = np.append(X.T @ residual + coef / C, residual.sum())
    return loss / total, gradient / total


class NonNegativeLogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary L2-penalised logistic regression with every coefficient ≥ 0 and a free intercept."""

    def __init__(self, C: float = 1.0, tol: float = 1e-10, max_iter: int = 1000) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def __sklearn_tags__(self) -> Tags:
        """Binary only, as sklearn's estimator checks and meta-estimators read it."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> NonNegativeLogisticRegression:
        """Fit on (X, y), each row weighted by `sample_weight` (1 when not given)."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        target = type_of_target(y, input_name="y", raise_unknown=True)
        if target != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {target}.")
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError("needs both classes, and y holds 1 class")
        weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if not weights.sum() > 0:
            raise ValueError("the sample weights sum to zero or less")
        positive = (y == self.classes_[1]).astype(np.float64)
        result = minimize(penalised_log_loss, np.zeros(X.shape[1] + 1), args=(X, positive, weights, self.C),
                          method="L-BFGS-B", jac=True, bounds=[(0.0, None)] * X.shape[1] + [(None, None)],
                          options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": self.tol})
        self.coef_, self.intercept_ = result.x[None, :-1], result.x[-1:]
        self.n_iter_ = np.array([result.nit])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The log-odds of the second class."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The probability of each class, columns in the order of `classes_`."""
        positive = expit(self.decision_function(X))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The more probable class."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]
