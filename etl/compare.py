"""The compare step: the comparison of this run's model with the champion (etl/comparison.py) written for the
runner and for people: comparison.json, and comparison.md with the history of earlier runs, which is also what a
reviewer reads before approving; and the run's clinical model card, report.html (etl/model_card.py), from the same
facts as metrics.json and comparison.json.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl import catalog, champion, model_card
from etl.comparison import compare
from etl.quality_gate import gated_metrics
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.files import read_json, write_json_atomic, write_text_atomic
from utils.logger import get_logger

STEP = "compare"
log = get_logger(STEP)


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
    lines += ["", f"Compared on **{comparison['metric']}** (non-inferiority margin {comparison['margin']:g}, 95% "
              "interval of the paired difference over the same resampled Ids): "
              f"**{comparison['decision']}**: {comparison['reason']}.", "", f"Report: {report}"]
    return "\n".join(lines)


def card_facts(run: RunFolder, comparison: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the model card shows (etl/model_card.py): the run's metrics, the comparison, the data's flow and
    distributions, the model's specification, the charts inline and the public settings it states."""
    train, test = pd.read_csv(run.file(catalog.TRAIN)), pd.read_csv(run.file(catalog.TEST))
    flow = model_card.participant_flow(run.record("load"), run.record("preprocess"),
                                       read_json(run.file(catalog.VALIDATION_REPORT)), train, test)
    return {
        "metrics": gated_metrics(run), "comparison": comparison, "flow": flow,
        "distributions": model_card.predictor_distributions(train, test),
        "specification": model_card.model_specification(run.load_model(catalog.MODEL)),
        "settings": model_card.card_settings(settings.public_dict(published=True)),
        "charts": {name: model_card.data_uri(run.file(name).read_bytes()) for name in catalog.CHARTS}}


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Compare challenger and champion; write the decision (JSON), its report (Markdown, with the history) and the
    model card (HTML)."""
    comparison = compare(run, settings)
    report = f"{run.published_name()}/{catalog.REPORT} in RESULTS_DIR"
    text = review(comparison, report)
    history = champion.history_markdown(champion.read_history(settings.results_dir))
    write_json_atomic(run.file(catalog.COMPARISON), comparison)
    write_text_atomic(run.file(catalog.COMPARISON_REPORT),
                      f"# Champion and challenger: run {run.run_id}\n\n{text}\n\n## Earlier runs\n\n{history}\n")
    write_text_atomic(run.file(catalog.MODEL_CARD), model_card.render(card_facts(run, comparison, settings)))
    log.info("%s: %s", comparison["decision"], comparison["reason"])
    incumbent = comparison["champion"]
    summary = {"decision": comparison["decision"], "reason": comparison["reason"], "metric": comparison["metric"],
               "challenger_score": comparison["challenger"]["score"],
               "champion": incumbent["name"] if incumbent else None,
               "champion_score": incumbent["score"] if incumbent else None,
               "rows_compared": comparison["rows_compared"], "review": text}
    return StepResult(record={"decision": comparison["decision"], "champion": summary["champion"]}, summary=summary)

