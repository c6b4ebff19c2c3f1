"""Step 7, promote: make the published run the champion when compare chose it and (with APPROVAL_REQUIRED) a
reviewer approved, then record the run in the history, promoted or not and why.

The pointer moves last: first Drive's copy (when Drive is configured), then the local `champion.json` in one
rename, so a failure or a kill before that leaves the old champion in place everywhere that matters locally.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import catalog, champion
from etl.pipeline import cli_main
from etl.publishers import remote_publishers
from etl.run_folder import RunFolder
from etl.steps import StepResult
from utils.config import Settings
from utils.errors import ArtifactError
from utils.files import read_json, write_json_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "promote"
FAILURE_CHARS = 300  # of a failed run's error in the history; the whole error is in the task log and the alert
log = get_logger(STEP)


def verdict(comparison: dict[str, Any], approval: dict[str, Any] | None, settings: Settings) -> tuple[bool, str]:
    """Whether the run becomes the champion, and why: compare's decision, then the reviewer's answer."""
    if comparison["decision"] != "promote":
        return False, comparison["reason"]
    if approval is None:
        if settings.approval_required:
            return False, ("APPROVAL_REQUIRED is set and nobody approved: only the DAG asks a reviewer; the "
                           "champion stays")
        return True, comparison["reason"]
    if approval["approved"]:
        return True, f"{comparison['reason']}; approved by {approval['by']}"
    return False, approval["reason"]


def new_pointer(run: RunFolder, comparison: dict[str, Any], manifest: dict[str, Any],
                settings: Settings) -> dict[str, Any]:
    """The pointer naming this run's published model, after checking that the published copy is the one recorded."""
    name = read_json(run.require(catalog.UPLOAD_INFO))["name"]
    digest = manifest["files"][catalog.MODEL]
    champion.verified_file(settings.results_dir / name, catalog.MODEL, "rerun upload before promoting", digest,
                           f"run {run.run_id}'s manifest")
    return {"name": name, "run_id": run.run_id, "model_sha256": digest,
            "promoted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "operating_threshold": comparison["challenger"]["operating_threshold"], "metric": comparison["metric"],
            "metrics": manifest["metrics"]}


def check_champion_unchanged(comparison: dict[str, Any], settings: Settings, own_name: str) -> None:
    """Refuse to promote over a champion that another run promoted after this run's compare."""
    current = champion.read_pointer(settings.results_dir)
    compared = comparison["champion"]["name"] if comparison["champion"] else None
    if current is not None and current["name"] not in (compared, own_name):
        raise ArtifactError(f"the champion became {current['name']} after this run compared itself with "
                            f"{compared}: rerun compare")


def publish_remote_pointers(pointer: dict[str, Any], settings: Settings) -> None:
    """Put the pointer on every remote backend (Drive: `champion.json` in GDRIVE_FOLDER_ID, replaced in place)."""
    publishers = remote_publishers(settings)
    if not publishers:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = write_json_atomic(Path(folder) / champion.POINTER, pointer)
        for publisher in publishers:
            log.info("champion pointer on %s: %s", publisher.name, publisher.publish_pointer(path))


def history_row(run: RunFolder, comparison: dict[str, Any], manifest: dict[str, Any], promoted: bool,
                reason: str) -> dict[str, Any]:
    """The run's row in the history table."""
    challenger, incumbent = comparison["challenger"], comparison["champion"]
    return {"run_id": run.run_id, "name": challenger["name"],
            "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "data_sha256": manifest["data"]["sha256"], "model": challenger["model"],
            "operating_threshold": challenger["operating_threshold"], "metric": comparison["metric"],
            "challenger_score": challenger["score"], "champion": incumbent["name"] if incumbent else "",
            "champion_score": incumbent["score"] if incumbent else "", "rows_compared": comparison["rows_compared"],
            "promoted": str(promoted).lower(), "reason": reason,
            **{name: manifest["metrics"][name] for name in catalog.HEADLINE_METRICS}}


