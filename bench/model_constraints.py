"""What the candidates' constraints cost: `python bench/model_constraints.py [--seeds N] [--timing-rows ROWS]`.

Each candidate as registered (no class weights; monotone where it can be) beside its variants with classes weighted
(class_weight="balanced", as before) and unconstrained, on the bundled training rows (the preprocess split at the
default seed 42). Per seed 0..N-1 (folds and model): grouped 5-fold cross-validation as the train step runs it;
printed per variant: the mean over the seeds of the folds' mean ROC-AUC and PR-AUC with their range over the seeds,
and the weak calibration of the pooled out-of-fold probabilities (etl/calibration.py: intercept with logit(p) as
offset, slope; 0 and 1 are perfect), averaged over the seeds. Then the time to fit the logistic regressions on the
distinct rows of ROWS generated rows (bench/make_data.py), the constrained one beside sklearn's. The table is in
docs/models.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/model_constraints.py`

from bench.make_data import generate  # noqa: E402
from etl import contract, preprocess  # noqa: E402
from etl.calibration import weak_calibration  # noqa: E402
from etl.candidates import REGISTRY  # noqa: E402
from etl.dataset import features_and_labels  # noqa: E402
from etl.folds import grouped_stratified_folds  # noqa: E402
from etl.modelling import build_pipeline, fold_scores, out_of_fold  # noqa: E402
from etl.nonnegative_logistic import NonNegativeLogisticRegression  # noqa: E402
from etl.unique_rows import UniqueRowsClassifier  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402

SPLIT_SEED, TEST_SIZE, FOLDS = 42, 0.2, 5
WEIGHTED = {"class_weight": "balanced"}
Variant = Callable[[int], BaseEstimator]


def tree_variants(name: str) -> dict[str, Variant]:
    """A tree candidate as registered, weighted, unconstrained, and both."""
    build = REGISTRY[name].build
    return {"as registered": build,
            "weighted": lambda seed: build(seed).set_params(**WEIGHTED),
            "unconstrained": lambda seed: build(seed).set_params(monotonic_cst=None),
            "unconstrained, weighted (before)": lambda seed: build(seed).set_params(monotonic_cst=None, **WEIGHTED)}


VARIANTS: dict[str, dict[str, Variant]] = {
    "logreg": {"as registered": REGISTRY["logreg"].build,
               "unconstrained (sklearn)": lambda seed: LogisticRegression(max_iter=1000),
               "unconstrained, weighted (before)": lambda seed: LogisticRegression(max_iter=1000, **WEIGHTED)},
    "random_forest": tree_variants("random_forest"),
    "hist_gradient_boosting": tree_variants("hist_gradient_boosting"),
    "linear_svm": {"as registered": REGISTRY["linear_svm"].build,
                   "weighted (before)": lambda seed: REGISTRY["linear_svm"].build(seed).set_params(
                       estimator__class_weight="balanced")},
}


def with_model(candidate: str, estimator: BaseEstimator, seed: int) -> Pipeline:
    """The candidate's pipeline (imputation, scaling, distinct rows where marked) around `estimator`."""
    pipeline = build_pipeline(candidate, seed)
    key = "model__estimator" if REGISTRY[candidate].distinct_rows else "model"
    return pipeline.set_params(**{key: estimator})


def measure(candidate: str, variant: Variant, features: pd.DataFrame, labels: np.ndarray, groups: np.ndarray,
            seeds: int) -> dict[str, float]:
    """Per seed, the folds' mean ROC-AUC and PR-AUC and the pooled out-of-fold calibration; summarised over seeds."""
    per_seed = []
    for seed in range(seeds):
        folds = grouped_stratified_folds(labels, groups, FOLDS, seed)
        probabilities = out_of_fold(with_model(candidate, variant(seed), seed), features, labels, folds)
        scores = fold_scores(labels, probabilities, folds)
        per_seed.append((np.mean([fold["roc_auc"] for fold in scores]), np.mean([fold["pr_auc"] for fold in scores]),
                         *weak_calibration(labels, probabilities)))
    roc, pr, intercept, slope = np.array(per_seed).T
    return {"roc_auc": roc.mean(), "roc_min": roc.min(), "roc_max": roc.max(), "pr_auc": pr.mean(),
            "pr_min": pr.min(), "pr_max": pr.max(), "intercept": intercept.mean(), "slope": slope.mean()}


def discrimination_table(seeds: int) -> None:
    """Print one markdown row per candidate variant."""
    train = preprocess.split(contract.read_typed(BUNDLED_DATA)[0], TEST_SIZE, SPLIT_SEED)[0]
    features, labels, groups = features_and_labels(train)
    print(f"{len(train)} training rows, seeds 0-{seeds - 1}, grouped {FOLDS}-fold CV")
    print("| candidate | variant | ROC-AUC mean (range) | PR-AUC mean (range) | calibration intercept | slope |")
    print("|---|---|---|---|---|---|")
    for candidate, variants in VARIANTS.items():
        for label, variant in variants.items():
            m = measure(candidate, variant, features, labels, groups, seeds)
            print(f"| {candidate} | {label} | {m['roc_auc']:.4f} ({m['roc_min']:.4f}–{m['roc_max']:.4f}) | "
                  f"{m['pr_auc']:.4f} ({m['pr_min']:.4f}–{m['pr_max']:.4f}) | {m['intercept']:+.2f} | "
                  f"{m['slope']:.2f} |", flush=True)


def fit_seconds(estimator: BaseEstimator, values: np.ndarray, labels: np.ndarray, repeats: int = 3) -> float:
    """The best of `repeats` wall times of fitting `estimator` on the distinct rows of (values, labels)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        UniqueRowsClassifier(clone(estimator)).fit(values, labels)
        times.append(time.perf_counter() - started)
    return min(times)


def timing(rows: int) -> None:
    """Print the fit times of the constrained and sklearn's logistic regression on `rows` generated rows."""
    frame = generate(rows, seed=0).apply(pd.to_numeric, errors="coerce")  # text cells; "NA" becomes NaN
    features, labels, _ = features_and_labels(frame)
    values = build_pipeline("logreg", 0)[:-1].fit_transform(features)
    for label, estimator in (("constrained", NonNegativeLogisticRegression()),
                             ("sklearn", LogisticRegression(max_iter=1000))):
        print(f"{label} logistic regression on the distinct rows of {rows:,} rows: "
              f"{fit_seconds(estimator, values, labels):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--timing-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with threadpool_limits(limits=1):  # one core, as the train step runs
        discrimination_table(args.seeds)
        timing(args.timing_rows)


if __name__ == "__main__":
    main()
