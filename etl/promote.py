"""The promote step: make the published run the champion when compare chose it and (with APPROVAL_REQUIRED) a
reviewer approved, then record the run in the history, promoted or not and why.

The decision is made against the champion in place when promote holds the champion lock: when another run
promoted since this run's compare, the challenger is compared again with that champion (a reviewer's approval,
given against the earlier one, then does not carry over), and the outcome, promoted or not, is recorded.

A promotion writes its intent (`.champion.pending.json`: the pointer and the history row) first, then Drive's
pointer (when Drive is configured), then the local `champion.json` in one rename, then the history row. Whatever
interrupts that (an error, a kill) leaves the intent, and the next promote finishes it before deciding, so Drive
and the local pointer always end up naming the same champion; the log and the records say what was repaired.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import catalog, champion
from etl.comparison import compare
from etl.publishers import remote_publishers
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import PublishError
from utils.files import read_json, write_json_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "promote"
PENDING = ".champion.pending.json"  # in RESULTS_DIR: a promotion decided and not yet written everywhere
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
    """The pointer naming this run's published model, after checking that the published copy is the one recorded;
    the pointer in place when it already names this model (a retried promotion writes the same bytes)."""
    name = read_json(run.require(catalog.UPLOAD_INFO))["name"]
    digest = manifest["files"][catalog.MODEL]
    champion.verified_file(settings.results_dir, name, catalog.MODEL, "rerun upload before promoting", digest,
                           f"run {run.run_id}'s manifest")
    current = champion.read_pointer(settings.results_dir)
    if current is not None and (current["name"], current["model_sha256"]) == (name, digest):
        return current
    return {"name": name, "run_id": run.run_id, "model_sha256": digest,
            "promoted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "operating_threshold": comparison["challenger"]["operating_threshold"], "metric": comparison["metric"],
            "metrics": manifest["metrics"]}


def champion_name(comparison: dict[str, Any]) -> str | None:
    """The name of the champion a comparison was made against (None: there was none)."""
    return (comparison["champion"] or {}).get("name")


def compared_again(run: RunFolder, comparison: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """A new comparison with the champion in place, when another run promoted it after this run's compare (None
    when compare's still stands: the same champion, this run itself, or none at all)."""
    current = champion.read_pointer(settings.results_dir)
    if current is None or current["name"] in (champion_name(comparison), comparison["challenger"]["name"]):
        return None
    log.warning("the champion changed during run %s: compare saw %s, now it is %s; comparing again with it",
                run.run_id, champion_name(comparison) or "none", current["name"])
    return compare(run, settings)


def after_champion_change(before: dict[str, Any], now: dict[str, Any], approval: dict[str, Any] | None,
                          promoted: bool, reason: str) -> tuple[bool, str]:
    """The verdict on the comparison made again with the new champion, its reason saying what changed: an
    approval, given against the earlier champion, does not promote over another one."""
    earlier, current = champion_name(before) or "none", champion_name(now)
    changed = f"the champion changed during the run ({current}; compare saw {earlier}): compared again with it"
    if promoted and approval is not None:
        return False, (f"{changed}: {reason}, but the review was against {earlier}: not promoted without a review "
                       f"against {current} (a new run asks for one)")
    return promoted, f"{changed}: {reason}"


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
            **difference_cells(comparison), "promoted": str(promoted).lower(), "reason": reason,
            **{name: manifest["metrics"][name] for name in catalog.HEADLINE_METRICS},
            **champion.interval_cells(manifest["metrics"])}


def difference_cells(comparison: dict[str, Any]) -> dict[str, Any]:
    """The paired difference's history cells (empty without a comparison: the first run, too few rows)."""
    difference = comparison.get("difference") or {}
    return {"difference": difference.get("difference"), "difference_lower": difference.get("lower"),
            "difference_upper": difference.get("upper"), "margin": comparison["margin"]}


def series(comparison: dict[str, Any], promoted: bool, pointer: dict[str, Any] | None) -> list[Sample]:
    """Challenger and (after the decision) champion scores on the compared rows, whether it was promoted, and
    when the champion in place (`pointer`, after the decision) was promoted: what ties Prometheus to champion.json."""
    challenger, incumbent = comparison["challenger"]["metrics"], (comparison["champion"] or {}).get("metrics", {})
    kept = challenger if promoted else incumbent
    since = [Sample("champion_promoted_timestamp_seconds", datetime.fromisoformat(pointer["promoted_at"]).timestamp(),
                    help="Unix time at which the champion in place was promoted (champion.json's promoted_at).")
             ] if pointer and isinstance(pointer.get("promoted_at"), str) else []
    return ([Sample("challenger_metric", value, {"metric": name}, "Last challenger's test metric on the rows "
                    "compared with the champion.") for name, value in challenger.items()]
            + [Sample("champion_metric", value, {"metric": name}, "The champion's test metric on the last "
                      "compared rows (after the last promotion decision).") for name, value in kept.items()]
            + [Sample("promoted", float(promoted), help="1 when the last run's model became the champion.")]
            + since)


def pending_path(results_dir: Path) -> Path:
    """Where a promotion keeps its intent until every pointer and the history hold it."""
    return results_dir / PENDING


