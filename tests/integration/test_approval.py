"""A person approves before a new champion goes out (APPROVAL_REQUIRED), under the real `airflow standalone`
(scheduler, DAG processor, API server, triggerer) and through its REST API, as a reviewer's script would:

1. the @once run waits in `approve`; its request shows the metrics, the threshold and the report; Approve →
   promoted, the pointer names the run;
2. a triggered run is rejected → `promote` skipped, the run succeeds, the pointer is unchanged, the history says
   who rejected it;
3. a triggered run nobody answers → after APPROVAL_TIMEOUT the default (Reject) applies: not promoted, "approval
   timed out".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse

import pytest

from etl import catalog, champion
from etl.airflow_tasks import APPROVAL_TASK
from etl.run_folder import safe_run_id
from etl.steps import DAG_ID
from tests.integration.test_standalone import make
from tests.support.airflow_api import AirflowApi
from tests.support.data import BUNDLED_CSV
from tests.support.processes import StackError, wait_until
from tests.support.servers import free_port
from utils.files import read_json

pytestmark = pytest.mark.slow
APPROVAL_TIMEOUT_MINUTES = "1.5"
WAIT_SECONDS = 300
REVIEWER_SECONDS = 10  # between the request appearing and the answer


def hitl_path(api: AirflowApi, run_id: str) -> str:
    """The REST path of the run's approval request (map index -1: the task is not mapped)."""
    return f"{api.run_path(DAG_ID, run_id)}/taskInstances/{urllib.parse.quote(APPROVAL_TASK)}/-1/hitlDetails"


def waiting_request(api: AirflowApi, run_id: str) -> dict:
    """The approval request once the task waits for an answer."""
    def asked() -> dict | None:
        try:
            return api.call(hitl_path(api, run_id))
        except StackError:  # 404 until the task has written its request
            return None

    request = wait_until(asked, WAIT_SECONDS, f"the approval request of run {run_id}", interval=2.0)
    wait_until(lambda: api.task_states(DAG_ID, run_id).get(APPROVAL_TASK) == "awaiting_input", WAIT_SECONDS,
               f"run {run_id}'s approval to await input", interval=1.0)
    # An answer within a second of the pause loses a race in Airflow 3.3: the scheduler sees the paused process's
    # exit after the answer re-queued the task and marks it failed. A reviewer takes longer than that.
    time.sleep(REVIEWER_SECONDS)
    return request


def answer(api: AirflowApi, run_id: str, option: str) -> dict:
    """PATCH the reviewer's answer, as the UI's Required Actions page does."""
    return api.call(hitl_path(api, run_id), {"chosen_options": [option]}, method="PATCH")


def test_a_reviewer_approves_rejects_or_lets_the_approval_time_out(tmp_path):
    home, port = tmp_path / "airflow", free_port()
    results = tmp_path / "results"
    env = {**os.environ, "ENV_FILE": str(tmp_path / "none.env"), "RUNS_DIR": str(tmp_path / "runs"),
           "RESULTS_DIR": str(results), "STORAGE_BACKEND": "local", "DATA_URL": BUNDLED_CSV.as_uri(),
           "APPROVAL_REQUIRED": "true", "APPROVAL_TIMEOUT": APPROVAL_TIMEOUT_MINUTES}
    assert make("airflow-db", home, port, env).returncode == 0
    started = make("standalone", home, port, env)
    pid = int((home / "standalone.pid").read_text()) if (home / "standalone.pid").is_file() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        (login,) = [line for line in started.stdout.splitlines() if line.startswith("Login: ")]
        user, password = login.removeprefix("Login: ").split(" / ")
        api = AirflowApi(f"http://127.0.0.1:{port}", user, password)

        first = wait_until(lambda: api.runs(DAG_ID), WAIT_SECONDS, "the @once run")[0]["dag_run_id"]
        request = waiting_request(api, first)
        assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
        assert request["response_received"] is False
        threshold = read_json(tmp_path / "runs" / safe_run_id(first) / catalog.METRICS)["operating_threshold"]
        for shown in ("roc_auc", f"operating threshold {threshold:g}", "report.md", "first champion"):
            assert shown in request["body"], f"{shown!r} not in the reviewer's text:\n{request['body']}"
        assert api.task_states(DAG_ID, first).get("promote") in (None, "none")  # waits for the answer
        answered = answer(api, first, "Approve")
        assert answered["chosen_options"] == ["Approve"] and answered["responded_by"]["name"] == user
        assert api.wait_for_run(DAG_ID, first, WAIT_SECONDS)["state"] == "success"
        assert api.task_states(DAG_ID, first)["promote"] == "success"
        pointer = champion.pointer_path(results).read_bytes()
        assert json.loads(pointer)["run_id"] == first

        rejected = api.trigger(DAG_ID)
        waiting_request(api, rejected)
        answer(api, rejected, "Reject")
        assert api.wait_for_run(DAG_ID, rejected, WAIT_SECONDS)["state"] == "success"
        states = api.task_states(DAG_ID, rejected)
        assert (states[APPROVAL_TASK], states["promote"], states["success_end"]) == ("success", "skipped", "success")
        assert champion.pointer_path(results).read_bytes() == pointer

        timed_out = api.trigger(DAG_ID)
        waiting_request(api, timed_out)
        assert api.wait_for_run(DAG_ID, timed_out, WAIT_SECONDS)["state"] == "success"
        assert api.task_states(DAG_ID, timed_out)["promote"] == "skipped"
        assert champion.pointer_path(results).read_bytes() == pointer

        history = {row["run_id"]: row for row in champion.read_history(results)}
        assert list(history) == [first, rejected, timed_out]
        assert history[first]["promoted"] == "true" and history[first]["reason"].endswith(f"approved by {user}")
        assert history[rejected]["promoted"] == "false"
        assert history[rejected]["reason"].startswith(f"rejected by {user}")
        assert history[timed_out]["promoted"] == "false"
        assert history[timed_out]["reason"].startswith("approval timed out")
    finally:
        stopped = make("standalone-stop", home, port, env)
        leftover = pid and subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
        if leftover and leftover.stdout.strip():
            os.killpg(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
