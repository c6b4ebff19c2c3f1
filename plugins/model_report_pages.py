"""What the Model report tab and the Models page show (served by plugins/model_reports.py): lookups in RESULTS_DIR
and the HTML, as plain functions of that folder, without Airflow, so that they are tested without a server.

A run id from a URL is never joined into a path: it is compared with the `run_id` of the published runs'
manifests and the history's rows, and only a folder name that etl/champion.py's `published_folder` accepts (one
name, a real directory directly inside RESULTS_DIR) is opened; every file is read through
utils.files.regular_handle (no link followed) and a published one only when its sha256 is the manifest's.
Every value of the pages goes through `html.escape`; the published report.html is served as it is, under
HEADERS' Content-Security-Policy (no script, no remote content, images only from `data:`).
"""

from __future__ import annotations

import base64
import html
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl import catalog, champion
from etl.run_folder import PUBLISHED_NAME, short_run_id
from etl.steps import DAG_ID
from utils.errors import PipelineError
from utils.files import read_json

SCORING = "scoring"  # etl.scoring.SCORING_RESULTS, not imported here: etl.scoring loads pandas
MAX_RUN_ID_CHARS = 250  # Airflow's run_id column holds at most 250
LATEST_BATCHES = 10
TAB_ROUTE = "model-report"  # the tab's url_route: a run's tab is /dags/<dag>/runs/<run>/plugin/model-report
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; "
       "form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a202c;line-height:1.45}
table{border-collapse:collapse;font-size:.85rem}th,td{border:1px solid #cbd5e0;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#edf2f7}.box{border:2px solid #2b6cb0;border-radius:6px;padding:.75rem 1rem;
margin:1rem 0;max-width:60rem}.failed{border-color:#c53030}pre{white-space:pre-wrap}img{max-width:45%}"""


@dataclass(frozen=True)
class Page:
    """An answer of the plugin: its status, its HTML bytes and the headers every answer carries."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))


def escaped(value: Any) -> str:
    """A value as HTML text: `None` as empty, anything else escaped, quotes included."""
    return "" if value is None else html.escape(str(value), quote=True)


def document(title: str, body: str, status: int = 200) -> Page:
    """A whole page around `body` (already HTML), titled `title` (text)."""
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escaped(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>")
    return Page(status, text.encode("utf-8"))


def not_found(message: str) -> Page:
    """A 404 saying why, for people (never a path of the server)."""
    return document("Not found", f"<h1>Not found</h1><p>{escaped(message)}</p>", 404)


def published_run(results_dir: Path, run_id: str) -> str | None:
    """The folder name under RESULTS_DIR of the run `run_id`'s publication (the newest, should it have been
    published twice), found by its manifest's `run_id`; None when the run published nothing."""
    suffix = f"_{short_run_id(run_id)}"
    try:
        names = sorted(os.listdir(results_dir), reverse=True)
    except FileNotFoundError:
        return None
    for name in names:
        if not (name.endswith(suffix) and PUBLISHED_NAME.fullmatch(name)):
            continue
        try:
            manifest = read_json(champion.published_folder(results_dir, name, "the model report") / catalog.MANIFEST)
        except PipelineError:  # not a folder, a link, no manifest: not a publication to show
            continue
        if manifest.get("run_id") == run_id:
            return name
    return None


def history_row(results_dir: Path, run_id: str) -> dict[str, str] | None:
    """The history's row of the run, if it has one."""
    return next((row for row in reversed(champion.read_history(results_dir)) if row.get("run_id") == run_id), None)


def run_report(results_dir: Path, dag_id: str, run_id: str) -> Page:
    """The Model report tab of one run: its published report.html as it is; for a run that failed, why and where
    (its history row); for a published run without report.html yet, its report.md shown as text with its charts;
    404 for any other DAG, an unknown run or a name that is not a run id."""
    if dag_id != DAG_ID:
        return not_found(f"Only the DAG {DAG_ID} publishes model reports.")
    if not run_id or len(run_id) > MAX_RUN_ID_CHARS or not run_id.isprintable():
        return not_found("No such run.")
    folder, row = published_run(results_dir, run_id), history_row(results_dir, run_id)
    if row is not None and row.get("reason", "").startswith("failed at"):
        return failed_run_page(run_id, row, folder)
    if folder is None:
        return not_found(f"The run {run_id} has published no report (yet): it is still running, or it is not a run "
                         f"of {DAG_ID}.")
    remedy = "publish the run again"
    try:
        return Page(200, champion.verified_content(results_dir, folder, catalog.MODEL_CARD, remedy))
    except PipelineError:
        pass
    try:
        markdown = champion.verified_content(results_dir, folder, catalog.REPORT, remedy).decode("utf-8")
    except PipelineError:
        return not_found(f"The run {run_id}'s published report is missing or changed since it was published.")
    return markdown_page(run_id, markdown, charts(results_dir, folder))


