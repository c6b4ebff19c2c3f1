"""The scoring DAG under the real scheduler (`make standalone`): the training DAG's published champion triggers it,
a batch announced through the REST API (`make standalone-announce-batch`) triggers it, a bad batch fails alone and
stays in the incoming folder with its report, and a new champion rescores the processed batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from etl import catalog, scoring
from etl.assets import SCORING_DAG_ID
from etl.steps import DAG_ID
from tests.integration.test_standalone import make
from tests.support.airflow_api import AirflowApi
from tests.support.processes import wait_until
from tests.support.scoring import batch, pipeline_env, write_batch
from tests.support.servers import free_port
from utils.files import read_json

pytestmark = pytest.mark.slow
RUN_TIMEOUT_SECONDS = 300
PASSWORDS = "simple_auth_manager_passwords.json.generated"


def finished_runs(api: AirflowApi, dag_id: str, count: int) -> list[dict]:
    """The DAG's runs, oldest first, once `count` of them have finished (none still running)."""
    def ready() -> list[dict] | None:
        runs = api.runs(dag_id)
        done = [run for run in runs if run["state"] in ("success", "failed")]
        return runs if len(done) >= count and len(done) == len(runs) else None

    return wait_until(ready, RUN_TIMEOUT_SECONDS, f"{count} finished run(s) of {dag_id}", interval=3.0)


def test_assets_trigger_scoring_a_bad_batch_fails_alone_and_a_new_champion_rescores(tmp_path: Path):
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

        # A good and a bad batch, announced through the REST API: the good one is published, the bad one stays.
        write_batch(incoming, "clinic_a", batch(120, seed=21))
        (incoming / "clinic_b.csv").write_text("Id,Cl.thickness,Cell.size\n1,5,x\n")
        announced = make("standalone-announce-batch", home, port, env, "NOTE=clinic_a and clinic_b")
        assert announced.returncode == 0 and "announced x-breast-cancer://incoming" in announced.stdout, (
            announced.stdout + announced.stderr)
        second = finished_runs(api, SCORING_DAG_ID, 2)[-1]
        assert (second["state"], second["run_type"]) == ("failed", "asset_triggered")
        assert api.task_states(SCORING_DAG_ID, second["dag_run_id"]) == {
            "start": "success", "score_batches": "failed", "success_end": "upstream_failed",
            "failure_end": "success"}
        summary = read_json(scored / "clinic_a" / catalog.SCORING_SUMMARY)
        assert summary["rows"] == 120 and summary["model"]["run_id"] == trained["dag_run_id"]
        assert (scored / "clinic_a" / catalog.PREDICTIONS).is_file() and (processed / "clinic_a.csv").is_file()
        assert (incoming / "clinic_b.csv").is_file() and not (processed / "clinic_b.csv").exists()
        assert "missing column(s)" in read_json(incoming / "clinic_b.error.json")["error"]

        # A new champion (a second training run) triggers a rescore of the processed batch; the unchanged bad
        # batch waits for a fix without failing the run again.
        retrained = api.trigger(DAG_ID, {"candidates": ["random_forest"], "promotion_tolerance": 1.0})  # promoted
        # whatever its score: only a promotion emits the champion Asset
        assert api.wait_for_run(DAG_ID, retrained, RUN_TIMEOUT_SECONDS)["state"] == "success"
        third = finished_runs(api, SCORING_DAG_ID, 3)[-1]
        assert third["state"] == "success"
        assert read_json(scored / "clinic_a" / catalog.SCORING_SUMMARY)["model"]["run_id"] == retrained
        assert (incoming / "clinic_b.csv").is_file()
    finally:
        make("standalone-stop", home, port, env)
        leftover = pid and subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
        if leftover and leftover.stdout.strip():
            os.killpg(pid, signal.SIGKILL)
