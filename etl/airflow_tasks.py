"""The callables behind the DAG's tasks: thin adapters from an Airflow task context to the pipeline.

Each builds Settings from the environment, the run's Params, its run_id and its start time (RUN_STARTED_AT, taken
from the DAG run, so that every step and retry of a run agrees on it), then calls the step. The DAG file imports
this module at parse time, so the steps (pandas, sklearn, the Google client, prometheus_client) and the notifier
are imported only inside the callables.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.config import Settings, load_settings
from utils.errors import PipelineError
from utils.files import run_dir
from utils.logger import ROOT_LOGGER

Context = Mapping[str, Any]  # the Airflow task context
# The settings a run's Params may change (the DAG declares a validated Param for each). Any other key of a
# trigger's conf is ignored: Airflow adds undeclared conf keys to the params unvalidated, and they must not
# widen DATA_ALLOWED_DIRS, redirect the alert webhook or point BUNDLED_DATA_PATH at a key file.
PER_RUN_SETTINGS = frozenset({"model", "test_size", "min_recall", "min_roc_auc", "storage_backend", "data_url"})


def run_start(context: Context) -> datetime:
    """When the run logically started: its logical date, or for a manual run without one, when it was due."""
    dag_run = context["dag_run"]
    return dag_run.logical_date or dag_run.run_after


def settings_for(context: Context) -> Settings:
    """Settings from the environment, overridden by the run's Params (those in PER_RUN_SETTINGS), its run_id and
    its start time."""
    overrides = {name: value for name, value in context["params"].items() if name in PER_RUN_SETTINGS}
    settings = load_settings(**overrides, run_id=context["run_id"], run_started_at=run_start(context).isoformat())
    logging.getLogger(ROOT_LOGGER).setLevel(settings.log_level)
    return settings


def settings_and_folder(context: Context) -> tuple[Settings, Path]:
    """The run's settings and working folder."""
    settings = settings_for(context)
    return settings, run_dir(settings.runs_dir, settings.run_id)


def run_step(step: str, **context: Any) -> dict[str, Any]:
    """Run `etl.<step>.run` for this DAG run; its small summary becomes the task's XCom. A permanent error (not
    `transient`: a 404, bad settings, bad data, a failed quality gate) fails the task at once, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from etl import notify
    from utils.steps import execute_step  # pulls in prometheus_client: keep it out of DAG parsing

    try:
        settings, folder = settings_and_folder(context)
        notify.clear_failure(folder)
        step_module = importlib.import_module(f"etl.{step}")
        return execute_step(step, step_module.run, settings)
    except PipelineError as exc:
        if exc.transient:
            raise
        raise AirflowFailException(str(exc)) from exc


def step_error(context: Context) -> BaseException | None:
    """The error that failed the task: the pipeline's own one also when run_step wrapped it to stop retries."""
    error = context.get("exception")
    cause = getattr(error, "__cause__", None)
    return cause if isinstance(cause, PipelineError) and str(cause) == str(error) else error


def record_step_failure(context: Context) -> None:
    """on_failure_callback of every step: keep the error in the run's folder for `failure_end`."""
    from etl import notify

    ti = context["ti"]
    error = step_error(context)
    _, folder = settings_and_folder(context)
    failure = notify.StepFailure(task_id=ti.task_id, error_type=type(error).__name__ if error else "unknown",
                                 error=str(error) if error else "", try_number=ti.try_number, log_url=ti.log_url)
    notify.record_failure(folder, failure)


def failed_task_ids(context: Context) -> list[str]:
    """The tasks of this DAG run that failed themselves (not the ones skipped as upstream_failed)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(task_id for task_id, state in states.items() if state == "failed")


def end_with_failure(**context: Any) -> dict[str, Any]:
    """failure_end: mark the run's folder failed and send the alert; returns the alert."""
    from etl import notify

    settings, folder = settings_and_folder(context)
    alert = notify.build_alert(context["dag"].dag_id, settings.run_id, failed_task_ids(context),
                               notify.read_failure(folder), folder)
    notify.mark_failed(folder, alert)
    notify.send_alert(alert, settings.alert_webhook_url)
    return alert
