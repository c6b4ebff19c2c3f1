"""The model as one sklearn Pipeline (impute, scale, classify) and its grouped cross-validation: what the train step
does for every candidate and the select step repeats for the winner, in one place.

Repeated cross-validation: one K-fold split by Id is one draw among many, and the operating threshold, the
calibration check and the internal-validation figures all come from the out-of-fold probabilities. The select step
therefore repeats the winner's grouped K-fold CV_REPEATS times with different fold draws (the train step's own CV
is the first) and gives each training row the mean of its out-of-fold probabilities, one per repeat, each from a
model that did not see the row's Id. Each repeat costs a cross-validation of the winner, so at scale there are
fewer: repeats x training rows stay within MAX_REPEATED_ROWS (a million-row data set gets 2), where one fold draw
already moves the estimates little; select records how many ran.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from etl import candidates
from etl.catalog import CV_METRICS
from etl.dataset import NULLABLE_FEATURES, features_and_labels
from etl.folds import grouped_stratified_folds
from etl.metrics import score
from etl.unique_rows import UniqueRowsClassifier
from utils.config import MAX_REPEATED_ROWS
from utils.errors import TrainingError

Folds = list[tuple[np.ndarray, np.ndarray]]


def make_classifier(candidate: str, seed: int) -> ClassifierMixin:
    """The estimator of the registered candidate `candidate` (etl/candidates.py), seeded; one marked
    `distinct_rows` is fitted on the distinct rows weighted by their counts (etl/unique_rows.py)."""
    entry = candidates.candidate(candidate)
    estimator = entry.build(seed)
    return UniqueRowsClassifier(estimator) if entry.distinct_rows else estimator


def build_pipeline(candidate: str, seed: int) -> Pipeline:
    """Impute, scale and classify in one object, so prediction repeats the training preprocessing exactly.

    The imputer learns the median of each column the data contract lets be missing (NULLABLE_FEATURES) and passes
    the others through: sklearn's median sorts every column it is given, over half of a linear candidate's time
    on a million rows when given all nine."""
    impute = ColumnTransformer([("median", SimpleImputer(strategy="median"), sorted(NULLABLE_FEATURES))],
                               remainder="passthrough", verbose_feature_names_out=False)
    return Pipeline([("impute", impute), ("scale", StandardScaler()), ("model", make_classifier(candidate, seed))])


def out_of_fold(pipeline: Pipeline, features: pd.DataFrame, labels: np.ndarray, folds: Folds) -> np.ndarray:
    """Each row's probability of malignant from the fold model that did not see it."""
    probabilities = np.full(len(labels), np.nan)
    for fit_rows, held_out in folds:
        model = clone(pipeline).fit(features.iloc[fit_rows], labels[fit_rows])
        probabilities[held_out] = model.predict_proba(features.iloc[held_out])[:, 1]
    return probabilities


def fold_scores(labels: np.ndarray, probabilities: np.ndarray, folds: Folds) -> list[dict[str, float]]:
    """Each fold's CV metrics on its held-out rows."""
    return [{name: value for name, value in score(labels[held_out], probabilities[held_out]).items()
             if name in CV_METRICS} for _, held_out in folds]


def summarise(fold_scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each CV metric over the folds."""
    return {name: {"mean": float(np.mean([fold[name] for fold in fold_scores])),
                   "std": float(np.std([fold[name] for fold in fold_scores]))} for name in CV_METRICS}


def repeat_seed(seed: int, repeat: int) -> int:
    """The fold draw of repeat `repeat` (0: the train step's, drawn with `seed` itself)."""
    return seed if repeat == 0 else int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


def cannot_fit(candidate: str, rows: int, error: ValueError) -> TrainingError:
    """The error of a candidate that cannot fit these rows: it fails for good."""
    return TrainingError(f"candidate {candidate} cannot be fitted on the {rows} training rows: {error}")


def fit(train: pd.DataFrame, candidate: str, folds: int,
        seed: int) -> tuple[Pipeline, np.ndarray, list[dict[str, float]]]:
    """The candidate's pipeline fitted on every training row, its out-of-fold probabilities and fold scores; one
    thread (candidates train side by side on few cores). A candidate that cannot fit these rows fails for good."""
    features, labels, groups = features_and_labels(train)
    pipeline = build_pipeline(candidate, seed)
    try:
        with threadpool_limits(limits=1):
            split = grouped_stratified_folds(labels, groups, folds, seed)
            probabilities = out_of_fold(pipeline, features, labels, split)
            return pipeline.fit(features, labels), probabilities, fold_scores(labels, probabilities, split)
    except ValueError as exc:  # sklearn's word for data an estimator cannot fit
        raise cannot_fit(candidate, len(train), exc) from exc


def affordable_repeats(repeats: int, rows: int) -> int:
    """`repeats`, or fewer (never below 1) when repeats x `rows` exceeds MAX_REPEATED_ROWS."""
    return max(1, min(repeats, MAX_REPEATED_ROWS // max(rows, 1)))


def repeated_out_of_fold(train: pd.DataFrame, candidate: str, folds: int, seed: int, repeats: int,
                         first: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Each training row's mean out-of-fold probability over `repeats` grouped K-fold draws, `first` being the
    train step's (repeat 0), and each repeat's ROC-AUC (how much one fold draw moves the estimate)."""
    features, labels, groups = features_and_labels(train)
    pipeline = build_pipeline(candidate, seed)
    draws = [first]
    try:
        with threadpool_limits(limits=1):
            for repeat in range(1, repeats):
                folds_of_repeat = grouped_stratified_folds(labels, groups, folds, repeat_seed(seed, repeat))
                draws.append(out_of_fold(pipeline, features, labels, folds_of_repeat))
    except ValueError as exc:
        raise cannot_fit(candidate, len(train), exc) from exc
    return np.mean(draws, axis=0), [float(roc_auc_score(labels, draw)) for draw in draws]
