"""Breast-cancer diagnosis model: load, preprocess, train, evaluate and publish, one task per step.

    start -> load -> preprocess -> train -> evaluate -> upload -> success_end
    failure_end (one_failed) <- each of the five steps

Both ends are leaves, so a failed step fails the DAG run (success_end becomes upstream_failed) while
failure_end records and sends the alert. Steps exchange files in `<RUNS_DIR>/<run_id>/` and only their small
summaries (paths, checksums, counts) through XCom. "Trigger DAG w/ config" in the UI sets the Params below;
their defaults come from the environment / `.env` (utils/config.py).

This file is configuration: what runs is in etl/airflow_tasks.py and etl/<step>.py, imported when a task runs.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, TriggerRule

from etl import airflow_tasks
from utils.config import MODELS, STORAGE_BACKENDS, Settings, data_url_pattern, load_settings

DAG_ID = "breast_cancer_pipeline"

# Each step: (task id = etl module, retries, execution_timeout). A step retries when its failure can be transient;
# deterministic steps fail at once, since a retry would fail the same way. The first retry waits Airflow's
# [core] default_task_retry_delay (AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY; mk/airflow.env sets it), and each
# later one twice as long, up to MAX_RETRY_DELAY.
STEPS = (
    ("load", 3, timedelta(minutes=10)),        # the download source can be briefly down
    ("preprocess", 0, timedelta(minutes=5)),   # bad data stays bad
    ("train", 1, timedelta(minutes=30)),       # a worker killed for memory may fit on another try
    ("evaluate", 0, timedelta(minutes=5)),     # a failed quality gate stays failed
    ("upload", 3, timedelta(minutes=15)),      # Google Drive can answer 5xx / rate-limit
)
MAX_RETRY_DELAY = timedelta(minutes=20)
FAILURE_END = {"retries": 2, "execution_timeout": timedelta(minutes=2)}  # retries re-send an undelivered alert

DEFAULT_ARGS = {
    "owner": "ml-pipeline",
    "depends_on_past": False,  # a failed run must not block the next one
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": MAX_RETRY_DELAY,
}


def described(name: str, defaults: Settings, **schema: object) -> Param:
    """A Param for the setting `name`: its current value as default, its help text as description."""
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    return Param(getattr(defaults, name), description=f"{field.metadata['env']}: {field.metadata['help']}",
                 **schema)


def run_params(defaults: Settings) -> dict[str, Param]:
    """The settings a user may change per run, validated by Airflow before the run is created."""
    score = {"type": "number", "minimum": 0, "maximum": 1}
    return {
        "model": described("model", defaults, type="string", enum=list(MODELS)),
        "test_size": described("test_size", defaults, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "min_recall": described("min_recall", defaults, **score),
        "min_roc_auc": described("min_roc_auc", defaults, **score),
        "storage_backend": described("storage_backend", defaults, type="string", enum=list(STORAGE_BACKENDS)),
        "data_url": described("data_url", defaults, type="string",
                              pattern=data_url_pattern(defaults.data_allowed_dirs)),
    }


with DAG(
    dag_id=DAG_ID,
    description="Train, check and publish the breast-cancer diagnosis model",
    doc_md=__doc__,
    schedule="@once",  # one run when the stack first sees the DAG; later runs are triggered
    catchup=False,
    max_active_runs=1,  # runs queue: small machines, and results/latest always ends on the newest run
    dagrun_timeout=timedelta(hours=2),  # a hung run cannot hold the single run slot forever
    is_paused_upon_creation=False,  # the stack runs the pipeline as soon as it is up
    default_args=DEFAULT_ARGS,
    params=run_params(load_settings()),
    tags=["ml", "breast-cancer"],
) as dag:
    start = EmptyOperator(task_id="start")
    success_end = EmptyOperator(task_id="success_end")
    failure_end = PythonOperator(task_id="failure_end", python_callable=airflow_tasks.end_with_failure,
                                 trigger_rule=TriggerRule.ONE_FAILED, **FAILURE_END)

    upstream = start
    for step, retries, timeout in STEPS:
        task = PythonOperator(task_id=step, python_callable=airflow_tasks.run_step, op_kwargs={"step": step},
                              retries=retries, execution_timeout=timeout,
                              on_failure_callback=airflow_tasks.record_step_failure)
        upstream >> task >> failure_end
        upstream = task
    upstream >> success_end


if __name__ == "__main__":
    dag.test()
