"""The Docker Compose stack for real: a Docker engine, stand-in images built locally, and the project's own make
targets (`make up`, `make dag-start`, ..., `make clean`) run by a non-root user in a copy of the project. Each
test is one proof against the running containers, in order (docs/stack-test.md). `make stack-test` runs it."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.publishers.gdrive.client import FOLDER_MIME, folder_url
from etl.run_folder import short_run_id
from etl.steps import STEPS
from tests.support.airflow_api import AirflowApi, http_json
from tests.support.browser import chromium, graph_nodes, open_plugin_page, open_run, open_run_tab, ui_login
from tests.support.docker_stack import (
    BAD_CSV,
    DAG_ID,
    RUN_SECONDS,
    USER_UID,
    HostServer,
    Stack,
    docker,
    finished,
    running_stack,
    stack_api,
    triggered_run,
)
from tests.support.drive_fake import FakeDrive
from tests.support.monitoring_tools import prometheus_query
from tests.support.processes import Processes, wait_until
from utils.config import PROJECT_ROOT
from utils.files import file_digest

pytestmark = pytest.mark.stack

TASKS = {"start", "candidates", *(step.name for step in STEPS), "success_end", "failure_end"}
SCREENSHOTS = PROJECT_ROOT / "results" / "ui-screenshots"  # docs/img/airflow-*.png are copies
EXPECTED_SERVICES = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                     "airflow-triggerer", "statsd-exporter", "pushgateway", "prometheus"}


@pytest.fixture(scope="module")
def stack(stand_ins: dict[str, str], settings: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    """The default profile (LocalExecutor), up from fresh volumes for this module."""
    with running_stack(settings, log_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowApi:
    return stack_api(stack)


def latest_metrics(stack: Stack) -> dict:
    """metrics.json of the last published run, as it is on the host."""
    return json.loads((stack.root / "results" / "latest" / "metrics.json").read_text(encoding="utf-8"))


def owners(folder: Path) -> set[int]:
    """The owning uids of `folder`'s files and folders."""
    return {path.lstat().st_uid for path in folder.rglob("*")}


# --- the proofs, in order --------------------------------------------------------------------------------------

def test_every_service_but_grafana_is_healthy_and_init_exited_0(stack: Stack) -> None:
    containers = stack.containers()
    assert set(containers) == EXPECTED_SERVICES, "Grafana is left out of the test; every other service runs"
    init = containers.pop("airflow-init")
    assert (init["State"], init["ExitCode"]) == ("exited", 0), init
    assert {service: facts["Health"] for service, facts in containers.items()} == dict.fromkeys(containers, "healthy")


def test_a_second_up_changes_nothing(stack: Stack) -> None:
    before = stack.containers()
    stack.make("up")
    after = stack.containers()
    assert {service: facts["ID"] for service, facts in after.items()} == {
        service: facts["ID"] for service, facts in before.items()}, "a container was recreated"
    # Compose starts the one-shot airflow-init again (it exits 0 again, idempotent); no other service restarts.
    init_before, init_after = before.pop("airflow-init"), after.pop("airflow-init")
    assert (init_after["State"], init_after["ExitCode"]) == ("exited", 0), init_after
    assert init_after["StartedAt"] > init_before["StartedAt"]
    assert after == before


def test_the_once_run_starts_by_itself_and_publishes_files_owned_by_the_user(stack: Stack, api: AirflowApi) -> None:
    def scheduled_run() -> dict | None:
        return next((run for run in api.runs(DAG_ID) if run["run_type"] == "scheduled"), None)

    run = finished(api, wait_until(scheduled_run, 180, "the @once run to start by itself", interval=2)["dag_run_id"])
    assert run["state"] == "success", run
    assert run["tasks"] == {**dict.fromkeys(TASKS - {"failure_end"}, "success"), "failure_end": "skipped"}
    published = stack.root / "results" / "latest"
    assert (published / "metrics.json").is_file() and (published / "model.joblib").is_file()
    assert owners(stack.root / "results") == owners(stack.root / "data" / "runs") == {USER_UID}


