"""File helpers: per-run folders, atomic writes (temp file + rename) and sha256 checksums."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from utils.errors import ArtifactError, RunLockedError

_SAFE_RUN_ID = re.compile(r"[^A-Za-z0-9._-]")
RUN_INFO_FILE = "run.json"
LOCK_FILE = ".lock"
_held_locks: dict[Path, int] = {}  # run folder -> nesting depth of hold_run_folder in this process


def safe_run_id(run_id: str) -> str:
    """A folder name for `run_id`; ids with other characters (Airflow's `manual__…+00:00`) get a hash suffix
    so that two different ids never share a folder."""
    cleaned = _SAFE_RUN_ID.sub("_", run_id.strip())
    if cleaned == run_id and cleaned not in (".", ".."):
        return cleaned
    return f"{cleaned}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def run_dir(runs_dir: Path, run_id: str) -> Path:
    """The working folder of one run, created if missing."""
    path = runs_dir / safe_run_id(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def hold_run_folder(folder: Path, run_id: str, activity: str) -> Iterator[None]:
    """Hold the run's folder for this process while `activity` (a step, or a whole pipeline) runs.

    An exclusive `flock` on `<folder>/.lock`, taken without waiting: a second process that wants the same run
    gets RunLockedError naming the run and the holder, instead of mixing its files with the first one's. The
    kernel drops the lock when the holder exits, even when it is killed. Nested holds in one process (the
    in-process pipeline around each of its steps) share the outer lock.
    """
    key = folder.resolve()
    if key in _held_locks:
        _held_locks[key] += 1
        try:
            yield
        finally:
            _held_locks[key] -= 1
        return
    with open(folder / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(500).strip() or "a process that has not written its name yet"
            raise RunLockedError(f"run {run_id!r} is in use: its folder {folder} is held by {holder}; wait for "
                                 "that to finish, or use another RUN_ID") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, running {activity} since "
                     f"{datetime.now(UTC).replace(microsecond=0).isoformat()}\n")
        handle.flush()
        _held_locks[key] = 1
        try:
            yield
        finally:
            del _held_locks[key]
            handle.truncate(0)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed writer left in `folder` (call it while holding the folder)."""
    stale = sorted(folder.glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`, on error removed.

    Readers therefore see either the old file or the complete new one, never a half-written file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes 0600; artifacts are shared with other services and users
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def write_text_atomic(target: Path, text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: Path, payload: Any) -> Path:
    """Write `payload` as indented, key-sorted JSON to `target` atomically."""
    return write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON artifact, with an error naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: run the step that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks; `algorithm` as hashlib names it ("sha256", "md5", ...).

    Checksums here detect corruption, not attacks, hence `usedforsecurity=False` (md5 stays usable on FIPS hosts).
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file: the checksum the pipeline records for every artifact."""
    return file_digest(path, "sha256")


def require_file(path: Path, produced_by: str) -> Path:
    """Return `path` if it exists, else raise an error naming the step that should have written it."""
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: it is written by the '{produced_by}' step, run that first")
    return path


def verify_checksum(path: Path, expected_sha256: str) -> None:
    """Raise ArtifactError when the file's sha256 differs from the recorded one."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(f"{path} has sha256 {actual}, but {expected_sha256} was recorded: "
                            "the file changed after it was written; rerun the step that writes it")


def record_run_start(folder: Path, started_at: datetime) -> datetime:
    """Record when the run started (the `load` step does this); later steps and retries read it back."""
    started_at = started_at.astimezone(UTC)
    write_json_atomic(folder / RUN_INFO_FILE, {"started_at": started_at.isoformat()})
    return started_at


def run_started_at(folder: Path) -> datetime:
    """The start time recorded by `load` for the run in `folder`."""
    return datetime.fromisoformat(read_json(require_file(folder / RUN_INFO_FILE, "load"))["started_at"])


def run_stamp(started_at: datetime) -> str:
    """`YYYYMMDD_HHMMSS` in UTC: the name stem of a run's published folders."""
    return started_at.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
