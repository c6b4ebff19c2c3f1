"""The Docker Compose stack, checked without a Docker engine: docker-compose.yml through Compose 1.29 and v2 and
its own rules, .env.example and mk/make_env.py, the Dockerfile (hadolint), mk/stack.mk, and entrypoint.sh run
for real against Airflow on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.fernet import Fernet
from dotenv import dotenv_values

from etl.steps import DAG_ID
from tests.support.airflow_runs import AIRFLOW
from tests.support.monitoring_tools import missing_tool, require_tool
from tests.support.processes import Processes, postgres_server
from tests.support.servers import free_port
from utils.config import PROJECT_ROOT, VARIABLES, load_settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
ENTRYPOINT = PROJECT_ROOT / "entrypoint.sh"
MAKE_ENV = PROJECT_ROOT / "mk" / "make_env.py"
COMPOSE_V2_BUNDLED = PROJECT_ROOT / ".make" / "compose-v2" / "compose" / "docker-compose"

AIRFLOW_COMPONENTS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
CELERY_SERVICES = {"redis", "airflow-worker", "flower"}
MONITORING_SERVICES = {"statsd-exporter", "pushgateway", "prometheus", "grafana"}
DEFAULT_SERVICES = {"postgres", "airflow-init", *AIRFLOW_COMPONENTS, *MONITORING_SERVICES}
INTERNAL_ONLY = {"postgres", "redis", "statsd-exporter"}
SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
           "AIRFLOW__API__SECRET_KEY", "GRAFANA_ADMIN_PASSWORD")
GENERATED = (*SECRETS, "AIRFLOW_ADMIN_PASSWORD")
SETTINGS = {variable: name for name, variable in VARIABLES.items()}  # variable -> field name


def read_env_file(path: Path) -> dict[str, str]:
    """A `.env` file's values, as Compose and the settings read them (python-dotenv)."""
    return {key: value or "" for key, value in dotenv_values(path).items()}
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; a Compose command's `--env-file` is also the containers' env_file (COMPOSE_ENV_FILE), as the
    project's `.env` is for users."""
    if "--env-file" in args and "env" not in kwargs:
        kwargs["env"] = {**os.environ, "COMPOSE_ENV_FILE": args[args.index("--env-file") + 1]}
    return subprocess.run(args, capture_output=True, text=True, timeout=kwargs.pop("timeout", 120), **kwargs)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and merge keys resolved as Compose does)."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services.items() if name.startswith("airflow-") or name == "flower"}


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env made by mk/make_env.py from .env.example, as `make up` makes it."""
    path = tmp_path_factory.mktemp("env") / ".env"
    result = run([sys.executable, str(MAKE_ENV), "--env", str(path)])
    assert result.returncode == 0, result.stderr
    return path


# --- Compose itself --------------------------------------------------------------------------------------------

def compose_v1() -> list[str]:
    """Debian's docker-compose 1.29 (a Compose v2 wrapper may come first on PATH)."""
    for candidate in dict.fromkeys(filter(None, [shutil.which("docker-compose"), "/usr/bin/docker-compose"])):
        version = run([candidate, "version", "--short"]) if Path(candidate).exists() else None
        if version is not None and version.stdout.startswith("1."):
            return [candidate]
    missing_tool("Debian's docker-compose 1.29 is not installed (make system-deps installs it)")


def compose_v2() -> list[str]:
    """Compose v2: the docker CLI plugin, or the binary `make compose-v2` installs under .make/."""
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    if COMPOSE_V2_BUNDLED.exists():
        return [str(COMPOSE_V2_BUNDLED)]
    missing_tool("Compose v2 is not installed: `make compose-v2` installs it under .make/")


