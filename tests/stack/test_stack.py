"""The Docker Compose stack for real: a Docker engine, stand-in images built locally, and the project's own make
targets (`make up`, `make dag-start`, ..., `make clean`) run by a non-root user in a copy of the project. Each
test is one proof against the running containers, in order (docs/stack-test.md). `make stack-test` runs it."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from etl import catalog, champion, scoring
from etl.airflow_tasks import APPROVAL_TASK
from etl.assets import INCOMING_URI, SCORING_DAG_ID
from etl.publishers.gdrive.client import FOLDER_MIME, folder_url
from etl.run_folder import short_run_id
from etl.steps import STEPS
from tests.support.airflow_api import AirflowApi, http_json
from tests.support.browser import (
    answer_approval,
    chromium,
    graph_nodes,
    open_approval,
    open_plugin_page,
    open_run,
    open_run_tab,
    ui_login,
)
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
from tests.support.scoring import batch, hand_off_batch
from tests.support.stack_load import LoadReport, put_load, scoring_settled
from utils.config import PROJECT_ROOT
from utils.files import file_digest

pytestmark = pytest.mark.stack

TASKS = {"start", "candidates", *(step.name for step in STEPS), "success_end", "failure_end"}
SCREENSHOTS = PROJECT_ROOT / "results" / "ui-screenshots"  # docs/img/airflow-*.png are copies
EXPECTED_SERVICES = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                     "airflow-triggerer", "statsd-exporter", "pushgateway", "prometheus"}
RESULTS_DISK_MB = 64  # results/ is a tmpfs of its own, so that a test can fill it (about 0.6 MB per run)
SCORED_SECONDS = 180  # a handed-off batch to be scored: the watcher's poll, a scoring run, the publication
DATABASE_OUTAGE_SECONDS = 20
STEP_RETRIES = {step.name: step.retries for step in STEPS}


@pytest.fixture(scope="module")
def stack(stand_ins: dict[str, str], settings: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    """The default profile (LocalExecutor), up from fresh volumes for this module, results/ on a small disk."""
    with running_stack(settings, log_dir, results_disk_mb=RESULTS_DISK_MB) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowApi:
    return stack_api(stack)


def latest_metrics(stack: Stack) -> dict:
    """metrics.json of the last published run, as it is on the host."""
    return json.loads((stack.root / "results" / "latest" / "metrics.json").read_text(encoding="utf-8"))


def prometheus(stack: Stack) -> str:
    """Prometheus's URL on its published port."""
    return f"http://127.0.0.1:{stack.settings['PROMETHEUS_PORT']}"


def scored_summary(stack: Stack, name: str) -> dict | None:
    """The published summary.json of the batch `name`, None until it is there."""
    path = stack.root / "results" / scoring.SCORING_RESULTS / name / catalog.SCORING_SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def history(stack: Stack) -> list[dict[str, str]]:
    """results/history.csv's rows, oldest first."""
    return champion.read_history(stack.root / "results")


def firing_drift_alerts(stack: Stack) -> list[dict]:
    """The ScoringBatchDrift alerts Prometheus has firing now."""
    return prometheus_query(prometheus(stack), 'ALERTS{alertname="ScoringBatchDrift",alertstate="firing"}')


def scoring_outcome(api: AirflowApi, run_id: str) -> dict:
    """What a scoring run's score_batches returned (its XCom): the batches it scored and rescored."""
    entry = api.call(f"{api.run_path(SCORING_DAG_ID, run_id)}/taskInstances/score_batches/xcomEntries/return_value")
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def record_load(report: LoadReport, log_dir: Path) -> None:
    """Print the load's cost and keep it beside the logs (docs/stack-test.md quotes it)."""
    print(f"\nstack test: load {report.summary()}")
    (log_dir / f"stack-load-{report.executor}.json").write_text(json.dumps(report.summary(), indent=2))


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
    metrics = latest_metrics(stack)

    def scraped() -> dict[str, float]:
        samples = prometheus_query(prometheus(stack), 'pipeline_model_metric{job="breast_cancer_pipeline"}')
        found = {sample["metric"]["metric"]: float(sample["value"][1]) for sample in samples}
        return found if found and found == pytest.approx({name: metrics.get(name) for name in found}) else {}

    wait_until(scraped, 90, "Prometheus to scrape the last run's pipeline_model_metric from the Pushgateway",
               interval=2)
    up = {sample["metric"]["job"]: sample["value"][1] for sample in prometheus_query(prometheus(stack), "up")}
    assert up == {"prometheus": "1", "airflow": "1", "pushgateway": "1"}  # "airflow": the exporter's placeholder
    groups = http_json(f"{prometheus(stack)}/api/v1/rules")["data"]["groups"]
    assert groups and all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_a_run_on_bad_data_fails_at_preprocess_and_alerts_the_webhook_once(api: AirflowApi,
                                                                            host_server: HostServer) -> None:
    run = triggered_run(api, {"data_url": host_server.url(f"/{BAD_CSV.name}")})
    assert run["state"] == "failed"
    assert {task: run["tasks"][task] for task in ("load", "preprocess", "success_end", "failure_end")} == {
        "load": "success", "preprocess": "failed", "success_end": "upstream_failed", "failure_end": "success"}
    assert len(host_server.alerts) == 1, host_server.alerts
    assert "preprocess" in json.dumps(host_server.alerts[0]["body"])