def charts(results_dir: Path, folder: str) -> dict[str, bytes]:
    """The published run's charts that its manifest vouches for, by file name."""
    found = {}
    for name in catalog.CHARTS:
        try:
            found[name] = champion.verified_content(results_dir, folder, name, "publish the run again")
        except PipelineError:
            continue
    return found


def failed_run_page(run_id: str, row: dict[str, str], folder: str | None) -> Page:
    """Why and where the run failed, from its history row."""
    reason = row.get("reason", "")
    step = re.match(r"failed at ([\w-]+)", reason)
    published = (f"<p>It published <code>{escaped(folder)}</code> before failing.</p>" if folder
                 else "<p>It published nothing.</p>")
    body = (f"<h1>Run {escaped(run_id)} failed</h1><div class='box failed'><p><strong>Where:</strong> "
            f"{escaped(step[1] if step else 'unknown step')}</p><p><strong>Why:</strong> {escaped(reason)}</p>"
            f"<p><strong>Recorded:</strong> {escaped(row.get('recorded_at'))}</p></div>{published}"
            "<p>The whole error is in the failed task's log and in the alert.</p>")
    return document(f"Run {run_id} failed", body)


def markdown_page(run_id: str, markdown: str, images: dict[str, bytes]) -> Page:
    """report.md shown minimally until report.html is published: headings as headings, its images inline (as
    `data:` URIs), every other line as escaped text."""
    parts = []
    for line in markdown.splitlines():
        heading = re.match(r"(#{1,4}) (.*)", line)
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if heading:
            level = len(heading[1])
            parts.append(f"<h{level}>{escaped(heading[2])}</h{level}>")
        elif image and image[2] in images:
            data = base64.b64encode(images[image[2]]).decode("ascii")
            parts.append(f'<img alt="{escaped(image[1])}" src="data:image/png;base64,{data}">')
        else:
            parts.append(f"<pre>{escaped(line)}</pre>" if line.strip() else "")
    return document(f"Model report of run {run_id}", "".join(parts))


def tab_link(run_id: str) -> str:
    """A link, relative to the Models page, to the run's Model report tab in Airflow's UI."""
    return (f"../dags/{urllib.parse.quote(DAG_ID, safe='')}/runs/{urllib.parse.quote(run_id, safe='')}/plugin/"
            f"{TAB_ROUTE}")


def interval(row: dict[str, Any], name: str) -> str:
    """`value [lower, upper]` of a history figure (any part it lacks left out)."""
    value = champion.cell(row[name]) if row.get(name) else ""
    bounds = [row.get(f"{name}_{bound}") for bound in ("lower", "upper")]
    bracket = f" [{champion.cell(bounds[0])}, {champion.cell(bounds[1])}]" if all(bounds) else ""
    return f"{value}{bracket}".strip()


def table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """An HTML table of cells that are already HTML."""
    head = "".join(f"<th>{escaped(name)}</th>" for name in header)
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>"
                                               for row in rows) + "</table>"


def run_link(row: dict[str, Any]) -> str:
    run_id = row.get("run_id", "")
    label = row.get("name") or run_id
    return f'<a target="_top" href="{escaped(tab_link(run_id))}">{escaped(label)}</a>'


