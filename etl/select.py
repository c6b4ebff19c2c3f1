"""The select step: among the candidates that trained, pick the winner by its cross-validated SELECTION_METRIC on the
training rows (within TIE_TOLERANCE of the best, the earliest of CANDIDATES: the simpler one); repeat the winner's
grouped cross-validation CV_REPEATS times (etl/modelling.py) and write each training row's mean out-of-fold
probability; choose the operating threshold from those (the highest one whose recall reaches TARGET_RECALL with
TARGET_CONFIDENCE, i.e. the best specificity at that sensitivity), and save model.joblib: the winner's fitted
pipeline deciding at that threshold. The test rows are not read here: evaluate scores the winner alone, once."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import FixedThresholdClassifier

from etl import catalog
from etl.dataset import ID, TARGET, features_and_labels
from etl.metrics import operating_threshold, score
from etl.modelling import affordable_repeats, repeated_out_of_fold
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import TrainingError
from utils.files import write_model_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "select"
TIE_TOLERANCE = 0.001  # CV means closer than this are a tie: fold noise, not a better model
log = get_logger(STEP)


def candidate_results(run: RunFolder, settings: Settings) -> list[dict[str, Any]]:
    """Each of CANDIDATES, in order: its CV scores when it trained, else why not."""
    trained = set(run.trained_candidates())
    results = []
    for name in settings.candidates:
        if name in trained:
            results.append({"name": name, "status": "trained", "cv": run.record("train", name)["cv"]})
        else:
            failure = run.candidate_failure(name) or {
                "error_type": "missing", "error": "no record and no failure: its training did not run or was killed"}
            results.append({"name": name, "status": "failed", "error": f"{failure['error_type']}: {failure['error']}"})
    return results


def winner(results: list[dict[str, Any]], metric: str) -> str:
    """The earliest trained candidate whose mean `metric` is within TIE_TOLERANCE of the best one's."""
    means = {result["name"]: result["cv"][metric]["mean"] for result in results if result["status"] == "trained"}
    if not means:
        raise TrainingError("no candidate could be trained, so there is no model to select: " + "; ".join(
            f"{result['name']}: {result['error']}" for result in results))
    best = max(means.values())
    return next(name for name, mean in means.items() if mean >= best - TIE_TOLERANCE)


def repeated_cv(run: RunFolder, train: pd.DataFrame, candidate: str,
                settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The winner's out-of-fold probabilities on the training rows `train`, averaged over CV_REPEATS fold draws
    (the train step's first), as out_of_fold.csv's frame, and what the repeats were."""
    first = pd.read_csv(run.file(catalog.candidate_file(candidate, catalog.OUT_OF_FOLD)))
    repeats = affordable_repeats(settings.cv_repeats, len(train))
    probabilities, per_repeat = repeated_out_of_fold(train, candidate, settings.cv_folds, settings.seed, repeats,
                                                     first[catalog.OUT_OF_FOLD_PROBABILITY].to_numpy())
    frame = train[[ID, TARGET]].assign(**{catalog.OUT_OF_FOLD_PROBABILITY: probabilities})
    return frame, {"repeats": repeats, "repeats_requested": settings.cv_repeats, "folds": settings.cv_folds,
                   "rows": len(train), "roc_auc_per_repeat": per_repeat}


def threshold_choice(out_of_fold: pd.DataFrame, settings: Settings) -> dict[str, Any]:
    """The operating threshold from the repeated out-of-fold probabilities, whether it reaches the target with
    the confidence asked, and the recall and specificity it had there."""
    labels = out_of_fold[TARGET].to_numpy(dtype=int)
    probabilities = out_of_fold[catalog.OUT_OF_FOLD_PROBABILITY].to_numpy()
    threshold, reached = operating_threshold(labels, probabilities, settings.target_recall,
                                             settings.target_confidence)
    at_threshold = score(labels, probabilities, threshold)
    return {"operating_threshold": threshold, "target_recall": settings.target_recall,
            "target_confidence": settings.target_confidence, "target_reached": reached,
            "out_of_fold": {name: at_threshold[name] for name in ("recall", "specificity", "confusion_matrix")}}


def thresholded_model(run: RunFolder, train: pd.DataFrame, candidate: str,
                      threshold: float) -> FixedThresholdClassifier:
    """The candidate's fitted pipeline, frozen (not refitted), deciding malignant at `threshold` (`train`, the
    training rows, only gives it the classes)."""
    pipeline = run.load_model(catalog.candidate_file(candidate, catalog.CANDIDATE_MODEL))
    features, labels, _ = features_and_labels(train)
    model = FixedThresholdClassifier(FrozenEstimator(pipeline), threshold=threshold, response_method="predict_proba")
    return model.fit(features, labels)  # FrozenEstimator's fit does nothing: this only records the classes


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Pick the winner among the trained candidates, choose its threshold, save model.joblib; every candidate's
    scores (or failure) go into the record."""
    results = candidate_results(run, settings)
    chosen = winner(results, settings.selection_metric)
    train = pd.read_csv(run.file(catalog.TRAIN))
    out_of_fold, repeats = repeated_cv(run, train, chosen, settings)
    write_text_atomic(run.file(catalog.REPEATED_OUT_OF_FOLD), out_of_fold.to_csv(index=False))
    choice = threshold_choice(out_of_fold, settings)
    if not choice["target_reached"]:
        log.warning("too few malignant training rows to reach recall %s with confidence %s: the threshold flags "
                    "every malignant training row out of fold", settings.target_recall, settings.target_confidence)
    digest = write_model_atomic(thresholded_model(run, train, chosen, choice["operating_threshold"]),
                                run.file(catalog.MODEL))
    failed = [result["name"] for result in results if result["status"] == "failed"]
    for result in results:
        if result["status"] == "failed":
            log.warning("candidate %s is left out: %s", result["name"], result["error"])
    trained = run.record("train", chosen)
    log.info("selected %s by CV %s %.4f (tie tolerance %s); operating threshold %.4f from %d repeats of its CV: "
             "out-of-fold recall %.4f (target %s) with specificity %.4f; model sha256 %s", chosen,
             settings.selection_metric, trained["cv"][settings.selection_metric]["mean"],
             TIE_TOLERANCE, choice["operating_threshold"], repeats["repeats"],
             choice["out_of_fold"]["recall"], settings.target_recall, choice["out_of_fold"]["specificity"], digest)
    summary = {"model": chosen, "operating_threshold": choice["operating_threshold"], "failed_candidates": failed,
               "model_sha256": digest}
    consumed = tuple(catalog.candidate_file(result["name"], file) for result in results
                     if result["status"] == "trained" for file in (catalog.CANDIDATE_MODEL, catalog.OUT_OF_FOLD))
    return StepResult(
        record={**summary, **choice, "repeated_cv": repeats, "selection_metric": settings.selection_metric,
                "tie_tolerance": TIE_TOLERANCE,
                "candidates": results, **{key: trained[key] for key in ("seed", "cv_folds", "rows_train", "cv")}},
        summary=summary, consumed=consumed,
        samples=[Sample("candidates_failed", len(failed), help="Candidate models that could not be trained.")])

