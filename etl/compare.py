"""Step 5, compare: this run's model (the challenger) against the champion, both scored on this run's test rows
minus the Ids the champion was trained on, and the decision: promote when the challenger is not worse on
PROMOTION_METRIC beyond PROMOTION_TOLERANCE, else keep the champion. The first run promotes itself.

Too few rows left (fewer than MIN_COMPARISON_ROWS, or one class only) make no fair comparison: the champion is
kept and the reason says so. The champion's model and training Ids are loaded only after their sha256 matches
its published manifest, from a folder inside RESULTS_DIR (etl/champion.py), and from the very bytes checked.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import joblib
import numpy as np
import pandas as pd

from etl import catalog, champion
from etl.dataset import ID, TARGET, features_and_labels
from etl.metrics import DEFAULT_THRESHOLD, score
from etl.pipeline import cli_main
from etl.run_folder import RunFolder
from etl.steps import StepResult
from etl.upload import gated_metrics
from utils.config import Settings
from utils.files import write_json_atomic, write_text_atomic
from utils.logger import get_logger

STEP = "compare"
MIN_COMPARISON_ROWS = 20
log = get_logger(STEP)


def threshold_of(model: Any) -> float:
    """The model's operating threshold."""
    return float(getattr(model, "threshold", DEFAULT_THRESHOLD))


def scored(model: Any, features: pd.DataFrame, labels: np.ndarray) -> dict[str, float]:
    """The model's test metrics on these rows, at its operating threshold."""
    metrics = score(labels, model.predict_proba(features)[:, 1], threshold_of(model))
    return {name: float(value) for name, value in metrics.items() if name in catalog.TEST_METRICS}


def decide(challenger: float, incumbent: float | None, rows: pd.DataFrame, settings: Settings) -> tuple[bool, str]:
    """Promote or keep, and why, in words for the report and the task log."""
    metric, tolerance = settings.promotion_metric, settings.promotion_tolerance
    if incumbent is None:
        return True, "first champion: no model was promoted before"
    classes = rows[TARGET].nunique()
    if len(rows) < MIN_COMPARISON_ROWS or classes < 2:
        return False, (f"no fair comparison: {len(rows)} test row(s) of {classes} class(es) are left outside the "
                       f"champion's training Ids (at least {MIN_COMPARISON_ROWS} of both classes are needed); the "
                       "champion stays")
    lower = metric in champion.LOWER_IS_BETTER
    bound = incumbent + tolerance if lower else incumbent - tolerance
    side = "≤" if lower else "≥"
    terms = f"(champion {incumbent:.4f}, tolerance {tolerance:g}) on {len(rows)} rows"
    if champion.better_or_equal(challenger, incumbent, metric, tolerance):
        return True, f"{metric} {challenger:.4f} {side} {bound:.4f} {terms}"
    return False, f"{metric} {challenger:.4f} is not {side} {bound:.4f} {terms}: the champion stays"


def comparison_rows(test: pd.DataFrame, pointer: dict[str, Any] | None, settings: Settings) -> pd.DataFrame:
    """This run's test rows whose Id the champion was not trained on."""
    if pointer is None:
        return test
    trained_on = set(json.loads(champion.published_content(settings.results_dir, pointer, catalog.TRAINING_IDS)))
    return test[~test[ID].isin(trained_on)]


def compare(run: RunFolder, settings: Settings) -> dict[str, Any]:
    """The comparison file's content."""
    pointer = champion.read_pointer(settings.results_dir)
    metrics = gated_metrics(run)
    test = pd.read_csv(run.file(catalog.TEST))
    rows = comparison_rows(test, pointer, settings)
    features, labels, _ = features_and_labels(rows)
    enough = len(rows) >= MIN_COMPARISON_ROWS and rows[TARGET].nunique() == 2
    model = joblib.load(run.file(catalog.MODEL))
    challenger = {"name": run.published_name(), "run_id": run.run_id, "model": metrics["model"],
                  "operating_threshold": threshold_of(model), "metrics": scored(model, features, labels) if enough
                  else {}}
    incumbent = None
    if pointer is not None:
        champion_model = champion.load_model(champion.published_content(settings.results_dir, pointer, catalog.MODEL))
        incumbent = {"name": pointer["name"], "run_id": pointer["run_id"], "operating_threshold":
                     threshold_of(champion_model),
                     "metrics": scored(champion_model, features, labels) if enough else {}}
    metric = settings.promotion_metric
    challenger["score"] = challenger["metrics"].get(metric)
    if incumbent is not None:
        incumbent["score"] = incumbent["metrics"].get(metric)
    promote, reason = decide(challenger["score"], incumbent["score"] if incumbent else None, rows, settings)
    return {"metric": metric, "tolerance": settings.promotion_tolerance, "challenger": challenger,
            "champion": incumbent, "rows_compared": len(rows), "rows_excluded": len(test) - len(rows),
            "decision": "promote" if promote else "keep", "reason": reason}


def score_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def review(comparison: dict[str, Any], report: str) -> str:
    """What the reviewer reads before approving (Markdown): the scores, the threshold, the decision and where the
    report is. Only metrics, names and paths: nothing from the settings that could be secret."""
    challenger, incumbent = comparison["challenger"], comparison["champion"]
    lines = [f"Challenger **{challenger['name']}** ({challenger['model']}, operating threshold "
             f"{challenger['operating_threshold']:g}) against the champion "
             f"**{incumbent['name'] if incumbent else 'none yet'}**, on {comparison['rows_compared']} test rows "
             "the champion was not trained on.", "",
             "| metric | challenger | champion |", "|---|---|---|"]
    lines += [f"| {name} | {score_text(challenger['metrics'].get(name))} | "
              f"{score_text(incumbent['metrics'].get(name) if incumbent else None)} |" for name in catalog.TEST_METRICS]
    lines += ["", f"Compared on **{comparison['metric']}** (tolerance {comparison['tolerance']:g}): "
              f"**{comparison['decision']}**: {comparison['reason']}.", "", f"Report: {report}"]
    return "\n".join(lines)


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Compare challenger and champion; write the decision (JSON) and its report (Markdown, with the history)."""
    comparison = compare(run, settings)
    report = str(settings.results_dir / run.published_name() / catalog.REPORT)
    text = review(comparison, report)
    history = champion.history_markdown(champion.read_history(settings.results_dir))
    write_json_atomic(run.file(catalog.COMPARISON), comparison)
    write_text_atomic(run.file(catalog.COMPARISON_REPORT),
                      f"# Champion and challenger: run {run.run_id}\n\n{text}\n\n## Earlier runs\n\n{history}\n")
    log.info("%s: %s", comparison["decision"], comparison["reason"])
    incumbent = comparison["champion"]
    summary = {"decision": comparison["decision"], "reason": comparison["reason"], "metric": comparison["metric"],
               "challenger_score": comparison["challenger"]["score"],
               "champion": incumbent["name"] if incumbent else None,
               "champion_score": incumbent["score"] if incumbent else None,
               "rows_compared": comparison["rows_compared"], "review": text}
    return StepResult(record={"decision": comparison["decision"], "champion": summary["champion"]}, summary=summary)


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, argv)


if __name__ == "__main__":
    sys.exit(main())
