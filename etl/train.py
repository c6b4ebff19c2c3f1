"""The train step (once per candidate model): one sklearn Pipeline (median imputation of the column that may be
missing, standard scaling, classifier) cross-validated on the training rows grouped by Id, then fitted on all of
them; saved in the candidate's folder with its out-of-fold probabilities (from which select chooses the operating
threshold) and its CV scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from etl import candidates, catalog
from etl.catalog import CV_METRICS
from etl.dataset import ID, NULLABLE_FEATURES, TARGET, features_and_labels
from etl.folds import grouped_stratified_folds
from etl.metrics import score
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from etl.unique_rows import UniqueRowsClassifier
from utils.config import Settings
from utils.errors import TrainingError
from utils.files import write_model_atomic, write_text_atomic
from utils.logger import get_logger

STEP = "train"
log = get_logger(STEP)
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


def out_of_fold(pipeline: Pipeline, features: pd.DataFrame, labels: np.ndarray,
                folds: Folds) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Each row's probability of malignant from the fold model that did not see it, and each fold's scores."""
    probabilities = np.full(len(labels), np.nan)
    scores = []
    for fit_rows, held_out in folds:
        model = clone(pipeline).fit(features.iloc[fit_rows], labels[fit_rows])
        probabilities[held_out] = model.predict_proba(features.iloc[held_out])[:, 1]
        fold = score(labels[held_out], probabilities[held_out])
        scores.append({name: fold[name] for name in CV_METRICS})
    return probabilities, scores


def summarise(fold_scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each CV metric over the folds."""
    return {name: {"mean": float(np.mean([fold[name] for fold in fold_scores])),
                   "std": float(np.std([fold[name] for fold in fold_scores]))} for name in CV_METRICS}


def fit(train: pd.DataFrame, candidate: str, folds: int,
        seed: int) -> tuple[Pipeline, np.ndarray, list[dict[str, float]]]:
    """The candidate's pipeline fitted on every training row, its out-of-fold probabilities and fold scores; one
    thread (candidates train side by side on few cores). A candidate that cannot fit these rows fails for good."""
    features, labels, groups = features_and_labels(train)
    pipeline = build_pipeline(candidate, seed)
    try:
        with threadpool_limits(limits=1):
            probabilities, fold_scores = out_of_fold(pipeline, features, labels,
                                                     grouped_stratified_folds(labels, groups, folds, seed))
            return pipeline.fit(features, labels), probabilities, fold_scores
    except ValueError as exc:  # sklearn's word for data an estimator cannot fit
        raise TrainingError(f"candidate {candidate} cannot be fitted on the {len(train)} training rows: {exc}") from exc


def run(run: RunFolder, settings: Settings, candidate: str) -> StepResult:
    """Cross-validate and fit `candidate` on train.csv; save its model and out-of-fold probabilities in its
    folder; its CV scores and the model's checksum go into its record."""
    train = pd.read_csv(run.file(catalog.TRAIN))
    pipeline, probabilities, fold_scores = fit(train, candidate, settings.cv_folds, settings.seed)
    digest = write_model_atomic(pipeline, run.file(catalog.candidate_file(candidate, catalog.CANDIDATE_MODEL)))
    out_of_fold = train[[ID, TARGET]].assign(**{catalog.OUT_OF_FOLD_PROBABILITY: probabilities})
    write_text_atomic(run.file(catalog.candidate_file(candidate, catalog.OUT_OF_FOLD)), out_of_fold.to_csv(index=False))
    cv = summarise(fold_scores)
    log.info("trained %s on %d rows; CV recall %.3f±%.3f, ROC-AUC %.3f±%.3f; model sha256 %s", candidate,
             len(train), cv["recall"]["mean"], cv["recall"]["std"], cv["roc_auc"]["mean"], cv["roc_auc"]["std"],
             digest)
    summary = {"candidate": candidate, "rows_train": len(train), "model_sha256": digest,
               "cv_roc_auc": cv["roc_auc"]["mean"]}
    return StepResult(record={**summary, "seed": settings.seed, "cv_folds": settings.cv_folds, "cv": cv,
                              "cv_folds_scores": fold_scores},
                      summary=summary)

