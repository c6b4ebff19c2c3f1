"""`make standalone` and its companions through the users' own doors: the real `airflow standalone` (scheduler,
DAG processor, API server) on a free port, its @once run, a run triggered with Params, the task list, and a stop
that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from etl.steps import DAG_ID, STEPS
from tests.support.data import BUNDLED_CSV
from tests.support.servers import free_port
from utils.config import PROJECT_ROOT

pytestmark = pytest.mark.slow
RUN_TIMEOUT_SECONDS = 240


def make(target: str, home: Path, port: int, env: dict[str, str], *variables: str) -> subprocess.CompletedProcess:
    """`make <target>` for the standalone Airflow in `home`, listening on `port`."""
    return subprocess.run(["make", "--no-print-directory", target, f"AIRFLOW_HOME_DIR={home}",
                           f"AIRFLOW__API__PORT={port}", *variables], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def runs(home: Path, port: int, env: dict[str, str]) -> list[dict]:
    """The DAG's runs as `make standalone-dag-runs` lists them (JSON output)."""
    listed = make("standalone-dag-runs", home, port, env, "ARGS=--output json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (listing,) = [line for line in listed.stdout.splitlines() if line.startswith(("[{", "[]"))]
    return json.loads(listing)


def wait_for_runs(home: Path, port: int, env: dict[str, str], count: int) -> list[dict]:
    """The runs, once `count` of them have finished."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        finished = [run for run in runs(home, port, env) if run["state"] in ("success", "failed")]
        if len(finished) >= count:
            return finished
        time.sleep(3)
    raise AssertionError(f"{count} run(s) did not finish within {RUN_TIMEOUT_SECONDS} s")


def test_standalone_runs_the_dag_takes_a_triggered_run_and_stops_cleanly(tmp_path):
    home, port = tmp_path / "airflow", free_port()
    env = {**os.environ, "ENV_FILE": str(tmp_path / "none.env"), "RUNS_DIR": str(tmp_path / "runs"),
           "RESULTS_DIR": str(tmp_path / "results"), "STORAGE_BACKEND": "local", "DATA_URL": BUNDLED_CSV.as_uri()}
    assert make("airflow-db", home, port, env).returncode == 0
    started = make("standalone", home, port, env)
    pid = int((home / "standalone.pid").read_text()) if (home / "standalone.pid").is_file() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"Airflow is up: http://127.0.0.1:{port}" in started.stdout and "Login: admin / " in started.stdout
        again = make("standalone", home, port, env)
        assert again.returncode != 0 and f"already running (pid {pid})" in again.stdout
        (scheduled,) = wait_for_runs(home, port, env, 1)
        assert scheduled["state"] == "success"

        triggered = make("standalone-dag-start", home, port, env, 'CONF={"candidates": ["random_forest"]}')
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        assert {run["state"] for run in wait_for_runs(home, port, env, 2)} == {"success"}
        models = {json.loads(path.read_text())["model"] for path in (tmp_path / "runs").glob("*/metrics.json")}
        assert models == {"logreg", "random_forest"}

        tasks = make("standalone-dag-task-list", home, port, env)
        assert {step.name for step in STEPS} <= set(tasks.stdout.split()), tasks.stdout
        assert DAG_ID in make("-n", home, port, env, "standalone-dag-start").stdout
    finally:
        stopped = make("standalone-stop", home, port, env)
        leftover = pid and subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
        if leftover and leftover.stdout.strip():
            os.killpg(pid, signal.SIGKILL)
    assert pid and leftover
    assert stopped.returncode == 0 and "Airflow stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert leftover.stdout.strip() == "", "processes of the standalone group are still running"
    assert not (home / "standalone.pid").exists()