def test_a_batch_handed_off_into_data_incoming_is_scored_by_itself_and_a_drifted_one_fires_the_alert(
        stack: Stack, api: AirflowApi) -> None:
    """The documented hand-off (`<name>.csv.part`, renamed to `<name>.csv`) into the host's data/incoming and
    nothing else: the triggerer's watcher sees it, the scoring DAG scores and publishes it, its drift reaches
    Prometheus; a batch like the training rows fires no alert, a drifted one fires ScoringBatchDrift."""
    incoming = stack.root / "data" / "incoming"
    for name, rows, drifted in (("clinic-a", 50, False), ("clinic-b-drifted", 60, True)):
        # nothing else may start a scoring run (a new champion's event) and take the batch before the watcher
        wait_until(lambda: scoring_settled(api, incoming), RUN_SECONDS, "the scoring DAG to be idle", interval=2)
        hand_off_batch(incoming, name, batch(rows, seed=rows, drift=drifted))
        summary = wait_until(lambda n=name: scored_summary(stack, n), SCORED_SECONDS, f"batch {name} to be scored")
        assert (summary["rows"], summary["drift"]["drifted"]) == (rows, drifted), summary
        assert (stack.root / "data" / "processed" / f"{name}.csv").is_file()
        wait_until(lambda r=rows: [sample for sample in prometheus_query(prometheus(stack), "pipeline_scoring_rows")
                                   if float(sample["value"][1]) == r], 90,
                   f"Prometheus to scrape the scoring series of {name}", interval=3)
        if not drifted:
            time.sleep(20)  # a rule evaluation (every 15 s) after the scrape: the alert must stay silent
            assert firing_drift_alerts(stack) == [], "the alert fired on a batch like the training rows"
    firing = wait_until(lambda: firing_drift_alerts(stack), 90, "ScoringBatchDrift to fire", interval=3)
    assert {alert["metric"]["feature"] for alert in firing} <= set(summary["drift"]["drifted_features"]), firing
    assert not list(incoming.glob("*.csv")), "a batch was left in data/incoming"
    [incoming_asset] = api.call(f"/api/v2/assets?uri_pattern={urllib.parse.quote(INCOMING_URI)}")["assets"]
    events = api.call(f"/api/v2/assets/events?asset_id={incoming_asset['id']}&limit=100")["asset_events"]
    assert [event["extra"] for event in sorted(events, key=lambda event: event["id"])] == [
        {"from_trigger": True, "payload": {"batches": [f"{name}.csv"], "count": 1}}
        for name in ("clinic-a", "clinic-b-drifted")], events  # the watcher's, one per batch; none over REST


def test_make_announce_batch_still_starts_the_scoring_dag(stack: Stack, api: AirflowApi) -> None:
    known = {run["dag_run_id"] for run in api.runs(SCORING_DAG_ID)}
    assert "announced" in stack.make("announce-batch", "NOTE=scripted")
    new = wait_until(lambda: [run for run in api.runs(SCORING_DAG_ID) if run["dag_run_id"] not in known], 120,
                     "a scoring run after make announce-batch", interval=2)
    assert api.wait_for_run(SCORING_DAG_ID, new[0]["dag_run_id"], RUN_SECONDS)["state"] == "success"


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


# --- load ------------------------------------------------------------------------------------------------------