def install(pointer: dict[str, Any], row: dict[str, Any], settings: Settings) -> None:
    """Make `pointer` the champion everywhere and record `row`: the intent first, then the remote pointers, the
    local one and the history; the intent goes last, so whatever interrupts this, the next promote finishes."""
    intent = write_json_atomic(pending_path(settings.results_dir), {"pointer": pointer, "history_row": row})
    publish_remote_pointers(pointer, settings)
    try:
        champion.write_pointer(settings.results_dir, pointer)
        champion.record_in_history(settings.results_dir, row)
    except OSError as exc:
        raise PublishError(f"promoting run {pointer['run_id']}: writing {champion.POINTER} or {champion.HISTORY} in "
                           f"{settings.results_dir} failed ({exc}) after every remote pointer was written; the "
                           f"promotion is kept in {intent} and the next promote (a retry, or the next run) finishes "
                           "it") from None
    intent.unlink()


def finish_interrupted(run: RunFolder, settings: Settings) -> str:
    """Finish the promotion whose intent an error or a kill left (its pointers, Drive's and the local one, may
    name different champions); what was repaired, in words for the log and the records ("" when nothing)."""
    results_dir = settings.results_dir
    for stale in results_dir.glob(f".{PENDING}.*.tmp"):  # a kill while the intent was written: never decided
        stale.unlink(missing_ok=True)
    path = pending_path(results_dir)
    if not path.is_file():
        return ""
    intent = read_json(path)
    pointer, row = intent["pointer"], intent["history_row"]
    champion.verified_file(results_dir, pointer["name"], catalog.MODEL,
                           f"restore it, or remove {path} to abandon that promotion", pointer["model_sha256"],
                           str(path))
    local = champion.read_pointer(results_dir)
    if local == pointer:
        install(pointer, row, settings)  # only the history row or the removal of the intent was missing
        return ""
    repaired = (f"finished the interrupted promotion of run {pointer['run_id']}: the local {champion.POINTER} "
                f"named {local['name'] if local else 'no champion'}; it and every remote pointer now name "
                f"{pointer['name']}")
    finished = f"{row['reason']}; finished after an interruption by run {run.run_id}'s promote"
    install(pointer, {**row, "reason": finished}, settings)
    log.warning("%s", repaired)
    return repaired


def earlier_promotion(run: RunFolder, settings: Settings) -> dict[str, str] | None:
    """The history row of this run's finished promotion while the pointer still names it (a retried promote
    then changes nothing), else None."""
    pointer = champion.read_pointer(settings.results_dir)
    if pointer is None or pointer["name"] != run.published_name():
        return None
    return next((row for row in champion.read_history(settings.results_dir)
                 if row["name"] == pointer["name"] and row["promoted"] == "true"), None)


def decide(run: RunFolder, compared: dict[str, Any], manifest: dict[str, Any], approval: dict[str, Any] | None,
           settings: Settings, repaired: str) -> tuple[dict[str, Any], bool, str]:
    """Under the champion lock: the comparison the decision rests on, whether the run is promoted and why, with
    the pointers and the history written accordingly."""
    comparison = compared_again(run, compared, settings) or compared
    promoted, reason = verdict(comparison, approval, settings)
    if comparison is not compared:
        promoted, reason = after_champion_change(compared, comparison, approval, promoted, reason)
    reason = f"{reason}; before deciding, {repaired}" if repaired else reason
    row = history_row(run, comparison, manifest, promoted, reason)
    if promoted:
        install(new_pointer(run, comparison, manifest, settings), row, settings)
        log.info("run %s is the champion: %s", run.run_id, reason)
    else:
        champion.record_in_history(settings.results_dir, row)
        log.info("run %s is not promoted: %s", run.run_id, reason)
    return comparison, promoted, reason


def run(run: RunFolder, settings: Settings, approval: dict[str, Any] | None = None) -> StepResult:
    """Promote or keep, against the champion in place (compared again when it changed since compare), after
    finishing an interrupted promotion; record the run in the history either way. `approval`: the reviewer's answer
    (`approved`, `by`, `reason`), None when the DAG asks nobody."""
    compared = read_json(run.file(catalog.COMPARISON))
    manifest = read_json(run.file(catalog.MANIFEST))
    with champion.held(settings.results_dir):
        champion.remove_leftovers(settings.results_dir)
        repaired = finish_interrupted(run, settings)
        earlier = earlier_promotion(run, settings)
        if earlier is None:
            comparison, promoted, reason = decide(run, compared, manifest, approval, settings, repaired)
            against = champion_name(comparison)
        else:
            comparison, promoted, reason, against = compared, True, earlier["reason"], earlier["champion"] or None
            log.info("run %s is already the champion (a retried promote changes nothing): %s", run.run_id, reason)
        pointer = champion.read_pointer(settings.results_dir)
    name = run.published_name() if promoted else against
    return StepResult(record={"promoted": promoted, "reason": reason, "champion": name, "approval": approval,
                              "compared_with": against, "compared_again": against != champion_name(compared),
                              "repaired": repaired},
                      summary={"promoted": promoted, "reason": reason, "champion": name},
                      samples=series(comparison, promoted, pointer))

