"""Score the batches waiting in INCOMING_DIR with the champion, publish each one's predictions and summary, and
bring earlier batches up to date when the champion changed: what the scoring DAG runs.

The hand-off: a writer puts a batch into INCOMING_DIR under a name that does not end in `.csv` (`monday.csv.part`,
or a dot-name) and renames it to `<name>.csv` once it is complete. A rename is atomic, so a batch is seen whole or
not at all. `<name>` is a letter or digit, then at most 99 letters, digits, `.`, `_` or `-`.

Every entry of INCOMING_DIR whose name ends in `.csv` is a batch or is set aside: a symbolic link, a FIFO, a
device, a folder, a file with other hard links, or a name outside the rule is moved unread into
`INCOMING_DIR/rejected/`, with `<entry>.reason.json` beside it saying why; the other batches are scored all the
same. Names not ending in `.csv` (writers' `.part` files, the reports) are left alone.

A batch's life:
1. claimed: opened (never through a link, never blocking on a FIFO), locked with `flock` for as long as it is
   worked on, and renamed into `INCOMING_DIR/.claimed/<name>.csv~<token>`. Two scorers never take the same batch
   (the loser moves on); a claim whose lock is free was left by a scorer that died, and the next one takes it over.
2. scored from a snapshot of its bytes (their sha256 and row count go into summary.json); published whole to
   `RESULTS_DIR/scoring/<name>/`, then to Drive (`scoring_<name>`) when configured, unless the file changed while
   it was scored (written in place, not handed off): then nothing is published and it is set aside, whole.
3. the snapshot becomes `PROCESSED_DIR/<name>.csv`, so a processed file is exactly what was scored.
A bad batch (its data, or a name already processed) goes back to INCOMING_DIR with `<name>.error.json` beside it
saying why; it is not retried while its content stays the same. A transient error (Drive down) leaves the claim
for the retry. When the champion changed, every processed batch scored by an older model is scored again from
PROCESSED_DIR (each under its own lock) and republished in place.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from etl import catalog
from etl.predict import PublishedModel, load_published, score_file
from etl.publishers import LocalPublisher, RunBundle, remote_publishers
from utils.config import Settings, load_settings
from utils.errors import DataValidationError, PipelineError, UnsafeFileError, excerpt
from utils.files import (
    atomic_path,
    kind_of,
    read_json,
    regular_handle,
    sha256_file,
    write_json_atomic,
)
from utils.logger import configure_cli_logging, get_logger, run_command

BATCH_SUFFIX = ".csv"
BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a batch's name without BATCH_SUFFIX
CLAIMED = ".claimed"  # INCOMING_DIR's folder of batches being scored
CLAIM_MARK = "~"  # `<name>.csv~<token>`: never in a batch's name
REJECTED = "rejected"  # INCOMING_DIR's folder of entries that are not batches, each with its reason
REASON_SUFFIX = ".reason.json"
REPORT_SUFFIX = ".error.json"  # beside a bad batch in INCOMING_DIR: why it was not scored
SCORING_RESULTS = "scoring"  # RESULTS_DIR's folder of scored batches, one folder each
DRIVE_PREFIX = "scoring_"  # a scored batch's folder in GDRIVE_FOLDER_ID
log = get_logger("scoring")


def shown(name: str) -> str:
    """A file name as messages show it: a short excerpt, odd bytes escaped."""
    return repr(excerpt(name, 60))


def report_path(incoming: Path, name: str) -> Path:
    """Where the report of the bad batch `name` goes."""
    return incoming / f"{name}{REPORT_SUFFIX}"


def known_bad(path: Path) -> bool:
    """Whether `path` is a bad batch already reported, unchanged since (an unreadable report counts as none)."""
    report = report_path(path.parent, path.name.removesuffix(BATCH_SUFFIX))
    try:
        return read_json(report).get("sha256") == sha256_file(path)
    except (PipelineError, OSError, AttributeError):
        return False


def entry_problem(folder: Path, entry: str, name: str) -> str | None:
    """Why the entry `entry` of `folder`, claimed as the batch `name`, cannot be a batch (None when it can, or
    when it is gone), from its name and `lstat`: nothing of it is opened or read."""
    if not BATCH_NAME.fullmatch(name):
        return ("its name is not a batch name: expected <name>.csv, <name> a letter or digit then at most 99 "
                "letters, digits, '.', '_' or '-'")
    try:
        info = os.lstat(folder / entry)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"it is {kind_of(info.st_mode)}, not a regular file: a batch is a file of its own in the folder"
    if info.st_nlink > 1:
        return f"it has {info.st_nlink} hard links: a batch is a file of its own, not a link to another file"
    return None


def set_aside(folder: Path, entry: str, incoming: Path, reason: str) -> Path:
    """Move the entry `entry` of `folder` (unread: a link moves as a link) into INCOMING_DIR/rejected/ under a
    unique, readable name, with its reason beside it; returns where it went."""
    rejected = incoming / REJECTED
    rejected.mkdir(parents=True, exist_ok=True)
    original = entry.partition(CLAIM_MARK)[0] if folder.name == CLAIMED else entry  # a claim: the batch's file name
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", original)[:120]
    target = rejected / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{secrets.token_hex(4)}_{readable}"
    os.rename(folder / entry, target)
    write_json_atomic(target.with_name(target.name + REASON_SUFFIX), {
        "entry": excerpt(entry, 300), "reason": reason, "set_aside_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "what_next": "nothing of it was read or scored; hand a batch over as a regular file renamed to <name>.csv"})
    log.error("%s set aside in %s: %s", shown(entry), rejected, reason)
    return target


@dataclass
class Claim:
    """A batch this scorer owns: its name, where its claim is, and the open, locked handle that makes it ours
    (the kernel drops the lock when the scorer dies, which frees the claim for the next one)."""

    name: str
    path: Path
    handle: BinaryIO

    def stamp(self) -> tuple[int, int]:
        """The file's size and modification time now: a writer still writing changes them."""
        info = os.fstat(self.handle.fileno())
        return info.st_size, info.st_mtime_ns

    def release(self) -> None:
        """Close the handle, which drops the lock."""
        self.handle.close()


