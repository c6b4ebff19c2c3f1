"""The quality gate: whether a model may ship, decided on evidence about the model rather than about one split.

The rule (evaluate applies it and records every check in metrics.json):
1. Internal validation, on the repeated out-of-fold probabilities of the training rows (CV_REPEATS grouped K-fold
   draws, so hundreds of rows and no single fold draw): the lower 95% bound of the ROC-AUC (cluster bootstrap over
   Ids) must reach MIN_ROC_AUC, and the lower 95% bound of the recall at the operating threshold (Clopper-Pearson)
   must reach MIN_RECALL.
2. The held-out test rows must not contradict it: the upper 95% bound of the test ROC-AUC and of the test recall
   must reach the same minimums. With ~48 malignant test cases, 42/47 found is what a model whose true recall is
   0.95 shows now and then; only a test result that excludes the minimum fails the model.
The test rows are never used to tune anything; they can only veto.

And the check that later steps make before they use a run (compare, upload).
"""

from __future__ import annotations

from typing import Any

from etl import catalog
from etl.run_folder import RunFolder
from utils.config import Settings
from utils.errors import QualityGateError
from utils.files import read_json

# (figure, where it is read in metrics.json, its bound, the setting of its minimum)
CHECKS = (("roc_auc", "internal_validation", "lower", "MIN_ROC_AUC"),
          ("recall", "internal_validation", "lower", "MIN_RECALL"),
          ("roc_auc", "test", "upper", "MIN_ROC_AUC"),
          ("recall", "test", "upper", "MIN_RECALL"))
COMPUTED_ON = {"internal_validation": "the repeated out-of-fold probabilities of the training rows",
               "test": "the held-out test rows"}


def minimum_of(setting: str, settings: Settings) -> float:
    """The minimum that the setting `setting` (MIN_RECALL, MIN_ROC_AUC) sets."""
    return float(getattr(settings, setting.lower()))


def check(figure: str, rows: str, bound: str, setting: str, intervals: dict[str, Any],
          settings: Settings) -> dict[str, Any]:
    """One check of the rule: the `bound` of the 95% interval of `figure` on `rows` against its minimum."""
    interval = intervals[figure]
    value, minimum = interval[bound], minimum_of(setting, settings)
    return {"figure": figure, "rows": rows, "computed_on": COMPUTED_ON[rows], "bound": bound, "value": value,
            "estimate": interval["estimate"], "lower": interval["lower"], "upper": interval["upper"],
            "minimum": minimum, "setting": setting, "passed": value is not None and value >= minimum}


def shown(value: float | None) -> str:
    """A figure to 4 decimals; none when it could not be computed (no row to compute it on)."""
    return "none" if value is None else f"{value:.4f}"


def describe(result: dict[str, Any]) -> str:
    """A failed check in words."""
    return (f"{result['figure']} on {result['computed_on']}: the {result['bound']} 95% bound "
            f"{shown(result['value'])} < {result['minimum']:.4f} ({result['setting']}; estimate "
            f"{shown(result['estimate'])}, 95% CI [{shown(result['lower'])}, {shown(result['upper'])}])")


def quality_gate(test_intervals: dict[str, Any], internal_intervals: dict[str, Any],
                 settings: Settings) -> dict[str, Any]:
    """Every check of the rule on the intervals of the test rows and of the internal validation; `passed` is
    False when any fails."""
    intervals = {"test": test_intervals, "internal_validation": internal_intervals}
    checks = [check(figure, rows, bound, setting, intervals[rows], settings)
              for figure, rows, bound, setting in CHECKS]
    return {"passed": all(result["passed"] for result in checks), "checks": checks,
            "thresholds": {"recall": settings.min_recall, "roc_auc": settings.min_roc_auc},
            "failures": [describe(result) for result in checks if not result["passed"]]}


def gated_metrics(run: RunFolder) -> dict[str, Any]:
    """The run's metrics, or QualityGateError when they record a failed quality gate (nothing after evaluate runs)."""
    metrics = read_json(run.file(catalog.METRICS))
    if not metrics["quality_gate"]["passed"]:
        raise QualityGateError(f"{run.file(catalog.METRICS)} records a failed quality gate: the run is neither "
                               "compared with the champion nor published")
    return metrics