def champion_section(results_dir: Path) -> str:
    """The champion's box: its run, model, operating threshold and promotion, with a link to its report."""
    try:
        pointer = champion.read_pointer(results_dir)
    except PipelineError as exc:
        return f"<div class='box failed'>The champion pointer cannot be read: {escaped(exc)}</div>"
    if pointer is None:
        return "<div class='box'>No champion yet: no run has been promoted.</div>"
    metrics = pointer.get("metrics") if isinstance(pointer.get("metrics"), dict) else {}
    model = pointer.get("model") or (history_row(results_dir, pointer["run_id"]) or {}).get("model", "")
    figures = ", ".join(f"{escaped(name)} {escaped(champion.cell(value))}" for name, value in metrics.items()
                        if not isinstance(value, dict | list))
    return (f"<div class='box'><p><strong>Champion:</strong> {run_link(pointer)} (run "
            f"<code>{escaped(pointer.get('run_id'))}</code>)</p><p><strong>Model:</strong> "
            f"{escaped(model)} at operating threshold "
            f"{escaped(champion.cell(pointer.get('operating_threshold', '')))}; promoted "
            f"{escaped(pointer.get('promoted_at', ''))} on {escaped(pointer.get('metric', ''))}</p>"
            f"<p>{figures}</p></div>")


HISTORY_HEADER = ("run", "recorded", "model", "threshold", "recall [95% CI]", "specificity 95% CI",
                  "ROC-AUC [95% CI]", "promotion metric", "difference [95% CI]", "margin", "promoted", "reason")


def history_section(results_dir: Path) -> str:
    """Every run of the history, newest first: promoted or not, why, and the intervals."""
    rows = list(reversed(champion.read_history(results_dir)))
    if not rows:
        return "<p>No run has been recorded yet.</p>"
    cells = [[run_link(row), escaped(row.get("recorded_at")), escaped(row.get("model")),
              escaped(champion.cell(row.get("operating_threshold", ""))), escaped(interval(row, "recall")),
              escaped(interval(row, "specificity")), escaped(interval(row, "roc_auc")), escaped(row.get("metric")),
              escaped(interval(row, "difference")), escaped(row.get("margin")), escaped(row.get("promoted")),
              escaped(row.get("reason"))] for row in rows]
    return table(HISTORY_HEADER, cells)


def scoring_summaries(results_dir: Path, most: int = LATEST_BATCHES) -> list[dict[str, Any]]:
    """The newest scored batches' summaries (RESULTS_DIR/scoring/<batch>/summary.json), newest first; a batch
    folder that is a link, or a summary that is not a regular JSON file, is left out."""
    root = results_dir / SCORING
    try:
        entries = [entry for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        try:
            summary = read_json(Path(entry.path) / catalog.SCORING_SUMMARY)
            changed = os.lstat(Path(entry.path) / catalog.SCORING_SUMMARY)
        except (PipelineError, OSError):
            continue
        if isinstance(summary, dict) and stat.S_ISREG(changed.st_mode):
            found.append((changed.st_mtime, entry.name, summary))
    return [summary | {"batch": summary.get("batch", name)}
            for _, name, summary in sorted(found, key=lambda item: item[:2], reverse=True)[:most]]


SCORING_HEADER = ("batch", "rows", "predicted malignant", "model", "max PSI (feature)", "drifted", "drifted features")


def scoring_section(results_dir: Path) -> str:
    """The latest scored batches and their drift from the training rows."""
    summaries = scoring_summaries(results_dir)
    if not summaries:
        return "<p>No batch has been scored yet.</p>"
    cells = []
    for summary in summaries:
        drift = summary.get("drift") if isinstance(summary.get("drift"), dict) else {}
        model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
        cells.append([escaped(summary.get("batch")), escaped(summary.get("rows")),
                      escaped(summary.get("predicted_malignant")), escaped(model.get("name")),
                      escaped(f"{champion.cell(drift.get('max_psi', ''))} ({drift.get('max_psi_feature', '')})"),
                      escaped(drift.get("drifted")), escaped(", ".join(map(str, drift.get("drifted_features") or [])))])
    return table(SCORING_HEADER, cells)


def models_page(results_dir: Path) -> Page:
    """The Models page: the champion, the history of runs, the latest scored batches with their drift."""
    body = (f"<h1>Models of {escaped(DAG_ID)}</h1>{champion_section(results_dir)}<h2>History of runs</h2>"
            f"{history_section(results_dir)}<h2>Latest scored batches</h2>{scoring_section(results_dir)}")
    return document("Models", body)
