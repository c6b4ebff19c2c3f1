"""The quality gate: the minimums a model's test metrics must reach (evaluate applies it and records the verdict
in metrics.json), and the check that later steps make before they use a run (compare, upload)."""

from __future__ import annotations

from typing import Any

from etl import catalog
from etl.run_folder import RunFolder
from utils.config import Settings
from utils.errors import QualityGateError
from utils.files import read_json


def quality_gate(metrics: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Compare the gated metrics (at the operating threshold) with their minimums; `passed` is False when any is
    below."""
    thresholds = {"recall": settings.min_recall, "roc_auc": settings.min_roc_auc}
    failures = [f"{name} {metrics[name]:.4f} < {minimum:.4f} (MIN_{name.upper()})"
                for name, minimum in thresholds.items() if metrics[name] < minimum]
    return {"passed": not failures, "thresholds": thresholds, "failures": failures}


def gated_metrics(run: RunFolder) -> dict[str, Any]:
    """The run's metrics, or QualityGateError when they record a failed quality gate (nothing after evaluate runs)."""
    metrics = read_json(run.file(catalog.METRICS))
    if not metrics["quality_gate"]["passed"]:
        raise QualityGateError(f"{run.file(catalog.METRICS)} records a failed quality gate: the run is neither "
                               "compared with the champion nor published")
    return metrics
