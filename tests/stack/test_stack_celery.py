"""The `celery` profile for real (docs/stack-test.md): Redis and two Celery workers in place of the LocalExecutor,
brought up by `make up` with COMPOSE_PROFILES=celery and AIRFLOW_EXECUTOR=CeleryExecutor, as docs/stack.md tells a
user; one run's tasks execute on both workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_api import AirflowApi
from tests.support.docker_stack import (
    DAG_ID,
    RUN_SECONDS,
    Stack,
    docker,
    finished,
    running_stack,
    stack_api,
    triggered_run,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.stack

WORKERS = 2


@pytest.fixture(scope="module")
def stack(stand_ins: dict[str, str], settings: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    """The celery profile with two workers, up from fresh volumes for this module."""
    celery = {**settings, "COMPOSE_PROFILES": "celery", "AIRFLOW_EXECUTOR": "CeleryExecutor"}
    with running_stack(celery, log_dir, up_flags=f"--scale airflow-worker={WORKERS}") as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowApi:
    return stack_api(stack)


def workers(stack: Stack) -> list[dict[str, object]]:
    """The facts of the airflow-worker containers."""
    return [facts for facts in stack.all_containers() if facts["Service"] == "airflow-worker"]


def test_redis_both_workers_and_flower_are_healthy(stack: Stack) -> None:
    running = workers(stack)
    assert len(running) == WORKERS and all(worker["Health"] == "healthy" for worker in running), running
    containers = stack.containers()
    assert containers["redis"]["Health"] == containers["flower"]["Health"] == "healthy"


def test_one_runs_tasks_execute_on_both_workers(stack: Stack, api: AirflowApi) -> None:
    run = triggered_run(api, {})
    assert run["state"] == "success", run
    answer = api.call(f"{api.run_path(DAG_ID, run['dag_run_id'])}/taskInstances?limit=100")
    # Airflow records the fully qualified host name; its first label is the container's host name
    hosts = {ti["hostname"].split(".")[0] for ti in answer["task_instances"] if ti["hostname"]}
    assert hosts == {worker["Hostname"] for worker in workers(stack)}, answer["task_instances"]


def test_a_worker_killed_mid_task_has_its_task_retried_on_the_other_worker_and_the_run_published_once(
        stack: Stack, api: AirflowApi) -> None:
    """SIGKILL to the worker container running `train`: nothing tells Airflow, so the scheduler fails the task when
    its heartbeats stop (TASK_INSTANCE_HEARTBEAT_TIMEOUT, 60 s in mk/airflow.env) and retries it; the other worker
    runs the retry, the run succeeds and is published once. The killed worker is started again afterwards."""
    run_id = api.trigger(DAG_ID, {"candidates": ["random_forest"]})
    tries = f"{api.run_path(DAG_ID, run_id)}/taskInstances/train/0/tries"

    def running_train() -> dict | None:
        return next((ti for ti in api.call(tries)["task_instances"] if ti["state"] == "running" and ti["hostname"]),
                    None)

    host = wait_until(running_train, RUN_SECONDS, "train to run on a worker", interval=0.3)["hostname"].split(".")[0]
    [victim] = [worker for worker in workers(stack) if worker["Hostname"] == host]
    docker("kill", "--signal", "KILL", str(victim["ID"]))
    try:
        run = finished(api, run_id)
    finally:
        docker("start", str(victim["ID"]))
    assert run["state"] == "success", run
    attempts = [(ti["try_number"], ti["state"], ti["hostname"].split(".")[0]) for ti in api.call(tries)[
        "task_instances"]]
    [survivor] = [worker["Hostname"] for worker in workers(stack) if worker["ID"] != victim["ID"]]
    assert attempts == [(1, "failed", host), (2, "success", survivor)], attempts
    assert len(stack.published_folders(run_id)) == 1
    wait_until(lambda: all(worker["Health"] == "healthy" for worker in workers(stack)), 180,
               "the killed worker to be healthy again", interval=3)
