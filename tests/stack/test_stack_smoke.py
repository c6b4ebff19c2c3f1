"""The compose stack without Docker: docker-compose.yml's services run as local processes
(tests/support/compose_emulator.py).

First the machinery on small inline compose files, then the real stack: PostgreSQL, the Airflow services with
their own commands and healthchecks, a good and a bad pipeline run under the scheduler, metrics, a browser.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from etl import catalog, notify
from etl.run_folder import safe_run_id
from etl.steps import DAG_ID
from tests.support.airflow_runs import SUCCESSFUL_RUN
from tests.support.compose_emulator import (
    COMPOSE_FILE,
    DOCKER_HOST_NAME,
    PROMETHEUS_TOOLS,
    AirflowApi,
    FileSystem,
    Image,
    Mount,
    NativeStack,
    Network,
    Processes,
    Rewriter,
    StackError,
    StatsdListener,
    chromium,
    copy_sources,
    env_file_from_example,
    graph_nodes,
    group_alive,
    healthcheck_argv,
    http_json,
    is_airflow_service,
    link_into,
    listen_port,
    one_shot_services,
    open_run,
    page_text,
    parse_services,
    postgres_server,
    read_image,
    resolve_compose,
    rewrite_prometheus_config,
    runnable,
    start_order,
    strip_init_wrapper,
    ui_login,
    wait_until,
)
from tests.support.data import BAD_INPUTS
from tests.support.monitoring_tools import all_queries, http_get, prometheus_query, require_tool, series_names
from tests.support.servers import Answer, ScriptedServer, free_port, scripted_server
from utils.config import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.stack]

SNIPPET = """
version: "3.8"
x-common: &common
  image: ${IMAGE:-example/airflow:1}
  build: .
  env_file: [common.env]
  environment:
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: postgresql+psycopg2://${DB_USER}:${DB_PASSWORD}@postgres/airflow
    AIRFLOW__CORE__EXECUTION_API_SERVER_URL: http://api:8080/execution/
    AIRFLOW__METRICS__STATSD_HOST: statsd
    AIRFLOW__METRICS__STATSD_PORT: "9125"
    AIRFLOW__API__BASE_URL: http://localhost:8081
    DATA_URL: file:///opt/app/data/input.csv
    RUNS_DIR: /opt/app/runs
    PYTHONPATH: /opt/app
  volumes:
    - ./dags:/opt/app/dags
    - runs:/opt/app/runs
services:
  postgres:
    image: postgres:16
    environment: {POSTGRES_USER: "${DB_USER}", POSTGRES_PASSWORD: "${DB_PASSWORD}"}
  statsd:
    image: prom/statsd-exporter:v0.30.0
    hostname: metrics-in
  init:
    <<: *common
    command: ["bash", "-c", "echo $${HOME}"]
    depends_on: {postgres: {condition: service_healthy}}
  api:
    <<: *common
    command: api-server
    ports: ["8081:8080"]
    healthcheck:
      test: ["CMD", "curl", "--fail", "http://localhost:8080/api/v2/monitor/health"]
    depends_on: {init: {condition: service_completed_successfully}}
  scheduler:
    <<: *common
    command: scheduler
    healthcheck:
      test: ["CMD-SHELL", 'airflow jobs check --hostname "$${HOSTNAME}"']
    depends_on: {init: {condition: service_completed_successfully}, api: {condition: service_healthy}}
volumes:
  runs:
"""


@pytest.fixture(scope="module")
def snippet(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The inline compose file resolved by the real docker-compose, with a small Dockerfile beside it."""
    folder = tmp_path_factory.mktemp("compose")
    (folder / "docker-compose.yml").write_text(SNIPPET)
    (folder / "common.env").write_text("FROM_ENV_FILE=yes\n")
    (folder / "dags").mkdir()
    (folder / ".env.example").write_text("# example\nDB_USER=changeme\nDB_PASSWORD=\n")
    env_file = env_file_from_example(folder / ".env.example", folder / "test.env",
                                     {"DB_USER": "airflow", "DB_PASSWORD": "s3cret"})
    return {"folder": folder, "services": parse_services(resolve_compose(folder / "docker-compose.yml", env_file))}


