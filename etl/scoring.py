"""Score the batches waiting in INCOMING_DIR with the champion, publish each one's predictions and summary, and
bring earlier batches up to date when the champion changed: what the scoring DAG runs.

A batch is one CSV file, `<INCOMING_DIR>/<name>.csv`. Its life:
1. claimed: renamed into `<INCOMING_DIR>/.claimed/` (a rename is atomic, so two runs never take the same file;
   what a killed try left there is taken first by the next one);
2. scored into a staging folder (predictions.csv, summary.json with the drift) and published whole to
   `<RESULTS_DIR>/scoring/<name>/`, then to Drive (`scoring_<name>`) when configured;
3. moved to `<PROCESSED_DIR>/<name>.csv`, only after that: a batch is never lost, nor scored twice by accident.
A bad batch (its data, or a name already processed) goes back to INCOMING_DIR with `<name>.error.json` beside it
saying why; it is not retried while its content stays the same, and the other batches go on. A transient error
(Drive down) leaves the claim for the retry. When the champion changed, every processed batch scored by an older
model is scored again from PROCESSED_DIR and republished in place.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from etl import catalog
from etl.predict import PublishedModel, load_published, score_file
from etl.publishers import LocalPublisher, RunBundle, remote_publishers
from utils.config import Settings
from utils.errors import DataValidationError, PipelineError
from utils.files import read_json, sha256_file, write_json_atomic
from utils.logger import get_logger

BATCH_SUFFIX = ".csv"
CLAIMED = ".claimed"  # INCOMING_DIR's folder of batches being scored
REPORT_SUFFIX = ".error.json"  # beside a bad batch in INCOMING_DIR: why it was not scored
SCORING_RESULTS = "scoring"  # RESULTS_DIR's folder of scored batches, one folder each
DRIVE_PREFIX = "scoring_"  # a scored batch's folder in GDRIVE_FOLDER_ID
log = get_logger("scoring")


def report_path(incoming: Path, name: str) -> Path:
    """Where the report of the bad batch `name` goes."""
    return incoming / f"{name}{REPORT_SUFFIX}"


def known_bad(path: Path) -> bool:
    """Whether `path` is a bad batch already reported, unchanged since."""
    report = report_path(path.parent, path.stem)
    return report.is_file() and read_json(report).get("sha256") == sha256_file(path)


def pending_batches(incoming: Path) -> tuple[list[Path], list[Path]]:
    """The batches to score (a killed try's claims first, then new files, by name) and the reported bad ones
    still unchanged."""
    claimed = sorted((incoming / CLAIMED).glob(f"*{BATCH_SUFFIX}"))
    new = sorted(path for path in incoming.glob(f"*{BATCH_SUFFIX}") if path.is_file())
    bad = [path for path in new if known_bad(path)]
    return claimed + [path for path in new if path not in bad], bad


def claim(path: Path, incoming: Path) -> Path | None:
    """Rename the batch into the claimed folder (already there: kept); None when another run took it first."""
    target = incoming / CLAIMED / path.name
    if path == target:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def publish_batch(name: str, folder: Path, settings: Settings) -> dict[str, str]:
    """Publish the scored batch's files in `folder` locally, then to every remote backend; where they went."""
    files = tuple(folder / file for file in (catalog.PREDICTIONS, catalog.SCORING_SUMMARY))
    checksums = {path.name: sha256_file(path) for path in files}
    local = LocalPublisher(settings.results_dir / SCORING_RESULTS)
    results = [local.publish(RunBundle(f"batch {name}", name, files, checksums))]
    results += [publisher.publish(RunBundle(f"batch {name}", f"{DRIVE_PREFIX}{name}", files, checksums))
                for publisher in remote_publishers(settings)]
    return {result.backend: result.location for result in results}


def score_batch(source: Path, name: str, published: PublishedModel, settings: Settings) -> dict[str, Any]:
    """Score the batch file `source` as `name` and publish it; returns its summary."""
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=settings.runs_dir) as staging:
        folder = Path(staging)
        summary = score_file(source, folder / catalog.PREDICTIONS, published, settings)
        summary = {**summary, "batch": name, "input": str(settings.processed_dir / f"{name}{BATCH_SUFFIX}"),
                   "output": str(settings.results_dir / SCORING_RESULTS / name / catalog.PREDICTIONS)}
        write_json_atomic(folder / catalog.SCORING_SUMMARY, summary)
        summary["destinations"] = publish_batch(name, folder, settings)
    return summary


