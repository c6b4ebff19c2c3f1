"""What the stack tests share (docs/stack-test.md): the Docker engine, the stand-in images, an HTTP server and the
Drive fake on the host that the containers reach, and the test's settings, for the package: the engine this test
started stops when the package's tests are done. Each module brings up its own stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker_stack import (
    CONTAINERS_SEE_HOST_AS,
    PROJECT_NAME,
    HostServer,
    docker,
    docker_engine,
    ensure_stand_ins,
    host_handler,
)
from tests.support.drive_fake import FakeDrive
from tests.support.servers import free_port, serving


def bridge_address() -> str:
    """This machine's address on Docker's default bridge: where host.docker.internal (host-gateway) points."""
    return docker("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


@pytest.fixture(scope="package")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack-logs")


@pytest.fixture(scope="package")
def engine(log_dir: Path) -> Iterator[None]:
    """A Docker engine that answers: the one running, or dockerd started here and stopped at the end."""
    with docker_engine(log_dir):
        yield


@pytest.fixture(scope="package")
def stand_ins(engine: None) -> dict[str, str]:
    """The stand-in images, built only when their inputs changed."""
    report = ensure_stand_ins()
    print(f"\nstack test: stand-in images {report}")
    return report


@pytest.fixture(scope="package")
def host_server(engine: None) -> Iterator[HostServer]:
    state = HostServer()
    with serving(host_handler(state), host=bridge_address()) as httpd:
        state.port = httpd.server_port
        yield state


@pytest.fixture(scope="package")
def drive(engine: None) -> Iterator[FakeDrive]:
    """The Drive fake on the bridge address."""
    with FakeDrive(host=bridge_address(), reached_as=CONTAINERS_SEE_HOST_AS) as fake:
        yield fake


@pytest.fixture(scope="package")
def drive_folder(drive: FakeDrive) -> str:
    """The Shared Drive folder (GDRIVE_FOLDER_ID) that receives the runs."""
    return drive.create_folder("pipeline runs", shared_drive=True)


@pytest.fixture(scope="package")
def settings(host_server: HostServer, drive: FakeDrive, drive_folder: str) -> dict[str, str]:
    """The test's settings: its own project name, image name and free ports; local storage unless a run asks
    for Drive (then the fake's folder, through its API root); the image's own copy of the data (no internet
    here); alerts to the host server."""
    ports = {name: str(free_port()) for name in ("AIRFLOW_API_PORT", "GRAFANA_PORT", "PROMETHEUS_PORT",
                                                  "PUSHGATEWAY_PORT", "FLOWER_PORT")}
    return {"COMPOSE_PROJECT_NAME": PROJECT_NAME, "AIRFLOW_IMAGE_NAME": f"{PROJECT_NAME}/airflow:latest", **ports,
            "STORAGE_BACKEND": "local", "GDRIVE_FOLDER_ID": drive_folder, "GDRIVE_API_ROOT": drive.root_url,
            "DATA_URL": "file:///opt/airflow/project/data/BreastCancer.csv", "DOWNLOAD_RETRIES": "0",
            "ALERT_WEBHOOK_URL": host_server.url("/alert")}


