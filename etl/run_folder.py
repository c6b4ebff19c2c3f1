"""One run's working folder `<RUNS_DIR>/<run id>/`: its files, its start time and published name, the lock that
keeps it to one process, and the checksum chain that ties its files together.

Every step's record (`<step>.json`) holds the sha256 of each file it consumed and produced. `verify_chain` walks
the records in step order and refuses a folder whose files no longer belong together: an input that is not what
its producer recorded, or an output that changed on disk.

A per-candidate step (train) works in `candidates/<name>/`, which has its own lock and record: the candidates of a
run are trained side by side, each holding the run's lock shared and its own folder's lock exclusively, while any
other step holds the run's lock exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import catalog
from etl.steps import STEP, STEPS, Step, produced_by
from utils.errors import ArtifactError, ConfigError, RunLockedError, excerpt
from utils.files import load_model, read_json, read_regular, require_file, sha256_file, write_json_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# What `RunFolder.published_name` makes: `<YYYYMMDD_HHMMSS>_<short run id>`, one name (never a path, never `..`)
# of at most 255 bytes; the only names a model is loaded from (etl/champion.py).
AIRFLOW_RUN_ID = re.compile(r"(?P<kind>[a-z_]{1,40}?)__\d{4}-\d\d-\d\dT[0-9:.+-]+")  # manual__, scheduled__, ...
SAFE_RUN_ID_CHARS = 200  # + the stamp and a hash suffix: a published name stays within PUBLISHED_NAME's 255
PUBLISHED_NAME = re.compile(r"\d{8}_\d{6}_[A-Za-z0-9._-]{1,239}")
_held: dict[Path, int] = {}  # locked folder -> nesting depth of its hold in this process


def short_run_id(run_id: str) -> str:
    """The run id as a published name shows it: Airflow's `<kind>__<time>` (`manual__2026-12-04T05:46:45.41+00:00`)
    as `<kind>-<hash>` (`manual-f5582beb`), the time being the name's stamp already and the hash of the whole id
    keeping two runs apart; any other id as `safe_run_id` makes it. The whole id stays in the manifest."""
    airflow_id = AIRFLOW_RUN_ID.fullmatch(run_id)
    if airflow_id:
        return f"{airflow_id['kind']}-{id_hash(run_id)}"
    return safe_run_id(run_id)


def id_hash(run_id: str) -> str:
    """Eight hex digits that tell run ids apart in a name."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def safe_run_id(run_id: str) -> str:
    """A folder name for `run_id`; ids with other characters (Airflow's `manual__…+00:00`) or longer than
    SAFE_RUN_ID_CHARS get a hash suffix so that two different ids never share a folder."""
    cleaned = _UNSAFE.sub("_", run_id.strip())
    if cleaned == run_id and cleaned not in (".", "..") and len(cleaned) <= SAFE_RUN_ID_CHARS:
        return cleaned
    return f"{cleaned[:SAFE_RUN_ID_CHARS]}-{id_hash(run_id)}"


