"""The scoring DAG under the real scheduler and triggerer (`make standalone`): the training DAG's published champion
triggers it, a batch handed off into the incoming folder triggers it by itself (the incoming Asset's watcher: one
event per batch, however long it waits), a bad batch fails alone and stays in the incoming folder with its report,
an event announced through the REST API (`make standalone-announce-batch`) still starts a run, and a new champion
rescores the processed batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from etl import catalog, scoring
from etl.assets import INCOMING_URI, SCORING_DAG_ID
from etl.steps import DAG_ID
from tests.integration.test_standalone import make
from tests.support.airflow_api import AirflowApi
from tests.support.processes import wait_until
from tests.support.scoring import batch, hand_off_batch, pipeline_env
from tests.support.servers import free_port
from utils.files import read_json

pytestmark = pytest.mark.slow
RUN_TIMEOUT_SECONDS = 300
PASSWORDS = "simple_auth_manager_passwords.json.generated"
WAITING_SECONDS = 60  # the bad batch waits at least this long in the watched folder before the events are counted


def finished_runs(api: AirflowApi, dag_id: str, count: int) -> list[dict]:
    """The DAG's runs, oldest first, once `count` of them have finished (none still running)."""
    def ready() -> list[dict] | None:
        runs = api.runs(dag_id)
        done = [run for run in runs if run["state"] in ("success", "failed")]
        return runs if len(done) >= count and len(done) == len(runs) else None

    return wait_until(ready, RUN_TIMEOUT_SECONDS, f"{count} finished run(s) of {dag_id}", interval=3.0)


def incoming_events(api: AirflowApi) -> list[dict]:
    """The incoming Asset's events, oldest first: GET /api/v2/assets/events?asset_id=..."""
    (asset,) = [asset for asset in api.call(f"/api/v2/assets?{urllib.parse.urlencode({'uri_pattern': INCOMING_URI})}")
                ["assets"] if asset["uri"] == INCOMING_URI]
    return api.call(f"/api/v2/assets/events?asset_id={asset['id']}&order_by=timestamp&limit=100")["asset_events"]


def test_assets_and_hand_offs_trigger_scoring_a_bad_batch_fails_alone_and_a_new_champion_rescores(tmp_path: Path,
                                                                                                     capsys):
    home, port = tmp_path / "airflow", free_port()
    env = {**pipeline_env(tmp_path), "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1"}
    incoming, processed = Path(env["INCOMING_DIR"]), Path(env["PROCESSED_DIR"])
    scored = Path(env["RESULTS_DIR"]) / scoring.SCORING_RESULTS
    assert make("airflow-db", home, port, env).returncode == 0
    started = make("standalone", home, port, env)
    pid = int((home / "standalone.pid").read_text()) if (home / "standalone.pid").is_file() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        ((user, password),) = json.loads((home / PASSWORDS).read_text()).items()
        api = AirflowApi(f"http://127.0.0.1:{port}", user, password)

        # The training DAG's @once run publishes a model: its champion Asset starts a scoring run (nothing waits).
        (trained,) = finished_runs(api, DAG_ID, 1)
        assert trained["state"] == "success"
        (first,) = finished_runs(api, SCORING_DAG_ID, 1)
        assert (first["state"], first["run_type"]) == ("success", "asset_triggered")

        # A batch handed off (`.part`, then renamed), announced by nobody: the watcher's event starts a run that
        # publishes it.
        handed_off = time.monotonic()
        hand_off_batch(incoming, "clinic_a", batch(120, seed=21))
        second = finished_runs(api, SCORING_DAG_ID, 2)[-1]
        with capsys.disabled():
            print(f"\n[watcher] clinic_a handed off -> its scoring run finished: {time.monotonic() - handed_off:.0f} s")
        assert (second["state"], second["run_type"]) == ("success", "asset_triggered")
        summary = read_json(scored / "clinic_a" / catalog.SCORING_SUMMARY)
        assert summary["rows"] == 120 and summary["model"]["run_id"] == trained["dag_run_id"]
        assert (scored / "clinic_a" / catalog.PREDICTIONS).is_file() and (processed / "clinic_a.csv").is_file()

        # A bad batch handed off: its run fails; the batch stays with its report.
        hand_off_batch(incoming, "clinic_b", b"Id,Cl.thickness,Cell.size\n1,5,x\n")
        bad_since = time.monotonic()
        third = finished_runs(api, SCORING_DAG_ID, 3)[-1]
        assert (third["state"], third["run_type"]) == ("failed", "asset_triggered")
        assert api.task_states(SCORING_DAG_ID, third["dag_run_id"]) == {
            "start": "success", "score_batches": "failed", "success_end": "upstream_failed",
            "failure_end": "success"}
        assert (incoming / "clinic_b.csv").is_file() and not (processed / "clinic_b.csv").exists()
        assert "missing column(s)" in read_json(incoming / "clinic_b.error.json")["error"]

        # An event posted through the REST API, as scripts do, starts a run too; the unchanged bad batch waits for
        # a fix without failing it.
        announced = make("standalone-announce-batch", home, port, env, "NOTE=scripted")
        assert announced.returncode == 0 and "announced x-breast-cancer://incoming" in announced.stdout, (
            announced.stdout + announced.stderr)
        assert finished_runs(api, SCORING_DAG_ID, 4)[-1]["state"] == "success"

        # A new champion (a second training run) triggers a rescore of the processed batch; the bad batch still
        # waits.
        retrained = api.trigger(DAG_ID, {"candidates": ["random_forest"], "promotion_tolerance": 1.0})  # promoted
        # whatever its score: only a promotion emits the champion Asset
        assert api.wait_for_run(DAG_ID, retrained, RUN_TIMEOUT_SECONDS)["state"] == "success"
        assert finished_runs(api, SCORING_DAG_ID, 5)[-1]["state"] == "success"
        assert read_json(scored / "clinic_a" / catalog.SCORING_SUMMARY)["model"]["run_id"] == retrained
        assert (incoming / "clinic_b.csv").is_file()

        # One event per batch handed off, however long it waited in the folder, and the announced one.
        time.sleep(max(0.0, WAITING_SECONDS - (time.monotonic() - bad_since)))
        events = incoming_events(api)
        with capsys.disabled():
            print(f"[watcher] clinic_b waited {time.monotonic() - bad_since:.0f} s: {len(events)} incoming events")
        assert [event["extra"] for event in events] == [
            {"from_trigger": True, "payload": {"batches": ["clinic_a.csv"], "count": 1}},
            {"from_trigger": True, "payload": {"batches": ["clinic_b.csv"], "count": 1}},
            {"from_rest_api": True, "note": "scripted"}]
    finally:
        make("standalone-stop", home, port, env)
        leftover = pid and subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
        if leftover and leftover.stdout.strip():
            os.killpg(pid, signal.SIGKILL)
