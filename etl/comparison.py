"""Challenger against champion: this run's model (the challenger) and the champion, both scored on this run's test
rows minus the Ids the champion was trained on, and the decision: promote when the challenger is not worse on
PROMOTION_METRIC beyond PROMOTION_TOLERANCE, else keep the champion. The first run promotes itself. Used by the
compare step, and by promote when another run became the champion in between.

Too few rows left (fewer than MIN_COMPARISON_ROWS, or one class only) make no fair comparison: the champion is
kept and the reason says so. The champion's model and training Ids are loaded only after their sha256 matches
its published manifest, from a folder inside RESULTS_DIR (etl/champion.py), and from the very bytes checked.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from etl import catalog, champion
from etl.dataset import ID, TARGET, features_and_labels
from etl.metrics import DEFAULT_THRESHOLD, score
from etl.quality_gate import gated_metrics
from etl.run_folder import RunFolder
from utils.config import Settings

MIN_COMPARISON_ROWS = 20


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
    model = run.load_model(catalog.MODEL)
    challenger = {"name": run.published_name(), "run_id": run.run_id, "model": metrics["model"],
                  "operating_threshold": threshold_of(model), "metrics": scored(model, features, labels) if enough
                  else {}}
    incumbent = None
    if pointer is not None:
        champion_model = champion.champion_model(settings.results_dir, pointer)
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
