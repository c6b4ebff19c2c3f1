"""Challenger against champion: this run's model (the challenger) and the champion, both scored on this run's test
rows minus the Ids the champion was trained on, and the decision, a non-inferiority test: promote when the 95%
interval of the paired difference on PROMOTION_METRIC (challenger minus champion, a cluster bootstrap over the same
resampled Ids for both, etl/intervals.py) excludes the challenger being worse by more than the margin
PROMOTION_TOLERANCE; else keep the champion. A point estimate a little above the champion's is not enough: on a
hundred test rows that is noise. The first run promotes itself. Used by the compare step, and by promote when
another run became the champion in between.

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
from etl.intervals import paired_difference
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


def non_inferior(difference: dict[str, Any], metric: str, margin: float) -> bool:
    """Whether the interval of challenger minus champion excludes the challenger being worse than the margin."""
    if metric in champion.LOWER_IS_BETTER:
        return difference["upper"] <= margin
    return difference["lower"] >= -margin


def decide(difference: dict[str, Any] | None, first: bool, rows: pd.DataFrame,
           settings: Settings) -> tuple[bool, str]:
    """Promote or keep, and why, in words for the report, the history and the task log; `difference` is the
    paired difference on the compared rows (None when there was no fair comparison to make)."""
    metric, margin = settings.promotion_metric, settings.promotion_tolerance
    if first:
        return True, "first champion: no model was promoted before"
    classes = rows[TARGET].nunique()
    if difference is None:
        return False, (f"no fair comparison: {len(rows)} test row(s) of {classes} class(es) are left outside the "
                       f"champion's training Ids (at least {MIN_COMPARISON_ROWS} of both classes are needed); the "
                       "champion stays")
    terms = (f"{metric} difference {difference['difference']:+.4f}, 95% CI [{difference['lower']:+.4f}, "
             f"{difference['upper']:+.4f}], margin {margin:g}, on {len(rows)} rows "
             f"({difference['clusters']} Ids); challenger {difference['challenger']:.4f}, champion "
             f"{difference['champion']:.4f}")
    if non_inferior(difference, metric, margin):
        return True, f"shown non-inferior ({terms})"
    return False, f"not shown non-inferior ({terms}): the champion stays"


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
    features, labels, groups = features_and_labels(rows)
    enough = len(rows) >= MIN_COMPARISON_ROWS and rows[TARGET].nunique() == 2
    model = run.load_model(catalog.MODEL)
    challenger = {"name": run.published_name(), "run_id": run.run_id, "model": metrics["model"],
                  "operating_threshold": threshold_of(model), "metrics": scored(model, features, labels) if enough
                  else {}}
    incumbent, difference = None, None
    if pointer is not None:
        champion_model = champion.champion_model(settings.results_dir, pointer)
        incumbent = {"name": pointer["name"], "run_id": pointer["run_id"], "operating_threshold":
                     threshold_of(champion_model),
                     "metrics": scored(champion_model, features, labels) if enough else {}}
        if enough:
            difference = paired_difference(
                labels, model.predict_proba(features)[:, 1], champion_model.predict_proba(features)[:, 1], groups,
                metric=settings.promotion_metric,
                thresholds=(challenger["operating_threshold"], incumbent["operating_threshold"]),
                replicates=settings.bootstrap_replicates, seed=settings.seed)
    metric = settings.promotion_metric
    challenger["score"] = challenger["metrics"].get(metric)
    if incumbent is not None:
        incumbent["score"] = incumbent["metrics"].get(metric)
    promote, reason = decide(difference, pointer is None, rows, settings)
    return {"metric": metric, "margin": settings.promotion_tolerance, "difference": difference,
            "challenger": challenger, "champion": incumbent, "rows_compared": len(rows),
            "rows_excluded": len(test) - len(rows), "decision": "promote" if promote else "keep", "reason": reason}
