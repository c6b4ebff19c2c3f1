"""The candidate models, simplest first (a tie in SELECTION_METRIC goes to the earlier one): each name with how to
build its seeded estimator, whether it is fitted on the distinct rows, and what it is in a few words. The settings'
choices (CANDIDATES), their documentation and the tests derive from REGISTRY: a new model is one entry.

Every constructor parameter of the candidates is here. Each stays practical on a million rows on one core
(n_jobs=1: candidates train side by side): a bounded forest, histogram boosting, a linear SVM rather than a kernel
one. Classes are not weighted: the operating threshold, chosen by select from the out-of-fold probabilities to reach
TARGET_RECALL, is what sets the sensitivity; weighting the minority (malignant) class would only shift every logit
(by about +0.6 on the bundled data) and overstate every shown risk of malignancy.

`monotone` marks the candidates held to the clinical direction (etl/clinical_direction.py): a higher score on any
cytology feature never lowers their risk. The logistic regression's coefficients are bounded at 0
(etl/nonnegative_logistic.py); the trees take sklearn's monotonic constraints, +1 for every feature, so the order in
which the pipeline hands them the columns does not matter; a linear SVM cannot be bounded, and the evaluate step's
direction check shows where it goes against the direction. What each constraint costs: docs/models.md.

`distinct_rows` marks the models whose fit with the counts as sample weights equals the fit on every row (a loss
summed over the rows: the logistic regression, the SVM's margins); etl/modelling.py fits those on the distinct rows
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
    counts, a one-line description for the settings' documentation, and whether it is constrained to the clinical
    direction (a higher score never lowers its risk)."""

    build: Callable[[int], BaseEstimator]
    distinct_rows: bool
    description: str
    monotone: bool = False


def logistic_regression(seed: int) -> BaseEstimator:
    """Logistic regression with no negative coefficient (deterministic: the seed is not needed)."""
    from etl.nonnegative_logistic import NonNegativeLogisticRegression

    return NonNegativeLogisticRegression()


def every_feature_non_decreasing() -> list[int]:
    """sklearn's monotonic_cst for the nine cytology scores: the risk never falls as a score rises."""
    from etl.clinical_direction import CLINICAL_DIRECTION

    return list(CLINICAL_DIRECTION.values())


def random_forest(seed: int) -> BaseEstimator:
    """A forest bounded for big data: 30 trees, each on 10% of the rows, leaves of at least 5 rows."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=30, max_samples=0.1, min_samples_leaf=5,
                                  monotonic_cst=every_feature_non_decreasing(), random_state=seed, n_jobs=1)


def hist_gradient_boosting(seed: int) -> BaseEstimator:
    """Histogram gradient boosting: 30 iterations at learning rate 0.2, no early stopping."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=30, learning_rate=0.2, early_stopping=False,
                                          monotonic_cst=every_feature_non_decreasing(), random_state=seed)


def linear_svm(seed: int) -> BaseEstimator:
    """A linear SVM; a margin, not a probability: Platt scaling on 3 internal folds turns it into one. Its
    coefficients cannot be bounded: it is not held to the clinical direction."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(random_state=seed), cv=3, ensemble=False)


REGISTRY: dict[str, Candidate] = {
    "logreg": Candidate(logistic_regression, distinct_rows=True, monotone=True,
                        description="logistic regression with no negative coefficient"),
    "random_forest": Candidate(random_forest, distinct_rows=False, monotone=True,
                               description="a random forest of 30 trees, each on 10% of the rows"),
    "hist_gradient_boosting": Candidate(hist_gradient_boosting, distinct_rows=False, monotone=True,
                                        description="histogram gradient boosting, 30 iterations"),
    "linear_svm": Candidate(linear_svm, distinct_rows=True,
                            description="a linear SVM with Platt-scaled probabilities"),
}
CANDIDATE_NAMES: tuple[str, ...] = tuple(REGISTRY)
DISTINCT_ROWS = "; fitted on the distinct rows weighted by their counts"
MONOTONE = "; a higher score never lowers its risk"


def candidate(name: str) -> Candidate:
    """The registered candidate `name`; an error naming it when there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown candidate {name!r}") from None


def described() -> str:
    """Every candidate with its description, in order, for the CANDIDATES setting's documentation."""
    return ", ".join(f"{name} ({entry.description}{MONOTONE if entry.monotone else ''}"
                     f"{DISTINCT_ROWS if entry.distinct_rows else ''})" for name, entry in REGISTRY.items())
