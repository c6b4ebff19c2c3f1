"""A person approves before a new champion goes out (APPROVAL_REQUIRED), under the real `airflow standalone`
(scheduler, DAG processor, API server, triggerer): the reviewer answers in Airflow's UI, in headless Chromium
(tests/support/browser.py), and the test follows the runs through the REST API:

1. the @once run waits in `approve`; its Required Actions tab shows the review (the metrics, the threshold,
   compare's decision, the report, where the run was published); Approve clicked → promoted, the pointer names the
   run;
2. a triggered run is rejected in the UI → `promote` skipped, the run succeeds, the pointer is unchanged, the
   history says who rejected it;
3. a triggered run nobody answers → after APPROVAL_TIMEOUT the default (Reject) applies: not promoted, "approval
   timed out".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.parse

import pytest

from etl import catalog, champion
from etl.airflow_tasks import APPROVAL_TASK, APPROVE, REJECT
from etl.run_folder import safe_run_id
from etl.steps import DAG_ID
from tests.integration.test_standalone import make
from tests.support.airflow_api import AirflowApi
from tests.support.browser import answer_approval, chromium, open_approval, ui_login
from tests.support.data import BUNDLED_CSV
from tests.support.processes import Processes, StackError, wait_until
from tests.support.servers import free_port
from utils.files import read_json

pytestmark = pytest.mark.slow
APPROVAL_TIMEOUT_MINUTES = "1.5"
WAIT_SECONDS = 300


def hitl_path(api: AirflowApi, run_id: str) -> str:
    """The REST path of the run's approval request (map index -1: the task is not mapped)."""
    return f"{api.run_path(DAG_ID, run_id)}/taskInstances/{urllib.parse.quote(APPROVAL_TASK)}/-1/hitlDetails"


def waiting_request(api: AirflowApi, run_id: str) -> dict:
    """The approval request once the task waits for an answer (open_approval then waits REVIEW_SECONDS more
    before the reviewer may answer: Airflow 3.3 loses an answer given within about a second of the pause)."""
    def asked() -> dict | None:
        try:
            return api.call(hitl_path(api, run_id))
        except StackError:  # 404 until the task has written its request
            return None

    request = wait_until(asked, WAIT_SECONDS, f"the approval request of run {run_id}", interval=2.0)
    wait_until(lambda: api.task_states(DAG_ID, run_id).get(APPROVAL_TASK) == "awaiting_input", WAIT_SECONDS,
               f"run {run_id}'s approval to await input", interval=1.0)
    return request


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
        assert request["options"] == [APPROVE, REJECT] and request["defaults"] == [REJECT]
        assert request["response_received"] is False
        threshold = read_json(tmp_path / "runs" / safe_run_id(first) / catalog.METRICS)["operating_threshold"]
        browser = Processes(tmp_path / "browser")
        try:
            with chromium(browser, tmp_path / "profile") as driver:
                ui_login(driver, api.base_url, user, password)
                review = open_approval(driver, api.base_url, DAG_ID, first)
                for shown in (f"Make run {first} the champion?", "roc_auc", f"operating threshold {threshold:g}",
                              "promote: first champion", "report.md", "Published to: ", str(results)):
                    assert shown in review, f"{shown!r} not in what the reviewer sees:\n{review}"
                assert api.task_states(DAG_ID, first).get("promote") in (None, "none")  # waits for the answer
                assert answer_approval(driver, APPROVE).endswith(f" from {user}")
                answered = api.call(hitl_path(api, first))
                assert answered["chosen_options"] == [APPROVE] and answered["responded_by_user"]["name"] == user
                assert api.wait_for_run(DAG_ID, first, WAIT_SECONDS)["state"] == "success"
                assert api.task_states(DAG_ID, first)["promote"] == "success"
                pointer = champion.pointer_path(results).read_bytes()
                assert json.loads(pointer)["run_id"] == first

                rejected = api.trigger(DAG_ID)
                assert "Published to: " in open_approval(driver, api.base_url, DAG_ID, rejected)
                assert answer_approval(driver, REJECT).endswith(f" from {user}")
        finally:
            browser.stop_all()
        assert not browser.kill_strays(), "chromedriver or chromium outlived quit()"
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