def test_twenty_runs_at_once_and_ten_batches_meanwhile_each_end_once(stack: Stack, api: AirflowApi,
                                                                      log_dir: Path) -> None:
    """20 training runs triggered over REST at the same moment, each with its own Params, and 10 batches handed off
    while they run (tests/support/stack_load.py): max_active_runs queues the runs and none is lost, each publishes
    into its own folder and has one history row, the champion is the last one promoted, locally and in Prometheus,
    and every batch is scored exactly once, then rescored up to the last champion with the earlier ones."""
    report = put_load(stack, api, "LocalExecutor")
    record_load(report, log_dir)
    assert {api.call(api.run_path(DAG_ID, run_id))["state"] for run_id in report.runs} == {"success"}
    assert all(len(stack.published_folders(run_id)) == 1 for run_id in report.runs)
    rows = history(stack)
    assert sorted(row["run_id"] for row in rows if row["run_id"] in report.runs) == sorted(report.runs)
    pointer = champion.read_pointer(stack.root / "results")
    promoted = [row["run_id"] for row in rows if row["promoted"] == "true"]
    assert pointer["run_id"] == promoted[-1] and pointer["run_id"] in report.runs, (pointer, promoted)
    since = datetime.fromisoformat(pointer["promoted_at"]).timestamp()
    wait_until(lambda: [sample for sample in prometheus_query(
        prometheus(stack), "pipeline_champion_promoted_timestamp_seconds") if float(sample["value"][1]) == since],
        90, "Prometheus to hold the champion's promotion time", interval=3)
    scored = Counter(entry["batch"] for run in api.runs(SCORING_DAG_ID) if run["state"] == "success"
                     for entry in scoring_outcome(api, run["dag_run_id"]).get("scored", []))
    assert {name: scored[name] for name in report.batches} == dict.fromkeys(report.batches, 1), scored
    batches = [path.stem for path in (stack.root / "data" / "processed").glob("*.csv")]
    assert set(report.batches) <= set(batches)  # and those of the earlier tests
    assert {name: scored_summary(stack, name)["model"]["run_id"] for name in batches} == dict.fromkeys(
        batches, pointer["run_id"]), "a processed batch was not rescored by the last champion"


# --- faults and restarts --------------------------------------------------------------------------------------

def test_a_scheduler_restarted_while_train_runs_still_ends_in_one_publication(stack: Stack, api: AirflowApi) -> None:
    scheduler = stack.containers()["airflow-scheduler"]
    run_id = api.trigger(DAG_ID, {})
    wait_until(lambda: api.task_states(DAG_ID, run_id).get("train") == "running", RUN_SECONDS,
               "the run's train task to be running", interval=0.5)
    docker("restart", str(scheduler["ID"]), timeout=120)
    run = finished(api, run_id)
    assert run["state"] == "success", run
    published = stack.published_folders(run_id)
    assert len(published) == 1, published  # results/<start time>_<run id>, once


def test_the_database_down_while_train_runs_costs_retries_not_the_run_nor_a_second_publication(
        stack: Stack, api: AirflowApi) -> None:
    """PostgreSQL stopped for 20 s while `train` runs: the scheduler, DAG processor and triggerer lose it and are
    restarted by their restart policy, a task that could not report is retried; the run succeeds, published once,
    with one history row."""
    run_id = api.trigger(DAG_ID, {})
    wait_until(lambda: api.task_states(DAG_ID, run_id).get("train") == "running", RUN_SECONDS,
               "the run's train task to be running", interval=0.5)
    database = str(stack.containers()["postgres"]["ID"])
    docker("stop", database, timeout=120)
    time.sleep(DATABASE_OUTAGE_SECONDS)
    docker("start", database, timeout=120)
    run = wait_until(lambda: api.wait_for_run(DAG_ID, run_id, 5), RUN_SECONDS, f"run {run_id} to finish after the "
                     "outage", interval=5)  # the API answers 5xx while the database comes back
    assert run["state"] == "success", run
    instances = api.call(f"{api.run_path(DAG_ID, run_id)}/taskInstances?limit=100")["task_instances"]
    assert all(ti["try_number"] <= 1 + STEP_RETRIES.get(ti["task_id"], 0) for ti in instances), instances
    assert len(stack.published_folders(run_id)) == 1
    assert [row["run_id"] for row in history(stack)].count(run_id) == 1
    wait_until(lambda: all(facts["Health"] == "healthy" for service, facts in stack.containers().items()
                           if service != "airflow-init"), 180, "every service to be healthy again", interval=3)


def test_a_crashed_api_server_comes_back_by_its_restart_policy(stack: Stack, api: AirflowApi) -> None:
    before = stack.containers()["airflow-apiserver"]
    os.kill(int(docker("inspect", "--format", "{{.State.Pid}}", str(before["ID"])).stdout), signal.SIGKILL)

    def back() -> bool:
        now = stack.containers()["airflow-apiserver"]
        return now["ID"] == before["ID"] and now["StartedAt"] > before["StartedAt"] and now["Health"] == "healthy"

    wait_until(back, 180, "the killed api-server to be restarted and healthy again", interval=2)
    assert api.call(f"/api/v2/dags/{DAG_ID}")["dag_id"] == DAG_ID


