"""Step 4, evaluate: verify and load the model, score the held-out rows (malignant = positive), write
metrics.json, four charts (ROC, precision-recall, confusion matrix, calibration) and a short report, then apply
the quality gate."""

from __future__ import annotations

import sys
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from etl import catalog
from etl.catalog import HEADLINE_METRICS, PUSHED_METRICS, TEST_METRICS
from etl.dataset import CLASS_NAMES, features_and_labels
from etl.pipeline import cli_main
from etl.run_folder import RunFolder
from etl.steps import StepResult
from utils.config import Settings
from utils.errors import QualityGateError
from utils.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "evaluate"
DECISION_THRESHOLD = 0.5
log = get_logger(STEP)


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float = DECISION_THRESHOLD) -> dict[str, Any]:
    """Test-set metrics with malignant (1) as the positive class."""
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted, zero_division=0),
        "recall": recall_score(labels, predicted, zero_division=0),
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "f1": f1_score(labels, predicted, zero_division=0),
        "balanced_accuracy": balanced_accuracy_score(labels, predicted),
        "roc_auc": roc_auc_score(labels, probabilities),
        "pr_auc": average_precision_score(labels, probabilities),
        "brier_score": brier_score_loss(labels, probabilities),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "decision_threshold": threshold,
    }


def quality_gate(metrics: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Compare the gated metrics with their thresholds; `passed` is False when any is below."""
    thresholds = {"recall": settings.min_recall, "roc_auc": settings.min_roc_auc}
    failures = [f"{name} {metrics[name]:.4f} < {minimum:.4f} (MIN_{name.upper()})"
                for name, minimum in thresholds.items() if metrics[name] < minimum]
    return {"passed": not failures, "thresholds": thresholds, "failures": failures}


def save_charts(run: RunFolder, labels: np.ndarray, probabilities: np.ndarray, counts: dict[str, int], model: str,
                caption: str) -> None:
    """Write the four charts into the run folder; `counts` as `score` returns them (tn, fp, fn, tp)."""
    from etl import charts  # matplotlib: imported only by the step that draws

    matrix = [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]
    figures = {catalog.ROC_CURVE: charts.roc_curve(labels, probabilities, model, caption),
               catalog.PRECISION_RECALL_CURVE: charts.precision_recall_curve(labels, probabilities, model, caption),
               catalog.CONFUSION_MATRIX: charts.confusion_matrix(matrix, list(CLASS_NAMES.values()), caption),
               catalog.CALIBRATION_CURVE: charts.calibration_curve(labels, probabilities, model, caption)}
    for name, figure in figures.items():
        write_bytes_atomic(run.file(name), charts.png(figure))


def render_report(metrics: dict[str, Any]) -> str:
    """A short Markdown report of the run for people: what was trained, how well, and whether it may ship."""
    gate = metrics["quality_gate"]
    cm = metrics["confusion_matrix"]
    rows = "\n".join(f"| {name} | {metrics[name]:.4f} |" for name in TEST_METRICS)
    cv = "\n".join(f"| {name} | {s['mean']:.4f} ± {s['std']:.4f} |" for name, s in metrics["cv"].items())
    verdict = "PASSED" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
    charts = "\n".join(f"![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in catalog.CHARTS)
    return f"""# Breast cancer model: run {metrics['run_id']}

- Model: `{metrics['model']}` (seed {metrics['seed']}), trained on {metrics['rows_train']} rows,
  tested on {metrics['rows_test']} held-out rows whose Ids never appear in training.
- Data: {metrics['data_source']} `{metrics['data_location']}`, sha256 `{metrics['data_sha256']}`.
- Quality gate (recall ≥ {gate['thresholds']['recall']}, ROC-AUC ≥ {gate['thresholds']['roc_auc']}): **{verdict}**

## Test-set metrics (malignant = positive, threshold {metrics['decision_threshold']})

| metric | value |
|---|---|
{rows}

Confusion matrix: {cm['tp']} malignant found, {cm['fn']} malignant missed, {cm['fp']} benign flagged,
{cm['tn']} benign cleared.

## Cross-validation on the training rows ({metrics['cv_folds']} folds, grouped by Id)

| metric | mean ± std |
|---|---|
{cv}

## Charts

{charts}
"""


def gate_samples(metrics: dict[str, Any]) -> list[Sample]:
    """The model's metrics and the gate's thresholds and verdict, as Pushgateway samples."""
    gate = metrics["quality_gate"]
    return ([Sample("model_metric", metrics[name], {"metric": name}, "Test-set metric of the last evaluated model.")
             for name in PUSHED_METRICS]
            + [Sample("quality_gate_threshold", minimum, {"metric": name}, "Quality-gate minimum.")
               for name, minimum in gate["thresholds"].items()]
            + [Sample("quality_gate_passed", float(gate["passed"]), help="1 when the last model passed the gate.")])


def test_metrics(labels: np.ndarray, probabilities: np.ndarray, facts: dict[str, Any],
                 settings: Settings) -> dict[str, Any]:
    """The metrics file's content: test-set scores, the run's facts (model, data, CV) and the gate's verdict."""
    metrics = {key: float(value) if isinstance(value, (float, np.floating)) else value
               for key, value in score(labels, probabilities).items()}
    metrics.update(facts)
    metrics["quality_gate"] = quality_gate(metrics, settings)
    return metrics


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Score the model on test.csv; write metrics, charts and report. Below the quality gate the step still
    records what it wrote, then fails."""
    pipeline = joblib.load(run.file(catalog.MODEL))  # its checksum was verified before the step started
    test = pd.read_csv(run.file(catalog.TEST))
    features, labels, _ = features_and_labels(test)
    probabilities = pipeline.predict_proba(features)[:, 1]
    trained, loaded = run.record("train"), run.record("load")
    facts = {"run_id": run.run_id, "started_at": run.started_at().isoformat(), "rows_test": len(test),
             **{key: trained[key] for key in ("model", "seed", "cv", "cv_folds", "rows_train", "model_sha256")},
             "data_sha256": loaded["sha256"], "data_source": loaded["source"], "data_location": loaded["location"]}
    metrics = test_metrics(labels, probabilities, facts, settings)

    save_charts(run, labels, probabilities, metrics["confusion_matrix"], metrics["model"],
                f"{metrics['model']} · run {run.run_id} · {len(test)} held-out rows")
    write_text_atomic(run.file(catalog.REPORT), render_report(metrics))
    write_json_atomic(run.file(catalog.METRICS), metrics)
    log.info("test accuracy %.4f, precision %.4f, recall %.4f, F1 %.4f, ROC-AUC %.4f on %d rows",
             metrics["accuracy"], metrics["precision"], metrics["recall"], metrics["f1"], metrics["roc_auc"],
             len(test))
    gate = metrics["quality_gate"]
    failure = None if gate["passed"] else QualityGateError(
        "quality gate failed, the model will not be published: " + "; ".join(gate["failures"])
        + f" (details in {run.file(catalog.METRICS)})")
    return StepResult(record={"quality_gate_passed": gate["passed"]},
                      summary={name: metrics[name] for name in HEADLINE_METRICS}
                      | {"quality_gate_passed": gate["passed"]},
                      samples=gate_samples(metrics), failure=failure)


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, argv)


if __name__ == "__main__":
    sys.exit(main())
