"""The evaluate step: verify and load the selected model, score the held-out rows once (malignant = positive) at its
operating threshold and, for comparison, at 0.5; check its calibration (Brier score, reliability curve); write
metrics.json, four charts (ROC, precision-recall, confusion matrix, calibration) and a report with every
candidate's cross-validation, then apply the quality gate at the operating threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl import catalog
from etl.catalog import CV_METRICS, HEADLINE_METRICS, PUSHED_METRICS, TEST_METRICS
from etl.dataset import CLASS_NAMES, features_and_labels
from etl.metrics import DEFAULT_THRESHOLD, score
from etl.quality_gate import quality_gate
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import QualityGateError
from utils.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "evaluate"
CALIBRATION_BINS = 5  # as the calibration chart draws them (scikit-learn's default)
log = get_logger(STEP)


def reliability(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The calibration check beside the Brier score: the Brier score of always predicting the test rows'
    malignant share, and the reliability curve (per equal-width bin: rows, mean predicted probability, observed
    malignant share) and its distance from the diagonal weighted by rows (the expected calibration error)."""
    bins = np.searchsorted(np.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1], probabilities)  # as sklearn bins them
    curve = [{"bin": f"{index / CALIBRATION_BINS:.1f}-{(index + 1) / CALIBRATION_BINS:.1f}",
              "rows": int(np.sum(bins == index)), "mean_predicted": float(np.mean(probabilities[bins == index])),
              "observed": float(np.mean(labels[bins == index]))}
             for index in range(CALIBRATION_BINS) if np.any(bins == index)]
    share = float(np.mean(labels))
    return {"brier_score_of_prevalence": share * (1 - share), "bins": curve,
            "expected_calibration_error": sum(point["rows"] * abs(point["observed"] - point["mean_predicted"])
                                              for point in curve) / len(labels)}


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


def cv_table(candidates: list[dict[str, Any]], winner: str) -> str:
    """Every candidate's cross-validation (mean ± std per metric), or why it failed; the winner in bold."""
    header = "| candidate | " + " | ".join(CV_METRICS) + " |\n|---|" + "---|" * len(CV_METRICS)
    rows = [f"| **{result['name']}** (selected) |" if result["name"] == winner else f"| {result['name']} |"
            for result in candidates]
    cells = [" | ".join(f"{result['cv'][metric]['mean']:.4f} ± {result['cv'][metric]['std']:.4f}"
                        for metric in CV_METRICS) if result["status"] == "trained"
             else f"failed: {_markdown_cell(result['error'])}" + " |" * (len(CV_METRICS) - 1)
             for result in candidates]
    return "\n".join([header, *(f"{row} {cell} |" for row, cell in zip(rows, cells, strict=True))])


def _markdown_cell(text: str) -> str:
    """`text` shortened to fit a table cell, with no `|` to split it."""
    return text[:200].replace("|", "/").replace("\n", " ")


def calibration_sentence(metrics: dict[str, Any]) -> str:
    """The calibration check read for people."""
    check = metrics["calibration"]
    bins = "\n".join(f"| {point['bin']} | {point['rows']} | {point['mean_predicted']:.2f} | {point['observed']:.2f} |"
                     for point in check["bins"])
    edges = (check["bins"][0]["bin"], check["bins"][-1]["bin"]) if len(check["bins"]) > 1 else ()
    middle = sum(point["rows"] for point in check["bins"] if point["bin"] not in edges)
    return (f"Brier score {metrics['brier_score']:.4f} (always predicting the test rows' malignant share would "
            f"score {check['brier_score_of_prevalence']:.4f}; lower is better). Weighted by rows, the reliability "
            f"curve lies {check['expected_calibration_error']:.3f} from the diagonal (expected calibration error): "
            "where it is close, a predicted probability can be read as the share of such cases that are "
            f"malignant. {middle} of {metrics['rows_test']} rows fall in the middle bins, so their points are "
            "noisy.\n\n| predicted probability | rows | mean predicted | observed malignant share |\n"
            "|---|---|---|---|\n"
            + bins)