def test_a_run_triggered_over_the_rest_api_with_params_succeeds(stack: Stack, api: AirflowApi) -> None:
    run = triggered_run(api, {"candidates": ["random_forest"]})
    assert run["state"] == "success", run
    assert latest_metrics(stack)["model"] == "random_forest"


def test_a_run_asking_for_drive_publishes_to_the_drive_fake_with_the_key_in_the_read_only_secrets_mount(
        stack: Stack, api: AirflowApi, drive: FakeDrive, drive_folder: str) -> None:
    key = drive.write_service_account_key(stack.root / "secrets" / "drive_sa.json")
    os.chown(key, USER_UID, USER_UID)  # as the user who put it there
    touched = stack.make("bash", "ARGS=-c 'touch /opt/airflow/secrets/drive_sa.json 2>&1; true'")
    assert "Read-only file system" in touched

    run = triggered_run(api, {"storage_backend": "gdrive"})
    assert run["state"] == "success", run
    [folder] = [item for item in drive.files_in(drive_folder) if item.mime_type == FOLDER_MIME]  # + champion.json
    assert folder.name.endswith(f"_{short_run_id(run['dag_run_id'])}"), folder.name
    local = stack.root / "results" / folder.name
    assert {item.name: item.md5 for item in drive.files_in(folder.id)} == {
        path.name: file_digest(path, "md5") for path in local.iterdir()}
    upload_log = api.task_log(DAG_ID, run["dag_run_id"], "upload")
    assert f"to gdrive: {folder_url(folder.id)}" in upload_log
    assert json.loads(key.read_text(encoding="utf-8"))["private_key"].splitlines()[1] not in upload_log


def test_prometheus_scrapes_the_stack_and_holds_the_last_runs_model_metrics(stack: Stack) -> None:
    prometheus = f"http://127.0.0.1:{stack.settings['PROMETHEUS_PORT']}"
    metrics = latest_metrics(stack)

    def scraped() -> dict[str, float]:
        samples = prometheus_query(prometheus, 'pipeline_model_metric{job="breast_cancer_pipeline"}')
        found = {sample["metric"]["metric"]: float(sample["value"][1]) for sample in samples}
        return found if found and found == pytest.approx({name: metrics.get(name) for name in found}) else {}

    wait_until(scraped, 90, "Prometheus to scrape the last run's pipeline_model_metric from the Pushgateway",
               interval=2)
    up = {sample["metric"]["job"]: sample["value"][1] for sample in prometheus_query(prometheus, "up")}
    assert up == {"prometheus": "1", "airflow": "1", "pushgateway": "1"}  # "airflow": the exporter's placeholder
    groups = http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert groups and all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_a_run_on_bad_data_fails_at_preprocess_and_alerts_the_webhook_once(api: AirflowApi,
                                                                            host_server: HostServer) -> None:
    run = triggered_run(api, {"data_url": host_server.url(f"/{BAD_CSV.name}")})
    assert run["state"] == "failed"
    assert {task: run["tasks"][task] for task in ("load", "preprocess", "success_end", "failure_end")} == {
        "load": "success", "preprocess": "failed", "success_end": "upstream_failed", "failure_end": "success"}
    assert len(host_server.alerts) == 1, host_server.alerts
    assert "preprocess" in json.dumps(host_server.alerts[0]["body"])