def test_env_file_from_example_replaces_and_appends(tmp_path):
    example = tmp_path / "example.env"
    example.write_text("# A=commented\nA=1\nB=2\n")
    written = env_file_from_example(example, tmp_path / "test.env", {"A": "x", "C": "y"}).read_text()
    assert written == "# A=commented\nA=x\nB=2\nC=y\n"


def test_compose_services_are_parsed_from_the_resolved_file(snippet):
    services, folder = snippet["services"], snippet["folder"]
    api = services["api"]
    assert api.command == ("api-server",)
    assert api.environment["FROM_ENV_FILE"] == "yes"
    assert api.environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == \
        "postgresql+psycopg2://airflow:s3cret@postgres/airflow"
    assert api.mounts == (Mount(str(folder / "dags"), "/opt/app/dags", bind=True),
                          Mount("runs", "/opt/app/runs", bind=False))
    assert api.published_ports == {8081: 8080} and api.container_ports == (8080,)
    assert api.healthcheck[0] == "CMD" and api.build_context == folder
    assert services["statsd"].host_names == ("statsd", "metrics-in")
    assert services["init"].command == ("bash", "-c", "echo $${HOME}")  # compose keeps the escape in `config`
    assert {name for name, s in services.items() if is_airflow_service(s)} == {"init", "api", "scheduler"}
    assert one_shot_services(services) == {"init"}
    assert start_order(services, {"scheduler", "api", "init", "postgres"}) == ["postgres", "init", "api", "scheduler"]


def test_a_depends_on_cycle_is_reported(snippet):
    services = dict(snippet["services"])
    services["postgres"] = dataclasses.replace(services["postgres"], depends_on={"scheduler": "service_started"})
    with pytest.raises(StackError, match="depends_on cycle: api -> init -> postgres -> scheduler -> api"):
        start_order(services, set(services))