def reject(claimed: Path, incoming: Path, error: PipelineError) -> Path:
    """Put a bad batch back into INCOMING_DIR with its report beside it; returns the report."""
    name = claimed.stem
    report = write_json_atomic(report_path(incoming, name), {
        "batch": name, "sha256": sha256_file(claimed), "error_type": type(error).__name__, "error": str(error),
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what_next": "fix or replace the file (same name) and announce the batch again; "
                     "until it changes it is not scored again"})
    os.replace(claimed, incoming / claimed.name)
    return report


def take_in(claimed: Path, published: PublishedModel, settings: Settings) -> dict[str, Any]:
    """Score, publish and then move one claimed batch to PROCESSED_DIR; its summary."""
    name = claimed.stem
    processed = settings.processed_dir / claimed.name
    if processed.exists():
        raise DataValidationError(f"{claimed.name}: a batch named {name!r} was already scored ({processed}); "
                                  "give the file a new name to score it as a new batch")
    summary = score_batch(claimed, name, published, settings)
    processed.parent.mkdir(parents=True, exist_ok=True)
    os.replace(claimed, processed)  # only now: the predictions are published
    report_path(settings.incoming_dir, name).unlink(missing_ok=True)
    return summary


def stale_batches(settings: Settings, published: PublishedModel) -> list[Path]:
    """Processed batches whose published predictions come from another model than the champion's."""
    stale = []
    for path in sorted(settings.processed_dir.glob(f"*{BATCH_SUFFIX}")):
        summary = settings.results_dir / SCORING_RESULTS / path.stem / catalog.SCORING_SUMMARY
        if not summary.is_file() or read_json(summary)["model"]["model_sha256"] != published.sha256:
            stale.append(path)
    return stale


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The few facts of a batch summary for XCom and logs."""
    drift = summary["drift"]
    return {"batch": summary["batch"], "rows": summary["rows"], "predicted_malignant": summary["predicted_malignant"],
            "max_psi": drift.get("max_psi"), "drifted": drift.get("drifted")}


def score_pending(settings: Settings) -> dict[str, Any]:
    """Score every pending batch, then rescore the stale ones; bad batches are reported and, after the others
    are done, fail the call together (DataValidationError naming each and its report)."""
    published = load_published(settings)
    incoming = settings.incoming_dir
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    batches, waiting = pending_batches(incoming)
    scored, failed = [], []
    for path in batches:
        claimed = claim(path, incoming)
        if claimed is None:
            continue
        try:
            scored.append(brief(take_in(claimed, published, settings)))
        except PipelineError as exc:
            if exc.transient:
                raise  # the claim stays: the retry takes it first
            failed.append(f"{claimed.name}: {exc} (report: {reject(claimed, incoming, exc)})")
            log.error("batch %s rejected: %s", claimed.name, exc)
    rescored = [brief(score_batch(path, path.stem, published, settings)) for path in stale_batches(settings, published)]
    outcome = {"model": published.describe(), "scored": scored, "rescored": rescored, "failed": len(failed),
               "waiting_for_a_fix": [path.name for path in waiting]}
    log.info("scoring: %d batch(es) scored, %d rescored, %d rejected, %d unchanged bad one(s) waiting",
             len(scored), len(rescored), len(failed), len(waiting))
    if failed:
        raise DataValidationError(f"{len(failed)} batch(es) rejected and left in {incoming}:\n  " + "\n  ".join(failed))
    return outcome