@pytest.mark.parametrize("profile", [[], ["--profile", "celery"]], ids=["default", "celery"])
def test_docker_compose_1_29_accepts_the_file(env_file: Path, profile: list[str]) -> None:
    result = run([*compose_v1(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *profile, "config", "-q"])
    assert result.returncode == 0, result.stderr


def resolved(env_file: Path, *options: str) -> dict[str, Any]:
    result = run([*compose_v2(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *options, "config",
                  "--format", "json"])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_v2_accepts_the_file_and_runs_local_executor_by_default(env_file: Path) -> None:
    config = resolved(env_file)
    assert set(config["services"]) == DEFAULT_SERVICES
    assert config["name"] == read_env_file(env_file)["COMPOSE_PROJECT_NAME"]
    scheduler = config["services"]["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # mk/airflow.env (shared with `make run`) comes in, but the API listens on every interface of its container
    expected = {**read_env_file(PROJECT_ROOT / "mk" / "airflow.env"), "AIRFLOW__API__HOST": "0.0.0.0",
                "AIRFLOW__API__PORT": "8080", "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080/"}
    assert {key: scheduler.get(key) for key in expected} == expected

def test_the_celery_profile_adds_redis_a_worker_and_flower(env_file: Path) -> None:
    config = resolved(env_file, "--profile", "celery")
    assert set(config["services"]) == DEFAULT_SERVICES | CELERY_SERVICES
    worker = config["services"]["airflow-worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_v2_interpolates_the_secrets_and_binds_ports_to_loopback(env_file: Path) -> None:
    values = read_env_file(env_file)
    config = resolved(env_file, "--profile", "celery")
    environment = config["services"]["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__FERNET_KEY"] == values["AIRFLOW__CORE__FERNET_KEY"]
    assert f":{values['POSTGRES_PASSWORD']}@postgres:5432/" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    ports = [(name, port) for name, service in config["services"].items() for port in service.get("ports", [])]
    assert {name for name, _ in ports} == {"airflow-apiserver", "flower", "pushgateway", "prometheus", "grafana"}
    assert {port["host_ip"] for _, port in ports} == {"127.0.0.1"}


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_run_without_a_secret(env_file: Path, tmp_path: Path, secret: str) -> None:
    without = tmp_path / ".env"
    without.write_text("".join(line + "\n" for line in env_file.read_text().splitlines()
                               if not line.startswith(f"{secret}=")))
    result = run([*compose_v2(), "-f", str(COMPOSE_FILE), "--env-file", str(without), "config", "-q"])
    assert result.returncode != 0
    assert f"required variable {secret} is missing a value: set {secret} in .env (make env)" in result.stderr


# --- the rules of the stack ------------------------------------------------------------------------------------

def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    long_running = set(services) - {"airflow-init"}
    assert {name for name in long_running if "test" not in services[name].get("healthcheck", {})} == set()
    assert services["airflow-init"].get("restart") == "no"


def test_services_start_in_order_on_health_and_on_a_finished_init(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if target == "airflow-init" else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {target}"
    for name in AIRFLOW_COMPONENTS | {"airflow-worker", "flower"}:
        assert {"postgres", "airflow-init"} <= set(services[name]["depends_on"]), name


def test_airflow_services_share_one_image_user_and_mounts(services: dict[str, dict[str, Any]]) -> None:
    for name, service in airflow_services(services).items():
        assert service["user"] == "${AIRFLOW_UID:-50000}:0", name
        assert service["build"]["context"] == "."
        assert service["image"] == "${AIRFLOW_IMAGE_NAME:-breast-cancer-pipeline/airflow:3.3.2}"
        volumes = set(service["volumes"])
        assert {"./data/runs:/opt/airflow/runs", "./results:/opt/airflow/results",
                "./secrets:/opt/airflow/secrets:ro", "airflow-auth:/opt/airflow/auth"} <= volumes, name
        assert not [volume for volume in volumes if "secrets" in volume and not volume.endswith(":ro")], name


def test_published_ports_listen_on_loopback_unless_changed(services: dict[str, dict[str, Any]]) -> None:
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert ports
    assert [port for port in ports if not port.startswith("${BIND_ADDRESS:-127.0.0.1}:")] == []
    assert read_env_file(ENV_EXAMPLE)["BIND_ADDRESS"] == "127.0.0.1"
    assert {name for name in INTERNAL_ONLY if "ports" in services[name]} == set()


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {service['image']}"


def test_no_password_or_key_has_a_default(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in SECRETS:
        uses = [match.group(2) for match in INTERPOLATION.finditer(text) if match.group(1) == name]
        assert uses and set(uses) == {":?"}, f"{name} must be required (${{{name}:?...}}) wherever it is used"
    init = compose["services"]["airflow-init"]["environment"]
    assert init["AIRFLOW_ADMIN_PASSWORD"] == "${AIRFLOW_ADMIN_PASSWORD:-}"  # empty: generated by entrypoint.sh
    for name in GENERATED:
        assert read_env_file(ENV_EXAMPLE)[name] == "change-me", name


def test_airflow_is_configured_for_the_stack(services: dict[str, dict[str, Any]]) -> None:
    environment = services["airflow-scheduler"]["environment"]
    assert {key: environment[key] for key in environment if key.startswith("AIRFLOW__METRICS__")} == {
        "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "statsd-exporter",
        "AIRFLOW__METRICS__STATSD_PORT": 9125, "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__LEGACY_NAMES_ON": "True"}
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert environment["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/project/dags"
    assert environment["PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    assert services["airflow-init"]["environment"]["STACK_INIT"] == "true"
    assert services["statsd-exporter"]["volumes"] == ["./monitoring/statsd/mapping.yml:/etc/statsd/mapping.yml:ro"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]


def test_the_pipeline_settings_reach_the_airflow_containers_from_the_env_file(services: dict[str, dict[str, Any]]
                                                                             ) -> None:
    """Every Airflow container reads `.env` (the settings as the user set them, the settings' own defaults for the
    rest) and overrides only what differs inside the containers: a path they have (in the image or mounted), or
    the URL of a service of the stack; no setting's default is written a second time here."""
    mounts = [volume.split(":")[1] for volume in services["airflow-scheduler"]["volumes"]]
    for service in airflow_services(services).values():
        assert service["env_file"] == ["mk/airflow.env", "${COMPOSE_ENV_FILE:-.env}"]
        overridden = {name: str(value) for name, value in service["environment"].items() if name in SETTINGS}
        assert set(overridden) == {"BUNDLED_DATA_PATH", "RUNS_DIR", "RESULTS_DIR", "INCOMING_DIR", "PROCESSED_DIR",
                                   "GOOGLE_APPLICATION_CREDENTIALS", "PUSHGATEWAY_URL"}
        for name, value in overridden.items():
            if "://" in value:
                assert urlsplit(value).hostname in services, f"{name}={value} is not a service of the stack"
            else:
                assert value.startswith(("/opt/airflow/project/", *mounts)), f"{name}={value} is not mounted"


def test_env_example_documents_every_variable_and_holds_valid_settings() -> None:
    documented = read_env_file(ENV_EXAMPLE)
    used = {match.group(1) for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text(encoding="utf-8"))}
    assert used - set(documented) == set()
    assert {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"} <= set(documented)
    assert set(SETTINGS) & set(documented) == set(), "the pipeline's settings are commented out at their defaults"
    load_settings(env_file=ENV_EXAMPLE)  # raises ConfigError naming a bad value


# --- mk/make_env.py --------------------------------------------------------------------------------------------

def make_env(target: Path) -> subprocess.CompletedProcess[str]:
    """mk/make_env.py with the host's python3 (no virtual environment needed)."""
    return run([require_tool("python3"), str(MAKE_ENV), "--env", str(target)])


def test_make_env_creates_env_with_fresh_secrets_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / ".env", tmp_path / "b" / ".env"
    first.parent.mkdir()
    second.parent.mkdir()
    result = make_env(first)
    assert result.returncode == 0, result.stderr
    make_env(second)
    values, other = read_env_file(first), read_env_file(second)
    assert [name for name, value in values.items() if value == "change-me"] == []
    for name in GENERATED:
        assert len(values[name]) >= 32 and values[name] != other[name], name
    Fernet(values["AIRFLOW__CORE__FERNET_KEY"].encode())  # a valid Fernet key
    assert values["AIRFLOW_UID"] == str(os.getuid())
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert f"Airflow login: admin / {values['AIRFLOW_ADMIN_PASSWORD']}" in result.stdout
    unchanged = {name: value for name, value in read_env_file(ENV_EXAMPLE).items()
                 if value != "change-me" and name != "AIRFLOW_UID"}
    assert {name: values[name] for name in unchanged} == unchanged


@pytest.mark.parametrize(("existing", "status", "message"), [
    ("POSTGRES_PASSWORD=mine\n", 0, "exists, left as it is"),
    ("POSTGRES_PASSWORD=change-me\nGRAFANA_ADMIN_PASSWORD=change-me\nCANDIDATES=linear_svm\n", 1,
     "still has the placeholder 'change-me' for: POSTGRES_PASSWORD, GRAFANA_ADMIN_PASSWORD."),
], ids=["complete", "placeholders-left"])
def test_make_env_never_changes_an_existing_env(tmp_path: Path, existing: str, status: int, message: str) -> None:
    target = tmp_path / ".env"
    target.write_text(existing)
    result = make_env(target)
    assert result.returncode == status
    assert message in result.stdout + result.stderr
    assert target.read_text() == existing


# --- Dockerfile ------------------------------------------------------------------------------------------------

def dockerfile_copies() -> list[str]:
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    return [words[-2] for line in text.splitlines() if line.startswith("COPY ")
            for words in [line.split()]]


def test_dockerfile_extends_the_pinned_official_image_airflow_is_pinned_to() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    pinned = re.search(r"^apache-airflow==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    # the base is a build argument (the stack test's stand-in); its default is the official image
    assert "ARG BASE_IMAGE=apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}\nFROM ${BASE_IMAGE}\n" in text
    assert set(re.findall(r"^ARG AIRFLOW_VERSION=(\S+)$", text, re.M)) == {pinned.group(1)}
    assert re.findall(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M) == ["3.11"]
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert compose["x-airflow-common"]["build"]["args"]["AIRFLOW_VERSION"] == pinned.group(1)
    assert 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt' in text


def test_dockerfile_copies_the_code_the_dag_needs_and_nothing_secret() -> None:
    copied = dockerfile_copies()
    assert {"dags/", "plugins/", "etl/", "utils/", "data/BreastCancer.csv", "entrypoint.sh", "requirements.txt",
            "pyproject.toml"} == set(copied)
    assert all((PROJECT_ROOT / path).exists() for path in copied)
    ignore = (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[[line.startswith("#") for line in ignore].index(False)] == "*"  # everything out, then allow-list
    assert {line[1:] for line in ignore if line.startswith("!")} == set(copied)
    assert os.access(ENTRYPOINT, os.X_OK)


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    result = run([hadolint or require_tool("hadolint"), str(PROJECT_ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


# --- mk/stack.mk -----------------------------------------------------------------------------------------------

STACK_TARGETS = {"env", "up", "down", "rebuild", "logs", "logs-%", "ps", "dag-start", "announce-batch", "dag-task-list",
                 "dag-runs", "unpause", "reload", "bash", "python", "clean", "compose-v2", "stack-test", "bench-stack"}


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return run([require_tool("make"), "--no-print-directory", "-C", str(PROJECT_ROOT), *args], stdin=subprocess.DEVNULL)


def test_every_stack_target_is_described_in_make_help() -> None:
    text = (PROJECT_ROOT / "mk" / "stack.mk").read_text(encoding="utf-8")
    described = set(re.findall(r"^([a-zA-Z0-9_%-]+):.*## ", text, re.M))
    assert described == STACK_TARGETS
    help_lines = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout).splitlines()
    listed = {line.split()[0] for line in help_lines if line.strip()}
    assert STACK_TARGETS - listed == set()


EXEC = "COMPOSE --file docker-compose.yml exec --no-TTY"  # no terminal here: no TTY asked for


@pytest.mark.parametrize(("target", "command"), [
    ("up", "COMPOSE --file docker-compose.yml up --detach --build"),
    ("down", "COMPOSE --file docker-compose.yml down"),
    ("logs-airflow-scheduler", "COMPOSE --file docker-compose.yml logs --follow --tail=200 airflow-scheduler"),
    ("dag-start", f"{EXEC} airflow-scheduler airflow dags trigger {DAG_ID}"),
    ("announce-batch", f"{EXEC} --env AIRFLOW_API_URL=http://127.0.0.1:8080 airflow-apiserver python -m etl.announce"),
    ("dag-task-list", f"{EXEC} airflow-scheduler airflow tasks list {DAG_ID}"),
    ("dag-runs", f"{EXEC} airflow-scheduler airflow dags list-runs {DAG_ID}"),
    ("unpause", f"{EXEC} airflow-scheduler airflow dags unpause {DAG_ID}"),
    ("reload", f"{EXEC} airflow-dag-processor airflow dags reserialize"),
    ("bash", f"{EXEC} airflow-scheduler bash"),
    ("python", f"{EXEC} airflow-scheduler python"),
    ("ps", "COMPOSE --file docker-compose.yml ps --all"),
    ("clean", "COMPOSE --file docker-compose.yml down --volumes --remove-orphans --rmi local"),
])
def test_stack_targets_run_compose(target: str, command: str) -> None:
    result = make("-n", target, "COMPOSE=COMPOSE", "HOST_PYTHON=true")
    assert result.returncode == 0, result.stderr
    assert command in [" ".join(line.split()) for line in result.stdout.splitlines()]


def test_stack_targets_take_more_compose_files_up_options_and_arguments() -> None:
    """What the stack test passes: its override, `--pull never`, one-shot logs, a command for `make python`."""
    files = ["COMPOSE=COMPOSE", "HOST_PYTHON=true", "COMPOSE_FILES=docker-compose.yml extra.yml"]
    compose = "COMPOSE --file docker-compose.yml --file extra.yml"
    cases = [(["up", "COMPOSE_UP_FLAGS=--pull never"], f"{compose} up --detach --build --pull never"),
             (["logs-postgres", "LOGS_FOLLOW="], f"{compose} logs --tail=200 postgres"),
             (["python", "ARGS=-c 'print(1)'"], f"{compose} exec --no-TTY airflow-scheduler python -c 'print(1)'")]
    for arguments, command in cases:
        result = make("-n", *arguments, *files)
        assert result.returncode == 0, result.stderr
        assert command in [" ".join(line.split()) for line in result.stdout.splitlines()]


# --- entrypoint.sh ---------------------------------------------------------------------------------------------

def test_shellcheck_accepts_the_entrypoint() -> None:
    result = run([require_tool("shellcheck"), str(ENTRYPOINT)])
    assert result.returncode == 0, result.stdout


@pytest.fixture
def entrypoint_env(tmp_path: Path) -> dict[str, str]:
    """The environment airflow-init gets, with this machine's paths and Airflow on SQLite in tmp_path."""
    inherited = {key: value for key, value in os.environ.items()
                 if not key.startswith("AIRFLOW") and key not in SETTINGS}
    (tmp_path / "dags").mkdir()
    return {**inherited, "STACK_INIT": "true", "IMAGE_ENTRYPOINT": "", "AIRFLOW_BIN": str(AIRFLOW),
            "PYTHON": sys.executable, "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "auth" / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "a-test-secret-of-some-length", "RUNS_DIR": str(tmp_path / "runs"),
            "RESULTS_DIR": str(tmp_path / "results"), "DB_WAIT_INTERVAL": "1"}


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return run([str(ENTRYPOINT), *(command or ("echo", "service started"))], env=env, timeout=300)


LOGIN_CHECK = """
import sys
from fastapi import HTTPException
from airflow.api_fastapi.app import init_auth_manager
from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody
from airflow.api_fastapi.auth.managers.simple.services.login import SimpleAuthManagerLogin

init_auth_manager()  # what the api-server does at start-up: adds a password for any user missing from the file
for password in sys.argv[2:]:
    try:
        SimpleAuthManagerLogin.create_token(LoginBody(username=sys.argv[1], password=password))
        print("login: accepted")
    except HTTPException as error:
        print(f"login: refused {error.status_code}")
"""


def logins(env: dict[str, str], user: str, *passwords: str) -> list[str]:
    """How Airflow's SimpleAuthManager answers a login with each password."""
    result = run([sys.executable, "-c", LOGIN_CHECK, user, *passwords], env=env)
    assert result.returncode == 0, result.stderr
    return [line.removeprefix("login: ") for line in result.stdout.splitlines() if line.startswith("login: ")]


def passwords_file(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])


@pytest.mark.slow
def test_entrypoint_prepares_sqlite_airflow_and_a_second_run_changes_nothing(entrypoint_env: dict[str, str]) -> None:
    first = run_entrypoint(entrypoint_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.endswith("service started\n")
    password = json.loads(passwords_file(entrypoint_env).read_text())["admin"]
    assert f"generated password (shown once, kept in {passwords_file(entrypoint_env)}): {password}" in first.stdout
    assert stat.S_IMODE(passwords_file(entrypoint_env).stat().st_mode) == 0o660

    second = run_entrypoint(entrypoint_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "password kept" in second.stdout and password not in second.stdout
    assert json.loads(passwords_file(entrypoint_env).read_text()) == {"admin": password}
    assert logins(entrypoint_env, "admin", password, "wrong") == ["accepted", "refused 401"]
    assert json.loads(passwords_file(entrypoint_env).read_text()) == {"admin": password}


@pytest.mark.slow
def test_entrypoint_prepares_postgresql_airflow_twice(entrypoint_env: dict[str, str], tmp_path: Path) -> None:
    processes = Processes(tmp_path / "logs")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(processes.stop_all)
        database = cleanup.enter_context(postgres_server(processes, free_port(), "airflow", "pg-secret", "airflow"))
        url = f"postgresql+psycopg2://airflow:pg-secret@127.0.0.1:{database.port}/airflow"
        env = {**entrypoint_env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "AIRFLOW_ADMIN_PASSWORD": "From.env-42"}
        for _ in range(2):
            result = run_entrypoint(env)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "login 'admin': password from AIRFLOW_ADMIN_PASSWORD" in result.stdout
            assert "Database migration done!" in result.stdout + result.stderr
        assert json.loads(passwords_file(env).read_text()) == {"admin": "From.env-42"}


@pytest.mark.slow
def test_entrypoint_gives_up_on_an_unreachable_database_with_a_clear_message(
        entrypoint_env: dict[str, str]) -> None:
    env = {**entrypoint_env, "DB_WAIT_TIMEOUT": "1",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{free_port()}/airflow"}
    result = run_entrypoint(env)
    assert result.returncode == 1
    assert "the metadata database did not answer within 1s (DB_WAIT_TIMEOUT)" in result.stderr
    assert "service started" not in result.stdout


@pytest.mark.parametrize(("setting", "message"), [
    ({"AIRFLOW_ADMIN_PASSWORD": "change-me"}, "AIRFLOW_ADMIN_PASSWORD is still the placeholder 'change-me'"),
    ({"RUNS_DIR": "/dev/null/runs"}, "folder /dev/null/runs is missing or not writable by uid"),
], ids=["placeholder-password", "unusable-runs-folder"])
def test_entrypoint_refuses_a_bad_setting_before_waiting_for_the_database(
        entrypoint_env: dict[str, str], setting: dict[str, str], message: str) -> None:
    # an unreachable database: had the script gone on to wait for it, it would fail with another message
    env = {**entrypoint_env, **setting, "DB_WAIT_TIMEOUT": "0",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{free_port()}/airflow"}
    result = run_entrypoint(env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "waiting" not in result.stdout and "service started" not in result.stdout


@pytest.fixture
def image_entrypoint(tmp_path: Path) -> Path:
    """A stand-in for the official image's /entrypoint that shows what it was given."""
    script = tmp_path / "official-entrypoint"
    script.write_text('#!/usr/bin/env bash\necho "official entrypoint got: $*"\n')
    script.chmod(0o755)
    return script


def test_entrypoint_hands_a_service_command_to_the_image_entrypoint(entrypoint_env: dict[str, str],
                                                                   image_entrypoint: Path) -> None:
    env = {**entrypoint_env, "STACK_INIT": "false", "IMAGE_ENTRYPOINT": str(image_entrypoint),
           "AIRFLOW_BIN": "/nonexistent/airflow"}  # no preparation, so Airflow is never called
    result = run_entrypoint(env, "scheduler", "--skip-serve-logs")
    assert (result.returncode, result.stdout) == (0, "official entrypoint got: scheduler --skip-serve-logs\n")
