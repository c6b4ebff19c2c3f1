"""The champion: the published model in use, named by one pointer `RESULTS_DIR/champion.json`, and the history of
every run, promoted or not, failed ones too (`RESULTS_DIR/history.csv`, one row per run id).

The pointer is `{"name": "<stamp>_<run id>", "run_id", "model_sha256", "promoted_at", "operating_threshold",
"metric", "metrics"}`; the model is `RESULTS_DIR/<name>/model.joblib`, whose sha256 is also in that folder's
manifest. Both files are rewritten whole and renamed into place, so a reader (or a kill) only ever sees the old or
the new version.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import catalog
from etl.run_folder import PUBLISHED_NAME, RunFolder
from utils.config import Settings
from utils.errors import ArtifactError, UnsafeFileError, excerpt
from utils.files import (
    kind_of,
    load_model,
    read_json,
    read_regular,
    sha256_bytes,
    spreadsheet_cell,
    write_json_atomic,
    write_text_atomic,
)
from utils.logger import get_logger

POINTER = catalog.CHAMPION
HISTORY = "history.csv"
HISTORY_COLUMNS = ("run_id", "name", "recorded_at", "data_sha256", "model", "operating_threshold", "metric",
                   "challenger_score", "champion", "champion_score", "rows_compared", "difference", "difference_lower",
                   "difference_upper", "margin", "promoted", "reason", *catalog.HEADLINE_METRICS,
                   *(f"{name}_{bound}" for name in catalog.HEADLINE_INTERVALS for bound in ("lower", "upper")))
LOCK = ".champion.lock"
FAILURE_CHARS = 300  # of a failed run's error in the history; the whole error is in the task log and the alert
LOWER_IS_BETTER = frozenset({"brier_score"})
log = get_logger("champion")


@contextlib.contextmanager
def held(results_dir: Path) -> Iterator[None]:
    """Hold the pointer and the history for one promotion (runs of other run ids may promote at the same time
    from the command line): a blocking `flock`, dropped by the kernel even when the holder is killed."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / LOCK, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pointer_path(results_dir: Path) -> Path:
    """Where the local champion pointer lives."""
    return results_dir / POINTER


def read_pointer(results_dir: Path) -> dict[str, Any] | None:
    """The champion pointer, or None before the first promotion; ArtifactError when it lacks what names the
    model."""
    path = pointer_path(results_dir)
    if not path.is_file():
        return None
    pointer = read_json(path)
    missing = [key for key in ("name", "run_id", "model_sha256") if not isinstance(pointer.get(key), str)]
    if missing:
        raise ArtifactError(f"{path}: expected the keys name, run_id and model_sha256 (strings); "
                            f"missing or not text: {', '.join(missing)}")
    return pointer


def write_pointer(results_dir: Path, pointer: dict[str, Any]) -> Path:
    """Replace the local pointer in one rename."""
    return write_json_atomic(pointer_path(results_dir), pointer)


def published_folder(results_dir: Path, name: Any, named_by: str) -> Path:
    """`RESULTS_DIR/<name>` when `name` (read from `named_by`: a setting, a pointer, a record) is a published run's
    folder name and that folder is a real directory directly inside RESULTS_DIR: no `..`, no path, no link out.
    Models are loaded only from such folders (joblib runs code)."""
    if not isinstance(name, str) or not PUBLISHED_NAME.fullmatch(name):
        raise ArtifactError(f"{named_by} names the run {excerpt(str(name))!r}: expected a published run's folder "
                            "name directly inside RESULTS_DIR (YYYYMMDD_HHMMSS_<run id>, letters, digits, '.', '_' "
                            "and '-' only)")
    folder = results_dir / name
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        raise ArtifactError(f"{folder} (named by {named_by}) does not exist: no such published run") from None
    if not stat.S_ISDIR(mode):
        raise UnsafeFileError(f"{folder} (named by {named_by}) is {kind_of(mode)}, not a published run's folder; "
                              "a model is loaded only from a folder inside RESULTS_DIR")
    return folder


def published_bytes(results_dir: Path, run_name: str, name: str, remedy: str, pinned: str | None = None,
                    pinned_by: str = "") -> tuple[bytes, str, Path, Path]:
    """The bytes of the file `name` of the published run `run_name` (its folder checked by `published_folder`), the
    sha256 its manifest records (which must be `pinned`, when given: the sha256 that `pinned_by`, a pointer or a
    record, names), its path and the manifest's path. Both files are read as regular files, never through a link.
    Errors end with `remedy`."""
    folder = published_folder(results_dir, run_name, pinned_by or "its record")
    path, manifest_path = folder / name, folder / catalog.MANIFEST
    recorded = read_json(manifest_path).get("files", {}).get(name)
    try:
        content = read_regular(path)
    except FileNotFoundError:
        content = None
    if recorded is None or content is None:
        raise ArtifactError(f"{path}: the published run {folder.name} has no {name} in its folder and its manifest "
                            f"({manifest_path}); {remedy}")
    if pinned is not None and pinned != recorded:
        raise ArtifactError(f"{pinned_by} pins {name} sha256 {pinned[:12]}…, but {manifest_path} records "
                            f"{recorded[:12]}…: it names another file; {remedy}")
    return content, recorded, path, manifest_path