def test_the_ui_shows_the_dag_and_a_good_and_a_failed_run_in_a_browser(api: AirflowApi, log_dir: Path,
                                                                       tmp_path: Path) -> None:
    """Headless Debian Chromium against the real api-server port: login, a good run's page and graph, a failed
    run's graph, with screenshots (git-ignored; docs/img/airflow-*.png are copied from them)."""
    runs = api.runs(DAG_ID)
    good = next(run for run in runs if run["state"] == "success")
    bad = next(run for run in runs if run["state"] == "failed")
    processes = Processes(log_dir)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with chromium(processes, tmp_path / "profile") as driver:
            ui_login(driver, api.base_url, api.username, api.password)
            good_tasks = api.task_states(DAG_ID, good["dag_run_id"])
            text = open_run(driver, api.base_url, DAG_ID, good["dag_run_id"], (good["dag_run_id"], *good_tasks))
            assert "Success" in text and "Failed" not in text
            driver.save_screenshot(str(SCREENSHOTS / "airflow-run.png"))
            nodes = graph_nodes(driver, len(good_tasks))
            assert {task: node.splitlines()[-1] for task, node in nodes.items()} == good_tasks
            driver.save_screenshot(str(SCREENSHOTS / "airflow-dag-graph.png"))
            bad_tasks = api.task_states(DAG_ID, bad["dag_run_id"])
            open_run(driver, api.base_url, DAG_ID, bad["dag_run_id"], (bad["dag_run_id"],))
            nodes = graph_nodes(driver, len(bad_tasks))
            assert {task: node.splitlines()[-1] for task, node in nodes.items()} == bad_tasks
            driver.save_screenshot(str(SCREENSHOTS / "airflow-failed-run-graph.png"))
    finally:
        processes.stop_all()
    assert not processes.kill_strays(), "chromedriver or chromium outlived quit()"  # and none is left behind


def test_the_model_report_tab_and_the_models_page_show_in_a_browser_and_not_without_a_login(
        api: AirflowApi, log_dir: Path, tmp_path: Path) -> None:
    """The model report plugin (plugins/model_reports.py) in the api-server container: a finished good run's Model
    report tab and the Models page in Chromium; over HTTP, no report without a valid login and a 404 for a
    crafted path."""
    good = wait_until(lambda: next((run for run in api.runs(DAG_ID) if run["state"] == "success"), None),
                      RUN_SECONDS, "a successful run of the DAG", interval=3.0)
    tab = f"{api.base_url}/model-reports/dags/{DAG_ID}/runs/{urllib.parse.quote(good['dag_run_id'], safe='')}"
    for url, headers, wanted in ((tab, {}, (401, 403)), (tab, {"Cookie": "_token=forged"}, (401, 403)),
                                 (f"{tab}%2F..%2F..%2Fhistory.csv", {"Authorization": f"Bearer {api.token()}"},
                                  (404,))):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        assert status in wanted and b"threshold" not in body and b"run_id," not in body, (url, status, body[:300])
    processes = Processes(log_dir)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with chromium(processes, tmp_path / "profile") as driver:
            ui_login(driver, api.base_url, api.username, api.password)
            open_run(driver, api.base_url, DAG_ID, good["dag_run_id"], (good["dag_run_id"], "Model report"))
            assert "Sensitivity" in open_run_tab(driver, "Model report", ("Summary", "Operating threshold"))
            driver.save_screenshot(str(SCREENSHOTS / "airflow-model-report.png"))
            assert "History of runs" in open_plugin_page(driver, api.base_url, "Models", ("Champion:",))
            driver.save_screenshot(str(SCREENSHOTS / "airflow-models-page.png"))
    finally:
        processes.stop_all()
    assert not processes.kill_strays(), "chromedriver or chromium outlived quit()"


# --- the make targets against the running stack ----------------------------------------------------------------

def test_make_ps_shows_every_service(stack: Stack) -> None:
    output = stack.make("ps")
    assert all(service in output for service in EXPECTED_SERVICES)


def test_make_logs_of_one_service_returns_with_its_last_lines(stack: Stack) -> None:
    assert "entrypoint: the stack is prepared" in stack.make("logs-airflow-init", "LOGS_FOLLOW=", timeout=60)


def test_make_dag_task_list_names_every_task(stack: Stack) -> None:
    listed = set(stack.make("dag-task-list").split())
    assert listed >= TASKS