def test_docker_compose_errors_name_the_file(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: x\n    bogus_key: 1\n")
    (tmp_path / "e.env").write_text("")
    with pytest.raises(StackError, match="docker-compose config rejected .*docker-compose.yml"):
        resolve_compose(tmp_path / "docker-compose.yml", tmp_path / "e.env")


@pytest.fixture
def rewriter(snippet, tmp_path) -> Rewriter:
    services = snippet["services"]
    files = FileSystem({"/opt/app/dags": tmp_path / "dags", "/opt/app/runs": tmp_path / "volumes" / "runs",
                        "/opt/app": tmp_path / "image" / "opt" / "app"})
    return Rewriter(Network.of(services), files, own="scheduler")


def test_addresses_of_services_become_loopback_ports(rewriter):
    env = rewriter.environment(
        {"DB": "postgresql+psycopg2://airflow:p%40ss@postgres/airflow", "API": "http://api:8080/execution/",
         "AIRFLOW__METRICS__STATSD_HOST": "metrics-in", "AIRFLOW__METRICS__STATSD_PORT": "9125",
         "OUTSIDE": "https://example.org:8443/x", "TARGETS": "statsd:9102,api:8080", "PLAIN": "8080"})
    ports = rewriter.network.ports
    assert env["DB"] == f"postgresql+psycopg2://airflow:p%40ss@127.0.0.1:{ports['postgres', 5432]}/airflow"
    assert env["API"] == f"http://127.0.0.1:{ports['api', 8080]}/execution/"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "127.0.0.1"
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == str(ports["statsd", 9125])
    assert env["TARGETS"] == f"127.0.0.1:{ports['statsd', 9102]},127.0.0.1:{ports['api', 8080]}"
    assert env["OUTSIDE"] == "https://example.org:8443/x" and env["PLAIN"] == "8080"
    assert len(set(ports.values())) == len(ports), "two container ports share one loopback port"


def test_localhost_is_the_service_itself_unless_another_publishes_the_port(rewriter):
    api_port = rewriter.network.port("api", 8080)
    inside_api = Rewriter(rewriter.network, rewriter.files, own="api")
    assert inside_api.text("http://localhost:8080/health") == f"http://127.0.0.1:{api_port}/health"
    assert rewriter.text("http://localhost:8081") == f"http://127.0.0.1:{rewriter.network.port('api', 8080)}"
    assert rewriter.text("http://localhost:7000/x") == f"http://127.0.0.1:{rewriter.network.port('scheduler', 7000)}/x"
    assert rewriter.text("http://host.docker.internal:7000/x") == "http://127.0.0.1:7000/x", "the host is the host"


def test_container_paths_map_to_host_folders(rewriter, tmp_path):
    assert rewriter.text("/opt/app/dags") == str(tmp_path / "dags")
    assert rewriter.text("/opt/app/runs/x/y.json") == str(tmp_path / "volumes" / "runs" / "x" / "y.json")
    assert rewriter.text("file:///opt/app/data/input.csv") == f"file://{tmp_path}/image/opt/app/data/input.csv"
    assert rewriter.text("--config.file=/opt/app/dags/c.yml") == f"--config.file={tmp_path}/dags/c.yml"
    assert rewriter.text("/opt/app:/opt/app/dags") == f"{tmp_path}/image/opt/app:{tmp_path}/dags"
    assert rewriter.text("/usr/bin/env") == "/usr/bin/env", "a path outside the mapped folders is the host's own"
    assert rewriter.text("/opt/application") == "/opt/application", "a prefix matches whole folder names only"


def test_healthchecks_run_as_written_with_the_same_rewriting(rewriter, snippet):
    port = rewriter.network.port("scheduler", 8080)
    assert healthcheck_argv(("CMD", "curl", "http://localhost:8080/h"), rewriter) == \
        ["curl", f"http://127.0.0.1:{port}/h"]
    shell = healthcheck_argv(snippet["services"]["scheduler"].healthcheck, rewriter)
    assert shell == ["/bin/sh", "-c", 'airflow jobs check --hostname "${HOSTNAME}"']
    assert healthcheck_argv(("NONE",), rewriter) is None
    with pytest.raises(StackError, match="must start with CMD, CMD-SHELL or NONE"):
        healthcheck_argv(("curl", "x"), rewriter)


def test_dockerfile_args_env_workdir_entrypoint_and_copies(snippet, tmp_path):
    context = tmp_path / "context"
    (context / "etl").mkdir(parents=True)
    (context / "entrypoint.sh").write_text("")
    (context / "Dockerfile").write_text(textwrap.dedent("""\
        ARG VERSION=1
        FROM example/airflow:${VERSION}
        ARG VERSION=1
        ARG FLAVOUR=plain
        # a comment
        ENV APP=/opt/app/v${VERSION}-${FLAVOUR} \\
            B="two words"
        WORKDIR ${APP}
        COPY --chown=app:0 etl/ ./etl/
        COPY --chmod=0755 entrypoint.sh /usr/local/bin/
        COPY . /opt/whole
        COPY --from=builder /wheels /wheels
        ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]
        """))
    service = dataclasses.replace(snippet["services"]["api"], build_context=context, build_args={"VERSION": "2"})
    image = read_image(service, Image(environment={"B": "0", "BASE": "kept"}))
    assert image.environment == {"APP": "/opt/app/v2-plain", "B": "two words", "BASE": "kept"}
    assert image.working_dir == "/opt/app/v2-plain"
    assert image.entrypoint == ("/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh")
    assert image.copies == {"/opt/app/v2-plain/etl": context / "etl",
                            "/usr/local/bin/entrypoint.sh": context / "entrypoint.sh",
                            "/opt/whole/Dockerfile": context / "Dockerfile", "/opt/whole/etl": context / "etl",
                            "/opt/whole/entrypoint.sh": context / "entrypoint.sh"}


def test_copy_of_several_files_lands_in_the_destination_folder(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    assert copy_sources("a.txt b.txt /dst", tmp_path, "/") == {"/dst/a.txt": tmp_path / "a.txt",
                                                               "/dst/b.txt": tmp_path / "b.txt"}
    assert copy_sources("a.txt /dst/renamed.txt", tmp_path, "/") == {"/dst/renamed.txt": tmp_path / "a.txt"}


def test_processes_stop_their_whole_group_and_find_strays(tmp_path):
    processes = Processes(tmp_path / "logs")
    started = processes.start("sleepers", ["/bin/sh", "-c", "sleep 300 & sleep 300 & wait"], dict(os.environ))
    stray = processes.start("stray", ["setsid", "sleep", "300"], dict(os.environ))  # leaves its group at once
    wait_until(lambda: len(processes.strays()) >= 4, 10, "the sleepers to start")
    group = started.process.pid
    processes.stop(started, grace=5)
    assert not group_alive(group)
    processes.stop(stray, grace=5)
    assert processes.strays(), "setsid moved the sleeper out of the group it was stopped by"
    assert len(processes.kill_strays()) == 1
    wait_until(lambda: not processes.strays(), 5, "the stray to die")


def test_run_reports_exit_code_output_and_kills_on_timeout(tmp_path):
    processes = Processes(tmp_path / "logs")
    done = processes.run("echo", ["/bin/sh", "-c", "echo hello; exit 3"], dict(os.environ))
    assert (done.returncode, done.stdout) == (3, "hello\n")
    with pytest.raises(StackError, match=r"slow \(sleep 300\) did not finish in 1 s"):
        processes.run("slow", ["sleep", "300"], dict(os.environ), timeout=1)
    assert not processes.strays() and not processes.started


def test_postgres_server_takes_the_compose_login(tmp_path):
    processes = Processes(tmp_path / "logs")
    port = free_port()
    with postgres_server(processes, port, "airflow", "p@ss word", "airflow") as database:
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=port, user="airflow", password="p@ss word",
                              dbname="airflow") as connection, connection.cursor() as cursor:
            cursor.execute("select current_user, current_database()")
            assert cursor.fetchone() == ("airflow", "airflow")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, user="airflow", password="wrong", dbname="airflow")
        assert database.port == port
    assert not processes.strays()


