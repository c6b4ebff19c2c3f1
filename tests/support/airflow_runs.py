"""Running the real Airflow from tests: a migrated SQLite home, `airflow dags test` in a subprocess with the same
Airflow settings as `make run` (mk/airflow.env), and the outcome read back from the metadata database."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from dotenv import dotenv_values

from etl.run_folder import safe_run_id, short_run_id
from etl.steps import DAG_ID
from etl.steps import STEPS as STEP_TABLE
from tests.support.data import BUNDLED_CSV
from utils.config import CANDIDATE_NAMES, PROJECT_ROOT

STEPS = tuple(step.name for step in STEP_TABLE)  # the task ids of the pipeline's steps, in order


def step_instances(candidates: tuple[str, ...] = CANDIDATE_NAMES) -> tuple[str, ...]:
    """The task instances of the steps as `finish` names them: a per-candidate step's as `train[<candidate>]`."""
    return tuple(name for step in STEP_TABLE
                 for name in ([f"{step.name}[{candidate}]" for candidate in candidates] if step.per_candidate
                              else [step.name]))


# The task states of a good run: every step (each candidate) succeeded, the failure path was skipped.
SUCCESSFUL_RUN = {"start": "success", "candidates": "success", **dict.fromkeys(step_instances(), "success"),
                  "success_end": "success", "failure_end": "skipped"}
# One Fernet key for every Airflow home of the test session: the homes cloned from one migrated database
# (clone_home) must read what another process encrypted there (the watcher triggers' arguments).
SESSION_FERNET_KEY = Fernet.generate_key().decode()
DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILE = DAGS_FOLDER / f"{DAG_ID}.py"
AIRFLOW_ENV_FILE = PROJECT_ROOT / "mk" / "airflow.env"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = VENV_BIN / "airflow"
TEST_RETRY_DELAY_SECONDS = "1"  # Airflow's first retry waits this long, doubling after (see the DAG's STEPS)
AIRFLOW_TIMEOUT_SECONDS = 300
def env_file_values(path: Path) -> dict[str, str]:
    """The KEY=VALUE assignments of a `.env`-style file (as docker compose and pydantic-settings read it)."""
    return {key: value or "" for key, value in dotenv_values(path).items()}


def base_environment(home: Path) -> dict[str, str]:
    """A clean environment for an Airflow process (nothing from the developer's shell or `.env`): only the
    Airflow settings of mk/airflow.env, this home and the DAGs folder (the project is installed in the venv)."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ENV_FILE": str(home / "absent.env"),
        **env_file_values(AIRFLOW_ENV_FILE),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__FERNET_KEY": SESSION_FERNET_KEY,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": TEST_RETRY_DELAY_SECONDS,
    }


def migrate(home: Path) -> Path:
    """Create the SQLite metadata database in `home` (`airflow db migrate`)."""
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(AIRFLOW), "db", "migrate"], env=base_environment(home), capture_output=True,
                            text=True, timeout=AIRFLOW_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed in {home}:\n{result.stdout}\n{result.stderr}")
    return home


def clone_home(migrated: Path, home: Path) -> Path:
    """A second Airflow home with a copy of an already migrated database (cheaper than migrating again)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(migrated / "airflow.db", home / "airflow.db")
    return home


@dataclass(frozen=True)
class Folders:
    """Where an Airflow run's pipeline works and publishes, and its settings: bundled data, no download retries."""

    runs: Path
    results: Path

    def settings(self, **extra: str) -> dict[str, str]:
        """The pipeline's settings for an Airflow process, as environment variables."""
        return {"RUNS_DIR": str(self.runs), "RESULTS_DIR": str(self.results), "DATA_URL": BUNDLED_CSV.as_uri(),
                "STORAGE_BACKEND": "local", "DOWNLOAD_RETRIES": "0", **extra}

    def run_folder(self, outcome: DagRunOutcome) -> Path:
        return self.runs / safe_run_id(outcome.run_id)

    def published(self, outcome: DagRunOutcome) -> list[Path]:
        return sorted(self.results.glob(f"*_{short_run_id(outcome.run_id)}"))


def start_dags_test(home: Path, logical_date: datetime, settings: Mapping[str, str],
                    conf: Mapping[str, Any] | None = None) -> subprocess.Popen:
    """Start `airflow dags test` for one logical date; its output goes to `<home>/dags-test-<date>.log`."""
    command = [str(AIRFLOW), "dags", "test", DAG_ID, logical_date.isoformat()]
    if conf:
        command += ["--conf", json.dumps(dict(conf))]
    with open(log_path(home, logical_date), "w", encoding="utf-8") as log_file:  # the child keeps its own copy
        return subprocess.Popen(command, env={**base_environment(home), **settings}, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)


def log_path(home: Path, logical_date: datetime) -> Path:
    return home / f"dags-test-{logical_date:%Y%m%dT%H%M%S}.log"


@dataclass(frozen=True)
class DagRunOutcome:
    """One finished `airflow dags test`: its exit code and output, and what the metadata database recorded."""

    returncode: int
    output: str
    run_id: str
    state: str
    task_states: dict[str, str]  # by task id; a mapped instance as `<task id>[<its name in the grid>]`
    try_numbers: dict[str, int]
    xcom_values: dict[str, str]


def finish(process: subprocess.Popen, home: Path, logical_date: datetime) -> DagRunOutcome:
    """Wait for a started `dags test` and read its run back from `home`'s database."""
    returncode = process.wait(timeout=AIRFLOW_TIMEOUT_SECONDS)
    output = log_path(home, logical_date).read_text(encoding="utf-8")
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? AND logical_date = ?",
                         (DAG_ID, f"{logical_date:%Y-%m-%d %H:%M:%S.%f}")).fetchone()
        if row is None:
            raise AssertionError(f"no DAG run for {logical_date} in {home}; dags test said:\n{output[-3000:]}")
        run_id, state = row
        tasks = db.execute("SELECT task_id, map_index, rendered_map_index, state, try_number FROM task_instance "
                           "WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)).fetchall()
        names = {(task, index): task if index < 0 else f"{task}[{rendered or index}]"
                 for task, index, rendered, _, _ in tasks}
        xcoms = db.execute("SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND "
                           "key = 'return_value'", (DAG_ID, run_id)).fetchall()
    return DagRunOutcome(returncode, output, run_id, state,
                         {names[task, index]: task_state for task, index, _, task_state, _ in tasks},
                         {names[task, index]: tries for task, index, _, _, tries in tasks},
                         {names[task, index]: value for task, index, value in xcoms})


def dags_test(home: Path, logical_date: datetime, settings: Mapping[str, str],
              conf: Mapping[str, Any] | None = None) -> DagRunOutcome:
    """Run `airflow dags test` to the end."""
    return finish(start_dags_test(home, logical_date, settings, conf), home, logical_date)
