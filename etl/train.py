"""Step 3, train: one sklearn Pipeline (median imputation, standard scaling, classifier) fitted on the training
rows only, cross-validated on them grouped by Id, and saved atomically with its sha256."""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedGroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from etl import catalog
from etl.catalog import HEADLINE_METRICS
from etl.dataset import features_and_labels
from etl.pipeline import cli_main
from etl.run_folder import RunFolder
from etl.steps import StepResult
from utils.config import Settings
from utils.files import atomic_path, sha256_file
from utils.logger import get_logger

STEP = "train"
CV_SCORING = HEADLINE_METRICS
log = get_logger(STEP)


def make_classifier(model: str, seed: int) -> ClassifierMixin:
    """The estimator named by the MODEL setting, seeded.

    Classes are weighted by inverse frequency: malignant cases are the minority, and a missed malignancy
    (recall) costs more than a false alarm, which is also what the quality gate checks.
    Each estimator's module is imported only when chosen: the ensemble and SVM modules cost start-up time.
    """
    if model == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)
    if model == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=1)
    if model == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed)
    if model == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        return CalibratedClassifierCV(SVC(class_weight="balanced", random_state=seed), ensemble=False)
    raise ValueError(f"unknown model {model!r}")


def build_pipeline(model: str, seed: int) -> Pipeline:
    """Impute, scale and classify in one object, so prediction repeats the training preprocessing exactly."""
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                     ("model", make_classifier(model, seed))])


def cross_validation_scores(pipeline: Pipeline, features: pd.DataFrame, labels: np.ndarray, groups: np.ndarray,
                            folds: int, seed: int) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each score over stratified folds that keep an Id in one fold."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_validate(pipeline, features, labels, groups=groups, cv=splitter, scoring=CV_SCORING, n_jobs=1)
    return {name: {"mean": float(np.mean(scores[f"test_{name}"])), "std": float(np.std(scores[f"test_{name}"]))}
            for name in CV_SCORING}


def save_model(pipeline: Pipeline, path: Path) -> str:
    """Dump the fitted pipeline atomically; returns its sha256."""
    with atomic_path(path) as tmp:
        joblib.dump(pipeline, tmp)
    return sha256_file(path)


def fit(train: pd.DataFrame, model: str, folds: int, seed: int) -> tuple[Pipeline, dict[str, dict[str, float]]]:
    """The pipeline fitted on every training row, and its cross-validation scores on those rows."""
    features, labels, groups = features_and_labels(train)
    pipeline = build_pipeline(model, seed)
    cv = cross_validation_scores(pipeline, features, labels, groups, folds, seed)
    return pipeline.fit(features, labels), cv


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Fit the model on train.csv and save model.joblib; its checksum and CV scores go into the record."""
    train = pd.read_csv(run.file(catalog.TRAIN))
    pipeline, cv = fit(train, settings.model, settings.cv_folds, settings.seed)
    digest = save_model(pipeline, run.file(catalog.MODEL))
    log.info("trained %s on %d rows; CV recall %.3f±%.3f, ROC-AUC %.3f±%.3f; model sha256 %s", settings.model,
             len(train), cv["recall"]["mean"], cv["recall"]["std"], cv["roc_auc"]["mean"], cv["roc_auc"]["std"],
             digest)
    summary = {"model": settings.model, "rows_train": len(train), "model_sha256": digest}
    return StepResult(record={**summary, "seed": settings.seed, "cv_folds": settings.cv_folds, "cv": cv},
                      summary=summary)


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, argv)


if __name__ == "__main__":
    sys.exit(main())
