"""The candidate models, simplest first (a tie in SELECTION_METRIC goes to the earlier one): each name with how to
build its seeded estimator, whether it is fitted on the distinct rows, and what it is in a few words. The settings'
choices (CANDIDATES), their documentation and the tests derive from REGISTRY: a new model is one entry.

Every constructor parameter of the candidates is here. Each stays practical on a million rows on one core
(n_jobs=1: candidates train side by side): a bounded forest, histogram boosting, a linear SVM rather than a kernel
one. Classes are weighted by inverse frequency where the estimator allows it: malignant cases are the minority, and
a missed malignancy (recall) costs more than a false alarm, which is also what the quality gate checks.

`distinct_rows` marks the models whose fit with the counts as sample weights equals the fit on every row (a loss
summed over the rows: the logistic regression, the SVM's margins); etl/train.py fits those on the distinct rows
(etl/unique_rows.py), in time that grows with the distinct rows; the SVM's Platt scaling then draws its 3 internal
folds from the distinct rows. Trees are not: a forest's bootstrap and the boosting's minimum leaf size count rows.

Kept free of sklearn: the DAG file imports the settings, and so this module, at parse time; each estimator's
module is imported only when that candidate is built (the ensemble and SVM modules cost start-up time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator


@dataclass(frozen=True)
class Candidate:
    """A candidate model: its estimator for a seed, whether it is fitted on the distinct rows weighted by their
    counts, and a one-line description for the settings' documentation."""

    build: Callable[[int], BaseEstimator]
    distinct_rows: bool
    description: str


def logistic_regression(seed: int) -> BaseEstimator:
    """Logistic regression, classes weighted."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)


def random_forest(seed: int) -> BaseEstimator:
    """A forest bounded for big data: 30 trees, each on 10% of the rows, leaves of at least 5 rows."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=30, max_samples=0.1, min_samples_leaf=5, class_weight="balanced",
                                  random_state=seed, n_jobs=1)


def hist_gradient_boosting(seed: int) -> BaseEstimator:
    """Histogram gradient boosting: 30 iterations at learning rate 0.2, no early stopping."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=30, learning_rate=0.2, early_stopping=False,
                                          class_weight="balanced", random_state=seed)


def linear_svm(seed: int) -> BaseEstimator:
    """A linear SVM; a margin, not a probability: Platt scaling on 3 internal folds turns it into one."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(class_weight="balanced", random_state=seed), cv=3, ensemble=False)


REGISTRY: dict[str, Candidate] = {
    "logreg": Candidate(logistic_regression, distinct_rows=True, description="logistic regression"),
    "random_forest": Candidate(random_forest, distinct_rows=False,
                               description="a random forest of 30 trees, each on 10% of the rows"),
    "hist_gradient_boosting": Candidate(hist_gradient_boosting, distinct_rows=False,
                                        description="histogram gradient boosting, 30 iterations"),
    "linear_svm": Candidate(linear_svm, distinct_rows=True,
                            description="a linear SVM with Platt-scaled probabilities"),
}
CANDIDATE_NAMES: tuple[str, ...] = tuple(REGISTRY)
DISTINCT_ROWS = "; fitted on the distinct rows weighted by their counts"


def candidate(name: str) -> Candidate:
    """The registered candidate `name`; an error naming it when there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown candidate {name!r}") from None


def described() -> str:
    """Every candidate with its description, in order, for the CANDIDATES setting's documentation."""
    return ", ".join(f"{name} ({entry.description}{DISTINCT_ROWS if entry.distinct_rows else ''})"
                     for name, entry in REGISTRY.items())