def claim(folder: Path, entry: str, incoming: Path) -> Claim | None:
    """Take the batch `entry` of `folder` (INCOMING_DIR, or its claims): open it, lock it without waiting, rename
    it to a claim of our own and check that the renamed file is the one locked. None when another scorer has it
    or it is gone; UnsafeFileError when it is not a regular file."""
    name = batch_name(entry, folder != incoming)
    try:
        handle = regular_handle(folder / entry)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        target = incoming / CLAIMED / f"{name}{BATCH_SUFFIX}{CLAIM_MARK}{os.getpid()}-{secrets.token_hex(6)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder / entry, target)
    except (BlockingIOError, FileNotFoundError):
        handle.close()
        return None
    locked, renamed = os.fstat(handle.fileno()), os.lstat(target)
    if (locked.st_dev, locked.st_ino) != (renamed.st_dev, renamed.st_ino):  # replaced between open and rename
        os.rename(target, folder / entry)
        handle.close()
        return None
    return Claim(name, target, handle)


def batch_name(entry: str, claimed: bool) -> str:
    """The batch name in an entry of INCOMING_DIR (`<name>.csv`) or of its claims (`<name>.csv~<token>`)."""
    return (entry.partition(CLAIM_MARK)[0] if claimed else entry).removesuffix(BATCH_SUFFIX)


def pending_entries(incoming: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str, str]], list[str]]:
    """What to take, in order (the claims left by scorers that died, then new batches by name; each as folder and
    entry), the entries that cannot be batches (folder, entry, why), and the reported bad batches unchanged."""
    claimed_dir = incoming / CLAIMED
    left = sorted(entry.name for entry in os.scandir(claimed_dir)) if claimed_dir.is_dir() else []
    new = sorted(entry.name for entry in os.scandir(incoming) if entry.name.endswith(BATCH_SUFFIX))
    listed = [(claimed_dir, entry, batch_name(entry, True)) for entry in left] + [
        (incoming, entry, batch_name(entry, False)) for entry in new]
    unfit = [(folder, entry, problem) for folder, entry, name in listed
             if (problem := entry_problem(folder, entry, name))]
    unfit_entries = {(folder, entry) for folder, entry, _ in unfit}
    fit = [(folder, entry) for folder, entry, _ in listed if (folder, entry) not in unfit_entries]
    waiting = [entry for folder, entry in fit if folder == incoming and known_bad(incoming / entry)]
    return [(folder, entry) for folder, entry in fit if entry not in waiting or folder != incoming], unfit, waiting