def failed_run_row(run: RunFolder, failed_at: str, error: str) -> dict[str, Any]:
    """The history row of a run that failed at `failed_at`: not promoted, the error on one line (at most
    FAILURE_CHARS), and what its finished steps recorded (the data's sha256, the winner, its test metrics)."""
    def recorded(file: str) -> dict[str, Any]:
        return read_json(run.file(file)) if run.file(file).is_file() else {}

    loaded, selected, metrics = recorded(catalog.LOAD_INFO), recorded(catalog.SELECT_INFO), recorded(catalog.METRICS)
    message = " ".join(error.split())
    message = message[:FAILURE_CHARS] + ("…" if len(message) > FAILURE_CHARS else "")
    return {"run_id": run.run_id, "name": recorded(catalog.UPLOAD_INFO).get("name", ""),
            "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "data_sha256": loaded.get("sha256", ""), "model": selected.get("model", ""),
            "operating_threshold": selected.get("operating_threshold", ""), "promoted": "false",
            "reason": f"failed at {failed_at}: {message}",
            **{name: metrics[name] for name in catalog.HEADLINE_METRICS if name in metrics}}


def record_failed_run(run: RunFolder, settings: Settings, failed_at: str, error: str) -> None:
    """Add the failed run to the history (the pointer is not touched); a later successful try of the same run
    replaces the row."""
    with champion.held(settings.results_dir):
        champion.remove_leftovers(settings.results_dir)
        champion.record_in_history(settings.results_dir, failed_run_row(run, failed_at, error))
    log.info("run %s is recorded in the history as failed at %s", run.run_id, failed_at)


def series(comparison: dict[str, Any], promoted: bool) -> list[Sample]:
    """Challenger and (after the decision) champion scores on the compared rows, and whether it was promoted."""
    challenger, incumbent = comparison["challenger"]["metrics"], (comparison["champion"] or {}).get("metrics", {})
    kept = challenger if promoted else incumbent
    return ([Sample("challenger_metric", value, {"metric": name}, "Last challenger's test metric on the rows "
                    "compared with the champion.") for name, value in challenger.items()]
            + [Sample("champion_metric", value, {"metric": name}, "The champion's test metric on the last "
                      "compared rows (after the last promotion decision).") for name, value in kept.items()]
            + [Sample("promoted", float(promoted), help="1 when the last run's model became the champion.")])


def run(run: RunFolder, settings: Settings, approval: dict[str, Any] | None = None) -> StepResult:
    """Promote or keep; record the run in the history either way. `approval`: the reviewer's answer
    (`approved`, `by`, `reason`), None when the DAG asks nobody."""
    comparison = read_json(run.file(catalog.COMPARISON))
    manifest = read_json(run.file(catalog.MANIFEST))
    promoted, reason = verdict(comparison, approval, settings)
    pointer = None
    with champion.held(settings.results_dir):
        champion.remove_leftovers(settings.results_dir)
        if promoted:
            pointer = new_pointer(run, comparison, manifest, settings)
            check_champion_unchanged(comparison, settings, pointer["name"])
            publish_remote_pointers(pointer, settings)
            champion.write_pointer(settings.results_dir, pointer)
            log.info("run %s is the champion: %s", run.run_id, reason)
        else:
            log.info("run %s is not promoted: %s", run.run_id, reason)
        champion.record_in_history(settings.results_dir, history_row(run, comparison, manifest, promoted, reason))
    name = pointer["name"] if pointer else (comparison["champion"] or {}).get("name")
    return StepResult(record={"promoted": promoted, "reason": reason, "champion": name,
                              "approval": approval},
                      summary={"promoted": promoted, "reason": reason, "champion": name},
                      samples=series(comparison, promoted))


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, argv)


if __name__ == "__main__":
    sys.exit(main())