def test_statsd_listener_records_metric_names(tmp_path):
    import statsd

    with StatsdListener() as listener:
        client = statsd.StatsClient("127.0.0.1", listener.port, prefix="airflow")
        client.incr("scheduler_heartbeat")
        client.timing("dag.x.y.duration", 12)
        wait_until(lambda: len(listener.lines) >= 2, 5, "two statsd packets")
    assert listener.names() == {"airflow.scheduler_heartbeat", "airflow.dag.x.y.duration"}


def test_chromium_renders_a_page_and_saves_a_screenshot(tmp_path):
    html = b"<html><body><h1>breast_cancer_pipeline</h1><p id='state'>success</p></body></html>"
    processes = Processes(tmp_path / "logs")
    with scripted_server(Answer(body=html, content_type="text/html")) as server, \
            chromium(processes, tmp_path / "profile") as driver:
        driver.get(server.url)
        assert page_text(driver) == "breast_cancer_pipeline\nsuccess"
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not processes.strays(), "chromedriver or chromium outlived quit()"



def test_prometheus_config_gets_loopback_targets_and_host_rule_files(tmp_path):
    folder = tmp_path / "prometheus"
    (folder / "rules").mkdir(parents=True)
    (folder / "prometheus.yml").write_text(textwrap.dedent("""\
        rule_files: [rules/*.yml, /etc/prometheus/extra.yml]
        scrape_configs:
          - job_name: pushgateway
            static_configs: [{targets: ["pushgateway:9091"]}]
          - job_name: prometheus
            static_configs: [{targets: ["localhost:9090"]}]
        """))
    network = Network({"pushgateway": "pushgateway", "prometheus": "prometheus"}, {}, {"prometheus": (9090,)})
    rewriter = Rewriter(network, FileSystem({"/etc/prometheus": folder}), own="prometheus")
    config = yaml.safe_load(rewrite_prometheus_config("/etc/prometheus/prometheus.yml", tmp_path / "out.yml",
                                                      rewriter).read_text())
    assert config["rule_files"] == [f"{folder}/rules/*.yml", f"{folder}/extra.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["pushgateway", "prometheus"]
    assert [job["static_configs"][0]["targets"] for job in config["scrape_configs"]] == \
        [[f"127.0.0.1:{network.ports['pushgateway', 9091]}"], [f"127.0.0.1:{network.ports['prometheus', 9090]}"]]


def test_container_commands_become_native_ones(tmp_path):
    assert strip_init_wrapper(("/usr/bin/dumb-init", "--", "/entry.sh", "scheduler")) == ("/entry.sh", "scheduler")
    assert strip_init_wrapper(("airflow", "version")) == ("airflow", "version")
    script = tmp_path / "entry.sh"
    script.write_text("#!/usr/bin/env bash\necho hi\n")
    assert runnable([str(script), "x"]) == ["/usr/bin/env", "bash", str(script), "x"], "not executable: via #!"
    script.chmod(0o755)
    assert runnable([str(script), "x"]) == [str(script), "x"]
    assert (listen_port(":9125", 1), listen_port("0.0.0.0:9091", 1), listen_port(None, 9102)) == (9125, 9091, 9102)


def test_image_links_never_write_through_a_link_into_the_repository(tmp_path):
    root, repo = tmp_path / "container", tmp_path / "repo"
    (repo / "dags").mkdir(parents=True)
    link_into(root, "/opt/app/dags", repo / "dags")
    link_into(root, "/opt/app/dags/inner", tmp_path / "elsewhere")
    assert (root / "opt/app/dags").resolve() == repo / "dags"
    assert list((repo / "dags").iterdir()) == [], "a link was made inside the repository's folder"


# --- the real stack ----------------------------------------------------------------------------------------

BAD_CSV = BAD_INPUTS / "score_zero.csv"
SCREENSHOTS = PROJECT_ROOT / "results" / "ui-screenshots"
RUN_TIMEOUT_SECONDS = 600
# The test's values in the env file that mk/make_env.py makes from .env.example (as `make up` does).
TEST_SETTINGS = {
    "STORAGE_BACKEND": "local",  # a test never publishes to Google Drive
    "GDRIVE_FOLDER_ID": "",
    "DATA_URL": "file:///opt/airflow/project/data/BreastCancer.csv",  # no internet here: the image's own copy
    "DATA_ALLOWED_DIRS": "data,tests/data/bad_inputs",  # the bad run reads BAD_CSV
    "DOWNLOAD_RETRIES": "0",
}


def monitored_series(prefix: str) -> set[str]:
    """The series named `prefix*` that the dashboards and alert rules query."""
    return {name for query in all_queries() for name in series_names(query.expression, prefix)}


@dataclass
class Deployed:
    """The running stack and what the tests share: the API, the webhook receiver, timings."""

    stack: NativeStack
    api: AirflowApi
    webhook: ScriptedServer
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, service: str) -> dict[str, str]:
        return self.stack.environment(self.stack.services[service])

    def airflow_service(self) -> str:
        return next(name for name, s in self.stack.services.items() if is_airflow_service(s))

    def host_folder(self, variable: str) -> Path:
        """The host folder an Airflow setting (RUNS_DIR, RESULTS_DIR) points at."""
        return Path(self.env(self.airflow_service())[variable])