def render_report(metrics: dict[str, Any]) -> str:
    """A Markdown report of the run for people: the candidates, the chosen model and threshold, how well it does
    on the held-out rows, how well calibrated it is, and whether it may ship."""
    gate = metrics["quality_gate"]
    cm = metrics["confusion_matrix"]
    default = metrics["at_default_threshold"]
    rows = "\n".join(f"| {name} | {metrics[name]:.4f} | {default[name]:.4f} |" for name in TEST_METRICS)
    verdict = "PASSED" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
    charts = "\n".join(f"![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in catalog.CHARTS
                       if name != catalog.CALIBRATION_CURVE)  # shown under Calibration
    oof = metrics["out_of_fold"]
    cm_oof = oof["confusion_matrix"]
    reached = ("reached" if metrics["target_reached"] else "NOT reachable with so few malignant training rows, so the "
               "threshold is the lowest malignant case's probability and flags every one of them")
    threshold = metrics["operating_threshold"]
    return f"""# Breast cancer model: run {metrics['run_id']}

- Model: `{metrics['model']}` (seed {metrics['seed']}), chosen among {len(metrics['candidates'])} candidates by
  cross-validated `{metrics['selection_metric']}`; trained on {metrics['rows_train']} rows,
  tested once on {metrics['rows_test']} held-out rows whose Ids never appear in training.
- Operating threshold: **{threshold:.4f}** (a case is flagged malignant when its probability is at least this).
- Data: {metrics['data_source']} `{metrics['data_location']}`, sha256 `{metrics['data_sha256']}`.
- Quality gate at the operating threshold (recall ≥ {gate['thresholds']['recall']}, ROC-AUC ≥
  {gate['thresholds']['roc_auc']}): **{verdict}**
- Whether it replaces the champion: [{catalog.COMPARISON_REPORT}]({catalog.COMPARISON_REPORT}), published beside
  this report (written after it, by the comparison with the champion on the same test rows).

## Candidates: cross-validation on the training rows ({metrics['cv_folds']} folds, grouped by Id)

Label metrics at 0.5; the winner is the candidate with the best mean `{metrics['selection_metric']}`, a tie (within
{metrics['tie_tolerance']}) going to the earlier, simpler one.

{cv_table(metrics['candidates'], metrics['model'])}

## How the threshold was chosen

From the winner's out-of-fold probabilities on the training rows (each row scored by the fold model that did not
see it), the highest threshold whose recall reaches the target {metrics['target_recall']} with
{metrics['target_confidence']:.0%} confidence (the one-sided Clopper-Pearson lower bound of the out-of-fold recall
reaches it, so that the target holds beyond the cases the threshold was tuned on): {reached}. There, out of fold,
recall {oof['recall']:.4f} ({cm_oof['fn']} of {cm_oof['fn'] + cm_oof['tp']} malignant missed) and specificity
{oof['specificity']:.4f}, the best specificity at that sensitivity.

## Test-set metrics (malignant = positive)

| metric | at the operating threshold {threshold:.4f} | at 0.5 |
|---|---|---|
{rows}

At the operating threshold: {cm['tp']} malignant found, {cm['fn']} malignant missed, {cm['fp']} benign flagged,
{cm['tn']} benign cleared (at 0.5: {default['confusion_matrix']['fn']} missed, {default['confusion_matrix']['fp']}
flagged).

## Calibration

{calibration_sentence(metrics)}

![calibration curve]({catalog.CALIBRATION_CURVE})

## Charts

{charts}
"""


def gate_samples(metrics: dict[str, Any]) -> list[Sample]:
    """The model's metrics at its operating threshold, the threshold, and the gate's thresholds and verdict, as
    Pushgateway samples."""
    gate = metrics["quality_gate"]
    return ([Sample("model_metric", metrics[name], {"metric": name}, "Test-set metric of the last evaluated model.")
             for name in PUSHED_METRICS]
            + [Sample("operating_threshold", metrics["operating_threshold"],
                      help="Decision threshold of the last evaluated model.")]
            + [Sample("quality_gate_threshold", minimum, {"metric": name}, "Quality-gate minimum.")
               for name, minimum in gate["thresholds"].items()]
            + [Sample("quality_gate_passed", float(gate["passed"]), help="1 when the last model passed the gate.")])


def test_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float, facts: dict[str, Any],
                 settings: Settings) -> dict[str, Any]:
    """The metrics file's content: test-set scores at the operating threshold (and at 0.5), the calibration
    check, the run's facts (model, candidates, data) and the gate's verdict at the operating threshold."""
    metrics = score(labels, probabilities, threshold)
    metrics["at_default_threshold"] = score(labels, probabilities, DEFAULT_THRESHOLD)
    metrics["calibration"] = reliability(labels, probabilities)
    metrics.update(facts)
    metrics["quality_gate"] = quality_gate(metrics, settings)
    return metrics


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Score the selected model on test.csv; write metrics, charts and report. Below the quality gate the step
    still records what it wrote, then fails."""
    model = run.load_model(catalog.MODEL)
    test = pd.read_csv(run.file(catalog.TEST))
    features, labels, _ = features_and_labels(test)
    probabilities = model.predict_proba(features)[:, 1]
    selected, loaded = run.record("select"), run.record("load")
    facts = {"run_id": run.run_id, "started_at": run.started_at().isoformat(), "rows_test": len(test),
             "operating_threshold": float(model.threshold),
             **{key: selected[key] for key in ("model", "seed", "cv", "cv_folds", "rows_train", "model_sha256",
                                              "target_recall", "target_confidence", "target_reached", "out_of_fold",
                                              "selection_metric", "tie_tolerance",
                                              "candidates")},
             "data_sha256": loaded["sha256"], "data_source": loaded["source"], "data_location": loaded["location"]}
    metrics = test_metrics(labels, probabilities, facts["operating_threshold"], facts, settings)

    save_charts(run, labels, probabilities, metrics["confusion_matrix"], metrics["model"],
                f"{metrics['model']} · threshold {metrics['operating_threshold']:.3f} · run {run.run_id} · "
                f"{len(test)} held-out rows")
    write_text_atomic(run.file(catalog.REPORT), render_report(metrics))
    write_json_atomic(run.file(catalog.METRICS), metrics)
    log.info("%s at threshold %.4f: test accuracy %.4f, precision %.4f, recall %.4f (%.4f at 0.5), F1 %.4f, "
             "ROC-AUC %.4f on %d rows", metrics["model"], metrics["operating_threshold"], metrics["accuracy"],
             metrics["precision"], metrics["recall"], metrics["at_default_threshold"]["recall"], metrics["f1"],
             metrics["roc_auc"], len(test))
    gate = metrics["quality_gate"]
    failure = None if gate["passed"] else QualityGateError(
        "quality gate failed, the model will not be published: " + "; ".join(gate["failures"])
        + f" (details in {run.file(catalog.METRICS)})")
    return StepResult(record={"quality_gate_passed": gate["passed"]},
                      summary={name: metrics[name] for name in HEADLINE_METRICS}
                      | {"quality_gate_passed": gate["passed"], "operating_threshold": metrics["operating_threshold"]},
                      samples=gate_samples(metrics), failure=failure)

