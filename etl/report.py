"""The run's report for people (report.md), from metrics.json's content alone: what was chosen and why, every
figure with its 95% interval and the rows it was computed on, internal validation beside the held-out test, the
2x2 table with the prevalence, calibration, the decision curve, the clinical direction and the gate's checks."""

from __future__ import annotations

from typing import Any

from etl import catalog
from etl.catalog import CV_METRICS

NAMES = {"recall": "sensitivity (recall)", "specificity": "specificity", "precision": "PPV (precision)",
         "npv": "NPV", "accuracy": "accuracy", "prevalence": "prevalence (malignant share)", "roc_auc": "ROC-AUC",
         "pr_auc": "PR-AUC (average precision)", "brier_score": "Brier score",
         "calibration_intercept": "calibration intercept (ideal 0)", "calibration_slope": "calibration slope (ideal 1)"}
DECISION_CURVE_POINTS = (0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50)  # threshold probabilities shown in the table


def number(value: float | None) -> str:
    """A figure to 4 decimals, or n/a when there was nothing to compute it on."""
    return "n/a" if value is None else f"{value:.4f}"


def with_interval(interval: dict[str, Any]) -> str:
    """`0.9650 (48/48; 95% CI [0.9260, 1.0000])`: the estimate, its counts when it is a proportion, its interval."""
    counts = f"{interval['successes']}/{interval['trials']}; " if "successes" in interval else ""
    return f"{number(interval['estimate'])} ({counts}95% CI [{number(interval['lower'])}, {number(interval['upper'])}])"


def markdown_cell(text: str) -> str:
    """`text` shortened to fit a table cell, with no `|` to split it."""
    return text[:200].replace("|", "/").replace("\n", " ")


def cv_table(candidates: list[dict[str, Any]], winner: str) -> str:
    """Every candidate's cross-validation (mean ± std per metric), or why it failed; the winner in bold."""
    header = "| candidate | " + " | ".join(CV_METRICS) + " |\n|---|" + "---|" * len(CV_METRICS)
    rows = [f"| **{result['name']}** (selected) |" if result["name"] == winner else f"| {result['name']} |"
            for result in candidates]
    cells = [" | ".join(f"{result['cv'][metric]['mean']:.4f} ± {result['cv'][metric]['std']:.4f}"
                        for metric in CV_METRICS) if result["status"] == "trained"
             else f"failed: {markdown_cell(result['error'])}" + " |" * (len(CV_METRICS) - 1)
             for result in candidates]
    return "\n".join([header, *(f"{row} {cell} |" for row, cell in zip(rows, cells, strict=True))])


def evidence_table(internal: dict[str, Any], test: dict[str, Any]) -> str:
    """Each figure on the repeated out-of-fold predictions beside the held-out test."""
    lines = ["| figure | internal validation (training rows, out of fold) | held-out test |", "|---|---|---|"]
    lines += [f"| {label} | {with_interval(internal[name])} | {with_interval(test[name])} |"
              for name, label in NAMES.items()]
    return "\n".join(lines)


def two_by_two(cm: dict[str, int], intervals: dict[str, Any]) -> str:
    """The 2x2 table of the held-out rows at the operating threshold, with its margins and prevalence."""
    return (f"| | predicted malignant | predicted benign | total |\n|---|---|---|---|\n"
            f"| **malignant** | {cm['tp']} (found) | {cm['fn']} (missed) | {cm['tp'] + cm['fn']} |\n"
            f"| **benign** | {cm['fp']} (flagged) | {cm['tn']} (cleared) | {cm['fp'] + cm['tn']} |\n"
            f"| **total** | {cm['tp'] + cm['fp']} | {cm['fn'] + cm['tn']} | {sum(cm.values())} |\n\n"
            f"Prevalence {with_interval(intervals['prevalence'])}: PPV and NPV hold at this prevalence only; "
            "where malignancy is rarer, the PPV is lower and the NPV higher.")


def gate_section(gate: dict[str, Any]) -> str:
    """The gate's rule, each check and the verdict."""
    lines = ["| figure | computed on | 95% bound | value | minimum | passed |", "|---|---|---|---|---|---|"]
    lines += [f"| {check['figure']} | {check['computed_on']} | {check['bound']} | {number(check['value'])} | "
              f"{check['minimum']:.4f} ({check['setting']}) | {'yes' if check['passed'] else '**no**'} |"
              for check in gate["checks"]]
    verdict = "**PASSED**" if gate["passed"] else "**FAILED**: " + "; ".join(gate["failures"])
    return ("The gate tests the model, not one split: the lower 95% bounds of the internal validation (hundreds of "
            "out-of-fold predictions) must reach the minimums, and the held-out test may veto only when its "
            "interval excludes them (its upper bound falls short).\n\n" + "\n".join(lines) + f"\n\nVerdict: {verdict}")


def calibration_section(calibration: dict[str, Any], internal: dict[str, Any]) -> str:
    """Weak calibration, ECE with its binning, and the reliability table with its bands."""
    intervals = internal["intervals"]
    rows = "\n".join(f"| {point['bin']} | {point['rows']} | {point['mean_predicted']:.3f} | {point['observed']:.3f} "
                     f"| [{number(point['lower'])}, {number(point['upper'])}] |" for point in calibration["curve"])
    return (f"On the training rows out of fold ({internal['rows']} rows): calibration intercept "
            f"{with_interval(intervals['calibration_intercept'])}, slope "
            f"{with_interval(intervals['calibration_slope'])}; expected calibration error "
            f"{calibration['expected_calibration_error']:.3f} over {calibration['binning']}. Brier score "
            f"{with_interval(intervals['brier_score'])} (always predicting the "
            f"malignant share would score {calibration['brier_score_of_prevalence']:.4f}).\n\n"
            "| predicted risk | rows | mean predicted | observed malignant share | 95% CI |\n|---|---|---|---|---|\n"
            + rows + f"\n\n![calibration curve]({catalog.CALIBRATION_CURVE})")


