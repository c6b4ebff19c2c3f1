"""The evaluate step: the evidence on the selected model, each figure with its 95% interval and its rows.

- Internal validation, on the repeated out-of-fold probabilities of the training rows (select's out_of_fold.csv:
  CV_REPEATS grouped K-fold draws, each row scored by models that never saw its Id): the 2x2 table at the operating
  threshold, discrimination, calibration (intercept and slope, the reliability curve with its bands, ECE with its
  binning) and the decision curve. The quality gate is decided mostly here (etl/quality_gate.py).
- The held-out test rows, scored once at the operating threshold (and, for comparison, at 0.5): the same figures;
  the final check, never used to tune anything.
- The model's direction on each cytology score (etl/clinical_direction.py), checked on the test rows.
Proportions carry exact (Clopper-Pearson) intervals and their counts; ROC-AUC, PR-AUC, Brier score and the
calibration intercept and slope a cluster bootstrap over Ids (etl/intervals.py). metrics.json holds it all
(its shape: docs/results.md), the report says it for people, and the charts draw it with the rows behind them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl import catalog
from etl.calibration import calibration_summary, predicted_risk_histogram
from etl.catalog import HEADLINE_METRICS, PUSHED_METRICS
from etl.clinical_direction import direction_check
from etl.dataset import CLASS_NAMES, ID, TARGET, features_and_labels
from etl.decision_curve import DEFAULT_THRESHOLDS, net_benefit
from etl.intervals import CONFIDENCE, bootstrap_intervals, threshold_intervals
from etl.metrics import DEFAULT_THRESHOLD, score
from etl.quality_gate import quality_gate
from etl.report import render_report
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import QualityGateError
from utils.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "evaluate"
INTERVAL_METRICS = ("precision", "recall", "specificity", "npv", "accuracy", "roc_auc", "pr_auc")  # pushed bounds
log = get_logger(STEP)


def evidence(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, threshold: float,
             settings: Settings) -> dict[str, Any]:
    """Every figure of these rows with its interval: the 2x2 table at `threshold` and its shares, the
    threshold-free figures, calibration and the decision curve."""
    at_threshold = threshold_intervals(labels, probabilities, threshold)
    bootstrapped = bootstrap_intervals(labels, probabilities, groups, replicates=settings.bootstrap_replicates,
                                       seed=settings.seed)
    return {"rows": len(labels), "ids": len(pd.unique(groups)),
            "confusion_matrix": at_threshold.pop("confusion_matrix"), "intervals": at_threshold | bootstrapped,
            "calibration": calibration_summary(labels, probabilities, groups, replicates=settings.bootstrap_replicates,
                                               seed=settings.seed, bootstrap=bootstrapped),
            "decision_curve": net_benefit(labels, probabilities, DEFAULT_THRESHOLDS)}


def internal_validation(out_of_fold: pd.DataFrame, repeated: dict[str, Any], threshold: float,
                        settings: Settings) -> dict[str, Any]:
    """The evidence on the repeated out-of-fold probabilities of the training rows (select's out_of_fold.csv), with
    how they were made (`repeated`: select's record of its repeats)."""
    labels = out_of_fold[TARGET].to_numpy(dtype=int)
    probabilities = out_of_fold[catalog.OUT_OF_FOLD_PROBABILITY].to_numpy()
    return {"computed_on": f"the training rows' out-of-fold probabilities, each the mean over {repeated['repeats']} "
                           f"grouped {repeated['folds']}-fold cross-validations",
            **repeated, **evidence(labels, probabilities, out_of_fold[ID].to_numpy(), threshold,
                                   settings)}


def save_charts(run: RunFolder, metrics: dict[str, Any], test_probabilities: np.ndarray, test_labels: np.ndarray,
                oof_probabilities: np.ndarray) -> None:
    """Write the charts into the run folder, each captioned with the rows it is drawn from."""
    from etl import charts  # matplotlib: imported only by the step that draws

    model, threshold, internal = metrics["model"], metrics["operating_threshold"], metrics["internal_validation"]
    test_rows = f"{metrics['rows_test']} held-out test rows"
    caption = f"{model} · threshold {threshold:.3f} · run {run.run_id} · "
    cm = metrics["confusion_matrix"]
    figures = {
        catalog.ROC_CURVE: charts.roc_curve(test_labels, test_probabilities, model, caption + test_rows),
        catalog.PRECISION_RECALL_CURVE: charts.precision_recall_curve(test_labels, test_probabilities, model,
                                                                      caption + test_rows),
        catalog.CONFUSION_MATRIX: charts.confusion_matrix([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]],
                                                          list(CLASS_NAMES.values()), caption + test_rows),
        catalog.CALIBRATION_CURVE: charts.calibration_curve(
            internal["calibration"]["curve"], predicted_risk_histogram(oof_probabilities), model,
            caption + f"{internal['rows']} training rows out of fold (mean of {internal['repeats']} repeated CVs)"),
        catalog.DECISION_CURVE: charts.decision_curve(metrics["decision_curve"], threshold, model,
                                                      caption + test_rows)}
    for name, figure in figures.items():
        write_bytes_atomic(run.file(name), charts.png(figure))


def gate_samples(metrics: dict[str, Any]) -> list[Sample]:
    """The model's test metrics at its operating threshold with their 95% bounds, the threshold, and each check of
    the gate with its minimum and verdict, as Pushgateway samples."""
    gate, intervals = metrics["quality_gate"], metrics["intervals"]
    return ([Sample("model_metric", metrics[name], {"metric": name}, "Test-set metric of the last evaluated model.")
             for name in (*PUSHED_METRICS, "npv")]
            + [Sample(f"model_metric_{bound}", intervals[name][bound], {"metric": name},
                      f"{bound.capitalize()} 95% bound of the last evaluated model's test-set metric.")
               for name in INTERVAL_METRICS for bound in ("lower", "upper") if intervals[name][bound] is not None]
            + [Sample("operating_threshold", metrics["operating_threshold"],
                      help="Decision threshold of the last evaluated model.")]
            + [Sample("quality_gate_bound", check["value"],
                      {"metric": check["figure"], "rows": check["rows"], "bound": check["bound"]},
                      "The 95% bound each quality-gate check compares with its minimum.")
               for check in gate["checks"] if check["value"] is not None]
            + [Sample("quality_gate_threshold", minimum, {"metric": name}, "Quality-gate minimum.")
               for name, minimum in gate["thresholds"].items()]
            + [Sample("quality_gate_passed", float(gate["passed"]), help="1 when the last model passed the gate.")])


def test_metrics(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, threshold: float,
                 facts: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The metrics file's content except the gate: the test rows' point figures at the operating threshold (and
    at 0.5) and their evidence, beside the run's facts (model, candidates, data, internal validation)."""
    test = evidence(labels, probabilities, groups, threshold, settings)
    intervals = test["intervals"]
    return {**score(labels, probabilities, threshold),
            **{name: intervals[name]["estimate"] for name in ("npv", "prevalence")},
            "confidence": CONFIDENCE, "computed_on": f"the {len(labels)} held-out test rows", **facts,
            "intervals": intervals, "calibration": test["calibration"], "decision_curve": test["decision_curve"],
            "at_default_threshold": score(labels, probabilities, DEFAULT_THRESHOLD)}


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Score the selected model on test.csv and gather the evidence; write metrics, charts and report. Below the
    quality gate the step still records what it wrote, then fails."""
    model = run.load_model(catalog.MODEL)
    test = pd.read_csv(run.file(catalog.TEST))
    features, labels, groups = features_and_labels(test)
    probabilities = model.predict_proba(features)[:, 1]
    threshold = float(model.threshold)
    selected, loaded = run.record("select"), run.record("load")
    out_of_fold = pd.read_csv(run.file(catalog.REPEATED_OUT_OF_FOLD))
    facts = {"run_id": run.run_id, "started_at": run.started_at().isoformat(), "rows_test": len(test),
             "operating_threshold": threshold,
             **{key: selected[key] for key in ("model", "seed", "cv", "cv_folds", "rows_train", "model_sha256",
                                              "target_recall", "target_confidence", "target_reached",
                                              "selection_metric", "tie_tolerance", "candidates")},
             "data_sha256": loaded["sha256"], "data_source": loaded["source"], "data_location": loaded["location"],
             "internal_validation": internal_validation(out_of_fold, selected["repeated_cv"], threshold, settings),
             "clinical_direction": direction_check(model, test)}
    metrics = test_metrics(labels, probabilities, groups, threshold, facts, settings)
    metrics["quality_gate"] = quality_gate(metrics["intervals"], metrics["internal_validation"]["intervals"],
                                           settings)

    save_charts(run, metrics, probabilities, labels, out_of_fold[catalog.OUT_OF_FOLD_PROBABILITY].to_numpy())
    write_text_atomic(run.file(catalog.REPORT), render_report(metrics))
    write_json_atomic(run.file(catalog.METRICS), metrics)
    recall = metrics["intervals"]["recall"]
    log.info("%s at threshold %.4f on %d held-out rows: recall %.4f (%d/%d, 95%% CI %.4f-%.4f), ROC-AUC %.4f "
             "(95%% CI %.4f-%.4f); gate %s", metrics["model"], threshold, len(test), recall["estimate"],
             recall["successes"], recall["trials"], recall["lower"], recall["upper"], metrics["roc_auc"],
             metrics["intervals"]["roc_auc"]["lower"], metrics["intervals"]["roc_auc"]["upper"],
             "passed" if metrics["quality_gate"]["passed"] else "FAILED")
    gate = metrics["quality_gate"]
    failure = None if gate["passed"] else QualityGateError(
        "quality gate failed, the model will not be published: " + "; ".join(gate["failures"])
        + f" (details in {run.file(catalog.METRICS)})")
    return StepResult(record={"quality_gate_passed": gate["passed"]},
                      summary={name: metrics[name] for name in HEADLINE_METRICS}
                      | {"quality_gate_passed": gate["passed"], "operating_threshold": threshold},
                      samples=gate_samples(metrics), failure=failure)