@dataclass(frozen=True)
class RunFolder:
    """A run: its id, its folder, and (from Airflow) the moment it was due, which names what it publishes."""

    run_id: str
    path: Path
    declared_start: datetime | None = None

    @classmethod
    def open(cls, runs_dir: Path, run_id: str, declared_start: datetime | None = None) -> RunFolder:
        """The run `run_id` under `runs_dir`, its folder created if missing."""
        if not run_id.strip():
            raise ConfigError("the run id is empty: expected a name such as 'local' (--run-id or RUN_ID)")
        if not run_id.isprintable():
            raise ConfigError(f"the run id {excerpt(run_id)!r} has a control character (a line break, a tab): "
                              "expected one line of printable characters (--run-id or RUN_ID)")
        path = runs_dir / safe_run_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return cls(run_id, path, declared_start)

    def file(self, name: str) -> Path:
        """The path of the run's file `name` (a name from etl/catalog.py)."""
        return self.path / name

    def require(self, name: str) -> Path:
        """The run's file `name`; if it is missing, an error naming the step that writes it."""
        return require_file(self.file(name), produced_by(name))

    def candidate_folder(self, candidate: str) -> Path:
        """The folder of the candidate model `candidate`, created if missing."""
        folder = self.file(catalog.candidate_file(candidate, ""))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def trained_candidates(self) -> list[str]:
        """The candidates whose training left a record, by name."""
        return sorted(path.parent.name for path in self.path.glob(catalog.candidate_file("*", catalog.TRAIN_INFO)))

    @contextlib.contextmanager
    def hold(self, activity: str, candidate: str | None = None) -> Iterator[None]:
        """Hold the folder for this process while `activity` (a step, or a whole pipeline) runs; for a
        candidate's step, hold the run's folder shared (other candidates may train at the same time) and the
        candidate's folder exclusively.

        Each is a `flock` on the folder's lock file, taken without waiting: a second process that wants the same
        run (or candidate) gets RunLockedError naming the run and the holder instead of mixing its files with the
        first one's. The kernel drops the lock when the holder exits, even when it is killed. Nested holds in one
        process (the in-process pipeline around each of its steps) share the outer lock.
        """
        if candidate is None:
            with _lock(self.path, self.run_id, activity, exclusive=True):
                yield
            return
        with (_lock(self.path, self.run_id, activity, exclusive=False),
              _lock(self.candidate_folder(candidate), f"{self.run_id}, candidate {candidate}", activity,
                    exclusive=True)):
            yield

    def begin(self, step: Step, candidate: str | None = None) -> None:
        """Prepare the folder for `step` (for a per-candidate step: for `candidate`) while holding it: remove
        temporaries a killed writer left and the outputs of this step and every later one, so that neither a
        rerun nor a failure of `step` leaves downstream files from an earlier attempt; the first step records
        when the run started. Another candidate's files stay: it may be training now."""
        folder = self.candidate_folder(candidate) if step.per_candidate else self.path
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        failure = (catalog.candidate_file(candidate, catalog.CANDIDATE_FAILURE),) if step.per_candidate else ()
        for name in (*step.outputs(candidate), *failure):
            self.file(name).unlink(missing_ok=True)
        for later in STEPS[STEPS.index(step) + 1:]:
            if later.per_candidate:
                shutil.rmtree(self.file(catalog.CANDIDATES_DIR), ignore_errors=True)
            else:
                for name in later.produces:
                    self.file(name).unlink(missing_ok=True)
        if step is STEPS[0]:
            started = (self.declared_start or _now()).astimezone(UTC)
            write_json_atomic(self.file(catalog.RUN_INFO), {"run_id": self.run_id, "started_at": started.isoformat()})

    def started_at(self) -> datetime:
        """When the run started, as its first step recorded it."""
        return datetime.fromisoformat(read_json(self.require(catalog.RUN_INFO))["started_at"])

    def stamp(self) -> str:
        """`YYYYMMDD_HHMMSS` of the start in UTC."""
        return self.started_at().astimezone(UTC).strftime("%Y%m%d_%H%M%S")

    def published_name(self) -> str:
        """`<stamp>_<short run id>`: the name of the run's folder in results/ and on Drive, readable and unique per
        run even when two runs start in the same second."""
        return f"{self.stamp()}_{short_run_id(self.run_id)}"

    def write_record(self, step: Step, fields: dict[str, Any], candidate: str | None = None,
                     consumed: tuple[str, ...] = ()) -> None:
        """Write `step`'s record (for a per-candidate step: `candidate`'s): its `fields` and the sha256 of every
        file it consumed (the table's inputs and the run-time ones, `consumed`) and produced."""
        *outputs, record = step.outputs(candidate)
        write_json_atomic(self.file(record), {
            **fields, "inputs": {name: sha256_file(self.file(name)) for name in (*step.consumes, *consumed)},
            "outputs": {name: sha256_file(self.file(name)) for name in outputs}})

    def record(self, step_name: str, candidate: str | None = None) -> dict[str, Any]:
        """The record of the step `step_name` (of `candidate`, for a per-candidate step), as written (the runner
        has verified the chain up to it)."""
        return read_json(self.require(STEP[step_name].outputs(candidate)[-1]))

    def load_model(self, name: str) -> Any:
        """The model in the run's file `name`, loaded by utils.files.load_model against the sha256 that the step
        which wrote it recorded (train for a candidate's, select for the run's)."""
        candidate = name.split("/")[1] if name.startswith(f"{catalog.CANDIDATES_DIR}/") else None
        producer = produced_by(name)
        return load_model(read_regular(self.require(name)), self.record(producer, candidate)["outputs"][name],
                          self.file(name), f"{producer}'s record", "its step wrote it", f"rerun from {producer}")

    def write_candidate_failure(self, step: Step, candidate: str, error: BaseException) -> None:
        """Keep why `candidate`'s `step` failed in its folder, for the next step's record and the report."""
        write_json_atomic(self.file(catalog.candidate_file(candidate, catalog.CANDIDATE_FAILURE)),
                          {"step": step.name, "error_type": type(error).__name__, "error": str(error)})

    def candidate_failure(self, candidate: str) -> dict[str, Any] | None:
        """Why `candidate`'s training failed, if it did."""
        path = self.file(catalog.candidate_file(candidate, catalog.CANDIDATE_FAILURE))
        return read_json(path) if path.is_file() else None

    def verify_chain(self, before: Step | None = None) -> None:
        """Check the records of every step before `before` (None: of all steps): each recorded input is what its
        producer recorded as output, each recorded output still has its recorded sha256. ArtifactError names
        the file and the step to rerun."""
        produced: dict[str, str] = {}
        for step in STEPS[:STEPS.index(before) if before else None]:
            records = ([step.outputs(name)[-1] for name in self.trained_candidates()] if step.per_candidate
                       else [step.record])
            for record_name in records:
                self._verify_record(step, read_json(self.require(record_name)), produced)

    def _verify_record(self, step: Step, record: dict[str, Any], produced: dict[str, str]) -> None:
        """Check one record against what earlier records produced; add its outputs to `produced`."""
        for name, digest in record["inputs"].items():
            if produced.get(name) != digest:
                raise ArtifactError(f"{self.file(name)}: step {step.name} consumed a version (sha256 "
                                    f"{digest[:12]}…) that is not the one {produced_by(name)} recorded: the run's "
                                    "files do not belong together (a step was rerun, or another process wrote "
                                    f"this run); rerun from {produced_by(name)}")
        for name, digest in record["outputs"].items():
            actual = sha256_file(self.require(name))
            if actual != digest:
                raise ArtifactError(f"{self.file(name)} has sha256 {actual[:12]}…, but {step.name} recorded "
                                    f"{digest[:12]}… when it wrote it: the file changed afterwards; rerun from "
                                    f"{step.name}")
            produced[name] = digest


@contextlib.contextmanager
def _lock(folder: Path, what: str, activity: str, exclusive: bool) -> Iterator[None]:
    """Hold `folder`'s lock file (`what` names it in errors): exclusively, naming this process in the file, or
    shared, leaving the file to the exclusive holders. Nested holds in this process share the outer one."""
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with open(folder / catalog.LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(500).strip() or ("a process that has not written its name yet, or candidates "
                                                  "being trained (their folders' lock files name them)")
            raise RunLockedError(f"run {what!r} is in use: its folder {folder} is held by {holder}; wait for that "
                                 "to finish, or use another run id") from None
        if exclusive:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, running {activity} since "
                         f"{_now().isoformat()}\n")
            handle.flush()
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            if exclusive:
                handle.truncate(0)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