def decision_curve_rows(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision curve at the threshold probabilities the reports show (DECISION_CURVE_POINTS)."""
    return [point for point in table if any(abs(point["threshold"] - at) < 1e-9 for at in DECISION_CURVE_POINTS)]


def decision_curve_section(table: list[dict[str, Any]], threshold: float) -> str:
    """Net benefit at a few threshold probabilities, and the chart."""
    shown = decision_curve_rows(table)
    lines = ["| threshold probability | model | treat all | treat none |", "|---|---|---|---|"]
    lines += [f"| {point['threshold']:.2f} | {point['model']:.4f} | {point['treat_all']:.4f} | 0 |" for point in shown]
    return ("Net benefit on the held-out test rows (true positives minus false positives weighted by the odds of the "
            "threshold probability, per patient; Vickers & Elkin 2006): where the model's curve lies above both "
            f"treat-all and treat-none, deciding by it does more good than harm. The operating threshold is "
            f"{threshold:.3f}.\n\n" + "\n".join(lines) + f"\n\n![decision curve]({catalog.DECISION_CURVE})")


def direction_section(checks: list[dict[str, Any]]) -> str:
    """Each feature's effect against the clinical direction (a higher score should never lower the risk)."""
    against = [check for check in checks if not check["follows_clinical_direction"]]
    if not against:
        return ("On every held-out row, raising any one cytology score by one step never lowered the predicted "
                "risk: the model follows the clinical direction of all nine.")
    return ("**Against the clinical direction** (raising the score by one step lowered the risk):\n\n"
            + "\n".join(f"- `{check['feature']}`: on {check['rows_lowered']} of {check['rows_checked']} rows, by up "
                        f"to {check['largest_drop']:.4f}" for check in against))


def render_report(metrics: dict[str, Any]) -> str:
    """A Markdown report of the run for people."""
    internal, tested = metrics["internal_validation"], metrics["intervals"]
    cm, default = metrics["confusion_matrix"], metrics["at_default_threshold"]["confusion_matrix"]
    threshold = metrics["operating_threshold"]
    verdict = "PASSED" if metrics["quality_gate"]["passed"] else "FAILED"
    reached = ("reached" if metrics["target_reached"] else "NOT reachable with so few malignant training rows, so the "
               "threshold is the lowest malignant case's probability and flags every one of them")
    charts = "\n".join(f"![{name.removesuffix('.png').replace('_', ' ')}]({name})"
                       for name in (catalog.ROC_CURVE, catalog.PRECISION_RECALL_CURVE, catalog.CONFUSION_MATRIX))
    return f"""# Breast cancer model: run {metrics['run_id']}

> **Model** `{metrics['model']}` at operating threshold **{threshold:.4f}** (a case is flagged malignant when its
> predicted risk is at least this). On the {metrics['rows_test']} held-out test rows: sensitivity
> {with_interval(tested['recall'])}, specificity {with_interval(tested['specificity'])}, ROC-AUC
> {with_interval(tested['roc_auc'])}. Quality gate: **{verdict}**. Whether it replaces the champion:
> [{catalog.COMPARISON_REPORT}]({catalog.COMPARISON_REPORT}).

- Chosen among {len(metrics['candidates'])} candidates by cross-validated `{metrics['selection_metric']}` (seed
  {metrics['seed']}); trained on {metrics['rows_train']} rows; tested once on {metrics['rows_test']} held-out rows
  whose Ids never appear in training.
- Data: {metrics['data_source']} `{metrics['data_location']}`, sha256 `{metrics['data_sha256']}`.
- Intervals are 95%: exact (Clopper-Pearson) for shares, with their counts; a cluster bootstrap over Ids
  ({tested['roc_auc']['replicates']} resamples) for ROC-AUC, PR-AUC, Brier score and calibration.

## Quality gate

{gate_section(metrics['quality_gate'])}

## Candidates: cross-validation on the training rows ({metrics['cv_folds']} folds, grouped by Id)

Label metrics at 0.5; the winner is the candidate with the best mean `{metrics['selection_metric']}`, a tie (within
{metrics['tie_tolerance']}) going to the earlier, simpler one.

{cv_table(metrics['candidates'], metrics['model'])}

## How the threshold was chosen

The winner's cross-validation was repeated {internal['repeats']} times with different fold draws; each training
row's out-of-fold risk is the mean of its {internal['repeats']} (every one from a model that did not see its Id;
ROC-AUC per repeat: {', '.join(f'{value:.4f}' for value in internal['roc_auc_per_repeat'])}). The threshold is the
highest one whose out-of-fold recall reaches the target {metrics['target_recall']} with
{metrics['target_confidence']:.0%} confidence (the one-sided Clopper-Pearson lower bound reaches it): {reached}. The
test rows played no part.

## Internal validation and the held-out test

Internal validation: {internal['computed_on']} ({internal['rows']} rows, {internal['ids']} Ids). Held-out test:
{metrics['rows_test']} rows scored once.

{evidence_table(internal['intervals'], tested)}

## The 2×2 table (held-out test, operating threshold {threshold:.4f})

{two_by_two(cm, tested)}

At 0.5 the same model would miss {default['fn']} and flag {default['fp']}.

## Calibration

{calibration_section(internal['calibration'], internal)}

## Clinical utility: the decision curve

{decision_curve_section(metrics['decision_curve'], threshold)}

## Clinical direction

{direction_section(metrics['clinical_direction'])}

## Charts (held-out test)

{charts}
"""