def test_make_bash_and_python_run_in_the_airflow_image_as_the_user(stack: Stack) -> None:
    assert stack.make("bash", "ARGS=-c 'echo uid=$$(id -u)'").count(f"uid={USER_UID}") == 1
    assert "/opt/airflow/project/etl" in stack.make("python", "ARGS=-c 'import etl; print(etl.__path__[0])'")


def test_make_unpause_undoes_a_pause(stack: Stack, api: AirflowApi) -> None:
    stack.make("bash", f"ARGS=-c 'airflow dags pause {DAG_ID}'")
    assert api.call(f"/api/v2/dags/{DAG_ID}")["is_paused"] is True
    stack.make("unpause")
    assert api.call(f"/api/v2/dags/{DAG_ID}")["is_paused"] is False


def test_make_reload_parses_the_dags_again(stack: Stack, api: AirflowApi) -> None:
    before = api.call(f"/api/v2/dags/{DAG_ID}")["last_parsed_time"]
    stack.make("reload")
    assert api.call(f"/api/v2/dags/{DAG_ID}")["last_parsed_time"] > before


def test_make_dag_start_starts_a_run_that_succeeds(stack: Stack, api: AirflowApi) -> None:
    known = {run["dag_run_id"] for run in api.runs(DAG_ID)}
    stack.make("dag-start")
    new = [run for run in api.runs(DAG_ID) if run["dag_run_id"] not in known]
    assert len(new) == 1 and new[0]["run_type"] == "manual", new
    assert finished(api, new[0]["dag_run_id"])["state"] == "success"


# --- faults and restarts --------------------------------------------------------------------------------------

def test_a_scheduler_restarted_while_train_runs_still_ends_in_one_publication(stack: Stack, api: AirflowApi) -> None:
    scheduler = stack.containers()["airflow-scheduler"]
    run_id = api.trigger(DAG_ID, {})
    wait_until(lambda: api.task_states(DAG_ID, run_id).get("train") == "running", RUN_SECONDS,
               "the run's train task to be running", interval=0.5)
    docker("restart", str(scheduler["ID"]), timeout=120)
    run = finished(api, run_id)
    assert run["state"] == "success", run
    published = [path.name for path in (stack.root / "results").glob(f"*_{short_run_id(run_id)}")]
    assert len(published) == 1, published  # results/<start time>_<run id>, once


def test_a_crashed_api_server_comes_back_by_its_restart_policy(stack: Stack, api: AirflowApi) -> None:
    before = stack.containers()["airflow-apiserver"]
    os.kill(int(docker("inspect", "--format", "{{.State.Pid}}", str(before["ID"])).stdout), signal.SIGKILL)

    def back() -> bool:
        now = stack.containers()["airflow-apiserver"]
        return now["ID"] == before["ID"] and now["StartedAt"] > before["StartedAt"] and now["Health"] == "healthy"

    wait_until(back, 180, "the killed api-server to be restarted and healthy again", interval=2)
    assert api.call(f"/api/v2/dags/{DAG_ID}")["dag_id"] == DAG_ID


def test_make_down_then_up_keeps_the_volumes_the_run_history_and_the_login(stack: Stack, api: AirflowApi) -> None:
    history = {run["dag_run_id"]: run["state"] for run in api.runs(DAG_ID)}
    stack.make("down")
    remaining = stack.leftovers()
    assert set(remaining) == {"volume"} and len(remaining["volume"]) == 5, remaining  # database, logins, logs, metrics
    stack.make("up")
    relogged = AirflowApi(api.base_url, api.username, api.password)  # a new token from the kept login
    assert {run["dag_run_id"]: run["state"] for run in relogged.runs(DAG_ID)} == history


def test_make_clean_removes_every_container_network_and_volume(stack: Stack) -> None:
    stack.make("clean")
    assert stack.leftovers() == {}