def test_a_full_results_disk_fails_the_upload_clearly_publishes_nothing_and_alerts_once(
        stack: Stack, api: AirflowApi, host_server: HostServer) -> None:
    """results/ (a tmpfs of its own) filled to the last byte: upload fails at once with an error naming the disk,
    nothing of the run is in results/, the champion, the history and results/latest stay, the webhook gets one
    alert saying the run could not be recorded either; once space is freed, failure_end's retry records the run in
    the history without a second alert."""
    results = stack.root / "results"
    kept = {name: (results / name).read_bytes() for name in (catalog.CHAMPION, champion.HISTORY)}
    latest, entries = os.readlink(results / "latest"), set(os.listdir(results))
    alerts = len(host_server.alerts)
    filler = results / "disk-filler.bin"
    with filler.open("wb") as handle:
        space = os.statvfs(results)
        os.posix_fallocate(handle.fileno(), 0, space.f_bavail * space.f_frsize)
    try:
        run_id = api.trigger(DAG_ID, {})
        alert = wait_until(lambda: host_server.alerts[alerts:], RUN_SECONDS, "the alert", interval=1)[0]["body"]
        assert (alert["run_id"], alert["task_id"]) == (run_id, "upload") and "no space left" in alert["text"], alert
        assert "Not recorded in the history" in alert["text"], alert
        states = api.task_states(DAG_ID, run_id)
        assert (states["upload"], states["promote"]) == ("failed", "upstream_failed"), states
        log = api.task_log(DAG_ID, run_id, "upload")
        assert "no space left on the file system holding /opt/airflow/results" in log, log[-2000:]
        assert set(os.listdir(results)) == entries | {filler.name}, "something of the run was left in results/"
        assert {name: (results / name).read_bytes() for name in kept} == kept
        assert os.readlink(results / "latest") == latest
    finally:
        filler.unlink()
    run = finished(api, run_id)  # failure_end retries, now with space: the run gets its history row
    assert (run["state"], run["tasks"]["failure_end"]) == ("failed", "success"), run
    assert [row["run_id"] for row in history(stack)].count(run_id) == 1
    assert len(host_server.alerts) == alerts + 1, host_server.alerts[alerts:]


def test_a_reviewer_approves_one_run_and_rejects_another_in_a_browser(stack: Stack, api: AirflowApi, log_dir: Path,
                                                                       tmp_path: Path) -> None:
    """APPROVAL_REQUIRED=true put into .env and `make up` again, as a user turns approval on: a run waits at
    `approve`; in Chromium the reviewer opens it, reads the review and approves: the run is the champion and the
    history names the reviewer. The next run is rejected there: the champion stays."""
    with (stack.root / ".env").open("a", encoding="utf-8") as dotenv:
        dotenv.write("APPROVAL_REQUIRED=true\n")
    stack.make("up")
    wait_until(lambda: APPROVAL_TASK in {task["task_id"] for task in api.call(f"/api/v2/dags/{DAG_ID}/tasks")[
        "tasks"]}, 180, "the DAG to be parsed again with its approve task", interval=3)
    results = stack.root / "results"
    processes = Processes(log_dir)
    try:
        with chromium(processes, tmp_path / "profile") as driver:
            ui_login(driver, api.base_url, api.username, api.password)
            for choice in ("Approve", "Reject"):
                before = champion.read_pointer(results)
                run_id = api.trigger(DAG_ID, {"promotion_tolerance": 1})  # any model is non-inferior: asked
                wait_until(lambda r=run_id: api.task_states(DAG_ID, r).get(APPROVAL_TASK) == "awaiting_input",
                           RUN_SECONDS, f"run {run_id} to wait for a reviewer", interval=2)
                review = open_approval(driver, api.base_url, DAG_ID, run_id)
                assert "Published to" in review and "non-inferior" in review, review
                answer_approval(driver, choice)
                run = finished(api, run_id)
                assert run["state"] == "success", run
                [row] = [row for row in history(stack) if row["run_id"] == run_id]
                pointer = champion.read_pointer(results)
                if choice == "Approve":
                    assert pointer["run_id"] == run_id and row["promoted"] == "true", (pointer, row)
                    assert f"approved by {api.username}" in row["reason"], row
                else:
                    assert pointer == before and row["promoted"] == "false", (pointer, row)
                    assert f"rejected by {api.username}" in row["reason"], row
    finally:
        processes.stop_all()
    assert not processes.kill_strays(), "chromedriver or chromium outlived quit()"


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
