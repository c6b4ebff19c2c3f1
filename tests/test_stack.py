"""The Docker Compose stack for real: a Docker engine, stand-in images built locally, and the project's own make
targets (`make up`, `make dag-start`, ..., `make clean`) run by a non-root user in a copy of the project. Each
test is one proof against the running containers, in order (docs/stack-test.md). `make stack-test` runs it."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.docker_support import PROJECT_NAME, DockerError, Stack, copy_project, docker, docker_engine, ensure_stand_ins
from tests.http_support import free_port, serving
from tests.monitoring_support import prometheus_query
from tests.stack_support import AirflowApi, http_json, wait_until
from utils.config import PROJECT_ROOT, read_env_file

pytestmark = pytest.mark.stack

DAG_ID = "breast_cancer_pipeline"
STEPS = ("load", "preprocess", "train", "evaluate", "upload")
TASKS = {"start", *STEPS, "success_end", "failure_end"}
# A user of this machine who is not root and not the image's uid 50000 runs `make up`, so AIRFLOW_UID = 4242.
USER_UID = 4242
BAD_CSV = PROJECT_ROOT / "tests" / "data" / "bad_inputs" / "score_zero.csv"
RUN_SECONDS = 600
EXPECTED_SERVICES = {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                     "airflow-triggerer", "statsd-exporter", "pushgateway", "prometheus"}


@dataclass
class HostServer:
    """An HTTP server on the Docker bridge's address of this machine, which the containers reach as
    host.docker.internal: it serves the bad CSV and records the alerts POSTed to /alert."""

    port: int = 0
    alerts: list[dict] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The URL of `path` as the containers reach it."""
        return f"http://host.docker.internal:{self.port}{path}"


def host_handler(state: HostServer) -> type[BaseHTTPRequestHandler]:
    """GET /score_zero.csv: the bad-input file; POST /alert: recorded."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, status = (BAD_CSV.read_bytes(), 200) if self.path == f"/{BAD_CSV.name}" else (b"", 404)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.alerts.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
            pass

    return Handler


def bridge_address() -> str:
    """This machine's address on Docker's default bridge: where host.docker.internal (host-gateway) points."""
    return docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack-logs")


@pytest.fixture(scope="session")
def engine(log_dir: Path) -> Iterator[None]:
    """A Docker engine that answers: the one running, or dockerd started here and stopped at the end."""
    with docker_engine(log_dir):
        yield


@pytest.fixture(scope="session")
def stand_ins(engine: None) -> dict[str, str]:
    """The stand-in images, built only when their inputs changed."""
    report = ensure_stand_ins()
    print(f"\nstack test: stand-in images {report}")
    return report


@pytest.fixture(scope="session")
def host_server(engine: None) -> Iterator[HostServer]:
    state = HostServer()
    with serving(host_handler(state), host=bridge_address()) as httpd:
        state.port = httpd.server_port
        yield state


def stack_settings(host_server: HostServer) -> dict[str, str]:
    """The test's settings: its own project name, image name and free ports; local storage; the image's own
    copy of the data (no internet here); alerts to the host server."""
    ports = {name: str(free_port()) for name in ("AIRFLOW_API_PORT", "GRAFANA_PORT", "PROMETHEUS_PORT",
                                                  "PUSHGATEWAY_PORT", "FLOWER_PORT")}
    return {"COMPOSE_PROJECT_NAME": PROJECT_NAME, "AIRFLOW_IMAGE_NAME": f"{PROJECT_NAME}/airflow:latest", **ports,
            "STORAGE_BACKEND": "local", "GDRIVE_FOLDER_ID": "",
            "DATA_URL": "file:///opt/airflow/project/data/BreastCancer.csv", "DOWNLOAD_RETRIES": "0",
            "ALERT_WEBHOOK_URL": host_server.url("/alert")}


@pytest.fixture(scope="session")
def stack(stand_ins: dict[str, str], host_server: HostServer, log_dir: Path) -> Iterator[Stack]:
    """`make up` from fresh volumes in a copy of the project owned by the user; `make clean` at the end, then
    nothing of the project may be left in the engine."""
    with tempfile.TemporaryDirectory(prefix="stack-test-project-") as folder:
        root = Path(folder)
        root.chmod(0o755)
        copy_project(root, USER_UID)
        stack = Stack(root, USER_UID, stack_settings(host_server), log_dir)
        try:
            stack.make("clean")  # fresh volumes, whatever an interrupted earlier run left
            began = time.monotonic()
            stack.make("up")
            print(f"\nstack test: make up {time.monotonic() - began:.0f} s; logs in {log_dir}")
            yield stack
        finally:
            stack.make("logs", "LOGS_FOLLOW=", timeout=120)  # every service's last lines, into the log folder
            stack.make("clean")
            leftovers = stack.leftovers()
            if leftovers:
                raise DockerError(f"the stack test left things in the engine: {leftovers}")


@pytest.fixture(scope="session")
def api(stack: Stack) -> AirflowApi:
    """The REST API on its published port, with the admin login `make up` generated into .env."""
    dotenv = read_env_file(stack.root / ".env")
    return AirflowApi(f"http://127.0.0.1:{stack.settings['AIRFLOW_API_PORT']}", dotenv["AIRFLOW_ADMIN_USERNAME"],
                      dotenv["AIRFLOW_ADMIN_PASSWORD"])


def finished(api: AirflowApi, run_id: str) -> dict:
    """The run once finished, with its task states."""
    run = api.wait_for_run(DAG_ID, run_id, RUN_SECONDS)
    return {**run, "tasks": api.task_states(DAG_ID, run_id)}


def triggered_run(api: AirflowApi, conf: dict) -> dict:
    """A run triggered over the REST API with `conf` as its Params, once finished."""
    wait_until(lambda: api.call(f"/api/v2/dags/{DAG_ID}")["dag_id"], 120, f"{DAG_ID} to be parsed")
    return finished(api, api.trigger(DAG_ID, conf))


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
    run = triggered_run(api, {"model": "random_forest"})
    assert run["state"] == "success", run
    assert latest_metrics(stack)["model"] == "random_forest"


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