def publish_batch(name: str, folder: Path, settings: Settings) -> dict[str, str]:
    """Publish the scored batch's files in `folder` locally, then to every remote backend; where they went."""
    files = tuple(folder / file for file in (catalog.PREDICTIONS, catalog.SCORING_SUMMARY))
    checksums = {path.name: sha256_file(path) for path in files}
    local = LocalPublisher(settings.results_dir / SCORING_RESULTS)
    results = [local.publish(RunBundle(f"batch {name}", name, files, checksums))]
    results += [publisher.publish(RunBundle(f"batch {name}", f"{DRIVE_PREFIX}{name}", files, checksums))
                for publisher in remote_publishers(settings)]
    return {result.backend: result.location for result in results}


class BatchChangedError(DataValidationError):
    """The batch changed while it was scored: it was written in place, not handed off by a rename."""


def score_batch(source: Path, name: str, published: PublishedModel, settings: Settings,
                before_publishing: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Score the batch file `source` as `name` and publish it (once `before_publishing` did not raise); returns
    its summary, which records the sha256 of what was scored."""
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=settings.runs_dir) as staging:
        folder = Path(staging)
        summary = score_file(source, folder / catalog.PREDICTIONS, published, settings)
        summary = {**summary, "batch": name, "input": str(settings.processed_dir / f"{name}{BATCH_SUFFIX}"),
                   "input_sha256": sha256_file(source),
                   "output": str(settings.results_dir / SCORING_RESULTS / name / catalog.PREDICTIONS)}
        write_json_atomic(folder / catalog.SCORING_SUMMARY, summary)
        before_publishing()
        summary["destinations"] = publish_batch(name, folder, settings)
    return summary


def unchanged_since(claimed: Claim, before: tuple[int, int]) -> Callable[[], None]:
    """A check that raises BatchChangedError when the claimed file's size or time moved since `before`."""
    def check() -> None:
        if claimed.stamp() != before:
            raise BatchChangedError(f"batch {claimed.name!r} changed while it was scored (it was written in place, "
                                    "not handed off): nothing was published; write it as <name>.csv.part and "
                                    "rename it to <name>.csv when it is complete")
    return check


def take_in(claimed: Claim, published: PublishedModel, settings: Settings) -> dict[str, Any]:
    """Score a snapshot of the claimed batch, publish it if the file did not change meanwhile, and keep the snapshot
    as `PROCESSED_DIR/<name>.csv`: the processed file is exactly what was scored. Bytes that arrive after the
    publication are not lost: the whole file is set aside with the reason."""
    processed = settings.processed_dir / f"{claimed.name}{BATCH_SUFFIX}"
    if processed.exists():
        raise DataValidationError(f"a batch named {claimed.name!r} was already scored ({processed}); give the file a "
                                  "new name to score it as a new batch")
    with tempfile.TemporaryDirectory(prefix=f".{claimed.name}.", dir=settings.runs_dir) as staging:
        snapshot = Path(staging) / f"{claimed.name}{BATCH_SUFFIX}"
        before = claimed.stamp()
        claimed.handle.seek(0)
        with open(snapshot, "wb") as copy:
            shutil.copyfileobj(claimed.handle, copy)
        summary = score_batch(snapshot, claimed.name, published, settings, unchanged_since(claimed, before))
        with atomic_path(processed) as temporary:
            shutil.copyfile(snapshot, temporary)
    if claimed.stamp() != before:
        set_aside(claimed.path.parent, claimed.path.name, settings.incoming_dir,
                  f"bytes were written after its snapshot was scored and published ({processed} holds the "
                  f"{summary['rows']} rows scored); this is the whole file: hand the rest over as a new batch")
    else:
        claimed.path.unlink()
    report_path(settings.incoming_dir, claimed.name).unlink(missing_ok=True)
    return summary


def reject(claimed: Claim, incoming: Path, error: PipelineError) -> Path:
    """Put a bad batch back into INCOMING_DIR with its report beside it (set it aside instead when a new file of
    the same name arrived meanwhile); returns the report."""
    report = write_json_atomic(report_path(incoming, claimed.name), {
        "batch": claimed.name, "sha256": sha256_file(claimed.path), "error_type": type(error).__name__,
        "error": str(error), "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what_next": "hand the fixed file off again under the same name (write <name>.csv.part, rename it to "
                     "<name>.csv): the watcher starts its scoring; until it changes it is not scored again"})
    back = incoming / f"{claimed.name}{BATCH_SUFFIX}"
    if back.exists() or back.is_symlink():
        set_aside(claimed.path.parent, claimed.path.name, incoming, f"{error} (a new {back.name} arrived meanwhile)")
    else:
        os.rename(claimed.path, back)
    return report


def is_stale(path: Path, settings: Settings, published: PublishedModel) -> bool:
    """Whether the processed batch `path` has no published predictions of the champion's model."""
    summary = settings.results_dir / SCORING_RESULTS / path.stem / catalog.SCORING_SUMMARY
    return not summary.is_file() or read_json(summary)["model"]["model_sha256"] != published.sha256


def rescore_stale(settings: Settings, published: PublishedModel, failed: list[str]) -> list[dict[str, Any]]:
    """Score again every processed batch whose predictions come from another model than the champion's, each under
    its lock (another scorer rescoring it: skipped); an entry that is not a regular file goes to `failed`."""
    rescored = []
    for path in sorted(settings.processed_dir.glob(f"*{BATCH_SUFFIX}")):
        if not is_stale(path, settings, published):
            continue
        try:
            handle = regular_handle(path)
        except FileNotFoundError:
            continue
        except UnsafeFileError as exc:
            failed.append(str(exc))
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if is_stale(path, settings, published):
                rescored.append(brief(score_batch(path, path.stem, published, settings)))
    return rescored


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The few facts of a batch summary for XCom and logs."""
    drift = summary["drift"]
    return {"batch": summary["batch"], "rows": summary["rows"], "predicted_malignant": summary["predicted_malignant"],
            "max_psi": drift.get("max_psi"), "drifted": drift.get("drifted")}


def take_each(entries: list[tuple[Path, str]], published: PublishedModel, settings: Settings,
              failed: list[str]) -> list[dict[str, Any]]:
    """Claim and score each entry in turn; one that is not a batch is set aside and a bad one reported (both go to
    `failed`), and the others are scored all the same. A transient error ends the call, leaving its claim."""
    incoming, scored = settings.incoming_dir, []
    for folder, entry in entries:
        try:
            claimed = claim(folder, entry, incoming)
        except UnsafeFileError as exc:
            failed.append(f"{shown(entry)}: set aside in {set_aside(folder, entry, incoming, str(exc))}: {exc}")
            continue
        if claimed is None:
            continue  # another scorer has it
        try:
            scored.append(brief(take_in(claimed, published, settings)))
        except BatchChangedError as exc:
            aside = set_aside(claimed.path.parent, claimed.path.name, incoming, str(exc))
            failed.append(f"{shown(entry)}: set aside in {aside}: {exc}")
        except PipelineError as exc:
            if exc.transient:
                raise  # the claim stays: the retry takes it first
            failed.append(f"{claimed.name}{BATCH_SUFFIX}: {exc} (report: {reject(claimed, incoming, exc)})")
            log.error("batch %s rejected: %s", claimed.name, exc)
        finally:
            claimed.release()
    return scored


def score_pending(settings: Settings) -> dict[str, Any]:
    """Score every pending batch, then rescore the stale ones; entries that are not batches are set aside and bad
    batches reported, and after the others are done they fail the call together (DataValidationError naming
    each and where its reason is)."""
    published = load_published(settings)
    incoming = settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    entries, unfit, waiting = pending_entries(incoming)
    failed = [f"{shown(entry)}: set aside in {set_aside(folder, entry, incoming, reason)}: {reason}"
              for folder, entry, reason in unfit]
    scored = take_each(entries, published, settings, failed)
    rescored = rescore_stale(settings, published, failed)
    outcome = {"model": published.describe(), "scored": scored, "rescored": rescored, "failed": len(failed),
               "waiting_for_a_fix": waiting}
    log.info("scoring: %d batch(es) scored, %d rescored, %d rejected or set aside, %d unchanged bad one(s) waiting",
             len(scored), len(rescored), len(failed), len(waiting))
    if failed:
        raise DataValidationError(f"{len(failed)} batch(es) rejected or set aside in {incoming}:\n  "
                                  + "\n  ".join(failed))
    return outcome


def main(argv: list[str] | None = None) -> int:
    """`python -m etl.scoring` (`make score`): score what waits in INCOMING_DIR once, as the scoring DAG does, and
    print the outcome as JSON; one error line and exit status 1 when something failed (after the rest was done)."""
    parser = argparse.ArgumentParser(prog="python -m etl.scoring", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def work() -> dict[str, Any]:
        settings = load_settings()
        configure_cli_logging(settings.log_level)
        return score_pending(settings)

    return run_command(log, work)

if __name__ == "__main__":
    sys.exit(main())