def make_env_file(folder: Path, webhook_url: str) -> Path:
    """.env made like `make up` makes it (fresh secrets), with the test's settings on top."""
    generated = folder / "generated.env"
    subprocess.run([sys.executable, str(PROJECT_ROOT / "mk" / "make_env.py"), "--env", str(generated)],
                   check=True, capture_output=True, text=True)
    return env_file_from_example(generated, folder / "test.env", {**TEST_SETTINGS, "ALERT_WEBHOOK_URL": webhook_url})


def from_containers(url: str) -> str:
    """A URL of a server on this machine as containers reach it (in a container 127.0.0.1 is the container)."""
    return url.replace("//127.0.0.1:", f"//{DOCKER_HOST_NAME}:", 1)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """docker-compose.yml's services as local processes, up and healthy, for the whole module; stopped after it,
    with a check that nothing is left running."""
    for tool in ("docker-compose", "curl", *(binary for binary, _ in PROMETHEUS_TOOLS.values())):
        require_tool(tool)
    work = tmp_path_factory.mktemp("stack")
    timings: dict[str, float] = {}
    with scripted_server(Answer(status=200, body=b"{}", content_type="application/json")) as webhook:
        env_file = make_env_file(work, from_containers(webhook.url))
        stack = NativeStack(COMPOSE_FILE, env_file, work, Path(sys.executable).parent,
                            extra_env={"ENV_FILE": str(work / "no-such.env")})  # the image has no .env
        try:
            began = time.monotonic()
            stack.up(timeout=300)
            timings["up"] = round(time.monotonic() - began, 1)
            init_env = stack.environment(stack.services[next(iter(one_shot_services(stack.services)))])
            api = AirflowApi(stack.host_view(init_env["AIRFLOW__API__BASE_URL"]).rstrip("/"),
                             init_env["AIRFLOW_ADMIN_USERNAME"], init_env["AIRFLOW_ADMIN_PASSWORD"])
            yield Deployed(stack, api, webhook, timings)
        finally:
            began = time.monotonic()
            strays = stack.down()
            timings["down"] = round(time.monotonic() - began, 1)
            print(f"\nstack smoke: services ready after (s) {stack.timeline}\nstack smoke: durations (s) {timings}"
                  f"\nstack smoke: logs in {stack.processes.log_dir}")
            leftovers = stack.processes.strays()
            open_ports = [port for port in stack.network.ports.values() if port_open(port)]
            if strays or leftovers or open_ports:
                raise StackError(f"the stack left things running: strays killed {strays}, still alive "
                                 f"{leftovers}, ports still open {open_ports}")


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def finished_run(deployed: Deployed, conf: dict | None = None) -> dict:
    """Trigger the DAG through the REST API, wait for the run under the real scheduler; the run with its task
    states."""
    api = deployed.api
    wait_until(lambda: api.call(f"/api/v2/dags/{DAG_ID}")["dag_id"], 120, f"{DAG_ID} to be parsed")
    run_id = api.trigger(DAG_ID, conf)
    began = time.monotonic()
    run = api.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT_SECONDS)
    deployed.timings["bad run" if conf else "good run"] = round(time.monotonic() - began, 1)
    return {**run, "tasks": api.task_states(DAG_ID, run_id)}