def verified_content(results_dir: Path, run_name: str, name: str, remedy: str, pinned: str | None = None,
                     pinned_by: str = "") -> bytes:
    """The bytes `published_bytes` read, once their sha256 matched the manifest's: the bytes checked are the bytes
    returned, so a published file that changed, or is not the one named, is never read."""
    content, recorded, path, manifest_path = published_bytes(results_dir, run_name, name, remedy, pinned, pinned_by)
    actual = sha256_bytes(content)
    if actual != recorded:
        raise ArtifactError(f"{path} has sha256 {actual[:12]}…, but {manifest_path} records {recorded[:12]}…: it "
                            f"changed after publication; {remedy}")
    return content


def published_model(results_dir: Path, run_name: str, remedy: str, pinned: str | None = None,
                    pinned_by: str = "") -> tuple[Any, str]:
    """The model of the published run `run_name` and its sha256, loaded by utils.files.load_model against the
    digest its manifest records (and `pinned`)."""
    content, recorded, path, manifest_path = published_bytes(results_dir, run_name, catalog.MODEL, remedy, pinned,
                                                             pinned_by)
    return load_model(content, recorded, path, str(manifest_path), "publication", remedy), recorded


def verified_file(results_dir: Path, run_name: str, name: str, remedy: str, pinned: str | None = None,
                  pinned_by: str = "") -> Path:
    """The path of the file `name` of the published run `run_name`, once `verified_content` accepted it."""
    verified_content(results_dir, run_name, name, remedy, pinned, pinned_by)
    return results_dir / run_name / name


def champion_remedy(results_dir: Path) -> str:
    """What to do about a champion whose published files are not what its pointer and manifest record."""
    return f"restore it, or remove {pointer_path(results_dir)} so that the next run becomes the champion"


def published_content(results_dir: Path, pointer: dict[str, Any], name: str) -> bytes:
    """A file (not the model: `champion_model`) of the champion's published folder, checked against its manifest:
    a champion that changed on disk, or lies outside RESULTS_DIR, is never read."""
    return verified_content(results_dir, pointer["name"], name, champion_remedy(results_dir),
                            pinned_by=str(pointer_path(results_dir)))


def champion_model(results_dir: Path, pointer: dict[str, Any]) -> Any:
    """The champion's model, checked against the pointer's pin and its manifest before it is loaded."""
    return published_model(results_dir, pointer["name"], champion_remedy(results_dir), pointer["model_sha256"],
                           str(pointer_path(results_dir)))[0]


def remove_leftovers(results_dir: Path) -> None:
    """Remove the temporaries a killed writer of the pointer or the history left (they were never renamed)."""
    for name in (POINTER, HISTORY):
        for stale in results_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def read_history(results_dir: Path) -> list[dict[str, str]]:
    """The history's rows, oldest first ([] before the first run)."""
    path = results_dir / HISTORY
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def record_in_history(results_dir: Path, row: dict[str, Any]) -> Path:
    """Add the run's row, or replace the row of the same run id (a retried promotion), rewriting the file whole;
    a cell a spreadsheet would run as a formula (a run id `=1+1`) is written as text (`spreadsheet_cell`)."""
    cells = {column: spreadsheet_cell("" if row.get(column) is None else str(row[column]))
             for column in HISTORY_COLUMNS}
    rows = [old for old in read_history(results_dir) if old["run_id"] != cells["run_id"]]
    rows.append(cells)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(results_dir / HISTORY, text.getvalue())


def history_markdown(rows: list[dict[str, Any]]) -> str:
    """The history as a Markdown table for reports."""
    if not rows:
        return "No earlier run reached the promotion."
    columns = ("name", "model", "metric", "challenger_score", "champion", "champion_score", "promoted", "reason")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")).replace("|", "\\|") for column in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def cell(value: Any) -> str:
    """A history value for a table: scores to four decimals, anything else as written."""
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


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
            **{name: metrics[name] for name in catalog.HEADLINE_METRICS if name in metrics}, **interval_cells(metrics)}


def interval_cells(metrics: dict[str, Any]) -> dict[str, Any]:
    """The 95% bounds of the headline test figures (HEADLINE_INTERVALS) as history cells, from metrics.json."""
    intervals = metrics.get("intervals", {})
    return {f"{name}_{bound}": intervals[name][bound] for name in catalog.HEADLINE_INTERVALS if name in intervals
            for bound in ("lower", "upper")}


def record_failed_run(run: RunFolder, settings: Settings, failed_at: str, error: str) -> None:
    """Add the failed run to the history (the pointer is not touched); a later successful try of the same run
    replaces the row."""
    with held(settings.results_dir):
        remove_leftovers(settings.results_dir)
        record_in_history(settings.results_dir, failed_run_row(run, failed_at, error))
    log.info("run %s is recorded in the history as failed at %s", run.run_id, failed_at)