@pytest.fixture(scope="module")
def good_run(deployed: Deployed) -> dict:
    return finished_run(deployed)


@pytest.fixture(scope="module")
def bad_run(deployed: Deployed, good_run: dict) -> dict:
    return finished_run(deployed, {"data_url": BAD_CSV.as_uri()})


def test_every_service_runs_natively_except_grafana(deployed):
    stack = deployed.stack
    assert set(stack.not_run) == {"grafana"}, stack.not_run
    assert {name for name, state in stack.state.items() if state == "healthy"} == \
        set(stack.services) - one_shot_services(stack.services) - {"grafana"}
    airflow = {name for name, s in stack.services.items() if is_airflow_service(s)}
    assert airflow == {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                       "airflow-triggerer"}


def test_services_see_each_other_through_the_rewritten_compose_environment(deployed):
    env, ports = deployed.env("airflow-scheduler"), deployed.stack.network.ports
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
        f"http://127.0.0.1:{ports['airflow-apiserver', 8080]}/execution/"
    assert f"@127.0.0.1:{ports['postgres', 5432]}/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == str(deployed.stack.statsd.port)
    assert env["PUSHGATEWAY_URL"] == f"http://127.0.0.1:{ports['pushgateway', 9091]}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")


def test_init_runs_the_entrypoint_and_a_second_run_changes_nothing(deployed):
    stack = deployed.stack
    init = next(iter(one_shot_services(stack.services)))
    passwords = Path(deployed.env(init)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    before = passwords.read_text()
    began = time.monotonic()
    stack.run_one_shot(init)
    deployed.timings["second init"] = round(time.monotonic() - began, 1)
    first, second = stack.one_shot_runs[init]
    for run in (first, second):
        assert "entrypoint: migrating the metadata database" in run.stdout
        assert "entrypoint: login 'admin': password from AIRFLOW_ADMIN_PASSWORD" in run.stdout
        assert "entrypoint: the stack is prepared" in run.stdout
        assert "Database migration done!" in run.stdout
        assert run.stdout.splitlines()[-1] == metadata.version("apache-airflow"), "not `airflow version`"
    assert "Airflow database tables created" in first.stdout, "the first run did not create the schema"
    assert "Airflow database tables created" not in second.stdout, "the second run created the schema again"
    assert passwords.read_text() == before
    assert json.loads(before) == {"admin": deployed.api.password}


def test_every_service_passes_its_own_healthcheck(deployed):
    stack = deployed.stack
    running = [name for name, state in stack.state.items() if state == "healthy"]
    # As in Docker, one failed probe is not "unhealthy" (retries): a loaded 2-core machine can make the
    # `airflow jobs check` CLI miss its timeout once.
    assert {name: any(stack.healthy(name) for _ in range(3)) for name in running} == dict.fromkeys(running, True)
    health = deployed.api.call("/api/v2/monitor/health")
    assert {part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")} \
        == dict.fromkeys(("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy")


def test_the_scheduled_first_run_starts_on_its_own(deployed, good_run):
    scheduled = [run for run in deployed.api.runs(DAG_ID) if run["run_type"] == "scheduled"]
    assert [run["state"] for run in scheduled] == ["success"]


def test_a_triggered_run_succeeds_under_the_scheduler(good_run):
    assert good_run["state"] == "success"
    assert good_run["tasks"] == SUCCESSFUL_RUN


def test_the_good_run_is_published_in_the_shared_results_folder(deployed, good_run):
    results = deployed.host_folder("RESULTS_DIR")
    published = sorted(results.glob(f"*_{safe_run_id(good_run['dag_run_id'])}"))
    assert len(published) == 1, sorted(p.name for p in results.iterdir())
    names = {path.name for path in published[0].iterdir()}
    assert {catalog.MODEL, catalog.METRICS, catalog.REPORT, catalog.MANIFEST} <= names
    assert (results / "latest").resolve() == published[0].resolve()


def test_a_run_on_bad_data_fails_and_alerts(deployed, bad_run):
    assert bad_run["state"] == "failed"
    assert bad_run["tasks"] == {"start": "success", "load": "success", "preprocess": "failed",
                                "train": "upstream_failed", "evaluate": "upstream_failed",
                                "upload": "upstream_failed", "success_end": "upstream_failed",
                                "failure_end": "success"}
    folder = deployed.host_folder("RUNS_DIR") / safe_run_id(bad_run["dag_run_id"])
    alert = json.loads((folder / notify.FAILED_MARKER).read_text())
    assert alert["task_id"] == "preprocess" and "Cell.size" in alert["error"]
    posted = [json.loads(request["body"]) for request in deployed.webhook.requests]
    assert [(a["run_id"], a["task_id"]) for a in posted] == [(bad_run["dag_run_id"], "preprocess")]


def test_airflow_statsd_metrics_feed_the_series_monitoring_uses(deployed, bad_run):
    stack = deployed.stack
    names = stack.statsd.names()
    assert {f"airflow.dagrun.duration.success.{DAG_ID}", f"airflow.dagrun.duration.failed.{DAG_ID}",
            f"airflow.ti.finish.{DAG_ID}.preprocess.failed", "airflow.scheduler_heartbeat"} <= names
    assert stack.statsd.errors == [], "packets the exporter's mapping refuses"
    assert monitored_series("airflow_") - stack.exporter.names() == set(), "never produced by the real stack"
    exposition = http_get(f"http://127.0.0.1:{stack.network.ports['statsd-exporter', 9102]}/metrics").decode()
    assert f'airflow_dagrun_duration_seconds_count{{dag_id="{DAG_ID}",state="failed"}} 1' in exposition


def test_prometheus_scrapes_the_pipeline_metrics_of_the_good_run(deployed, good_run, bad_run):
    stack = deployed.stack
    prometheus = f"http://127.0.0.1:{stack.network.ports['prometheus', 9090]}"
    results = deployed.host_folder("RESULTS_DIR")
    metrics = json.loads(next(results.glob(f"*_{safe_run_id(good_run['dag_run_id'])}/{catalog.METRICS}"))
                         .read_text())

    def scraped() -> dict[str, float]:
        found = {sample["metric"]["metric"]: float(sample["value"][1])
                 for sample in prometheus_query(prometheus, 'pipeline_model_metric{job="breast_cancer_pipeline"}')}
        return found if len(found) == 7 else {}

    values = wait_until(scraped, 90, "Prometheus to scrape pipeline_model_metric from the Pushgateway", interval=2)
    assert values == pytest.approx({name: metrics[name] for name in values})


def test_prometheus_has_every_series_the_dashboards_and_alerts_query(deployed, good_run, bad_run):
    prometheus = f"http://127.0.0.1:{deployed.stack.network.ports['prometheus', 9090]}"
    wanted = monitored_series("airflow_") | monitored_series("pipeline_")

    def missing() -> set[str]:
        present = prometheus_query(prometheus, 'count by (__name__) ({__name__=~"(airflow|pipeline)_.+"})')
        return wanted - {sample["metric"]["__name__"] for sample in present}

    wait_until(lambda: not missing(), 90, "Prometheus to scrape every monitored series", interval=2,
               details=lambda: f"missing: {sorted(missing())}")
    up = {sample["metric"]["job"]: sample["value"][1] for sample in prometheus_query(prometheus, "up")}
    assert up == {"prometheus": "1", "airflow": "1", "pushgateway": "1"}
    groups = http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert groups and all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_the_ui_shows_the_dag_and_both_runs_in_a_browser(deployed, good_run, bad_run, tmp_path):
    api, tasks = deployed.api, good_run["tasks"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with chromium(deployed.stack.processes, tmp_path / "profile") as driver:
        ui_login(driver, api.base_url, api.username, api.password)
        text = open_run(driver, api.base_url, DAG_ID, good_run["dag_run_id"], (good_run["dag_run_id"], *tasks))
        assert "Success" in text and "Failed" not in text
        driver.save_screenshot(str(SCREENSHOTS / "airflow-run.png"))
        nodes = graph_nodes(driver, len(tasks))
        assert {task: node.splitlines()[-1] for task, node in nodes.items()} == tasks
        driver.save_screenshot(str(SCREENSHOTS / "airflow-dag-graph.png"))
        open_run(driver, api.base_url, DAG_ID, bad_run["dag_run_id"], (bad_run["dag_run_id"],))
        nodes = graph_nodes(driver, len(tasks))
        assert {task: node.splitlines()[-1] for task, node in nodes.items()} == bad_run["tasks"]
        driver.save_screenshot(str(SCREENSHOTS / "airflow-failed-run-graph.png"))
    deployed.timings["browser"] = round(time.monotonic() - began, 1)
    for name in ("airflow-run.png", "airflow-dag-graph.png", "airflow-failed-run-graph.png"):
        assert (SCREENSHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
