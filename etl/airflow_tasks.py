"""The callables behind the DAG's tasks: thin adapters from an Airflow task context to the pipeline.

Each builds the run (Airflow's run id; its start is the run's logical date, so that every step and retry of a run
agrees on the name it publishes under) and the settings (the environment, overridden by the Params the DAG
declares), then runs the step through etl/pipeline.py. The DAG file imports this module at parse time, so the
steps (pandas, sklearn, the Google client, prometheus_client) and the notifier are imported only inside them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from utils.errors import PipelineError
from utils.logger import ROOT_LOGGER

if TYPE_CHECKING:  # imported when a task runs: the DAG file imports this module at parse time
    from etl.run_folder import RunFolder
    from utils.config import Settings

COMPARE_STEP, PROMOTE_STEP = "compare", "promote"  # etl/steps.py's steps whose tasks the approval sits between

Context = Mapping[str, Any]  # the Airflow task context
APPROVAL_TASK = "approve"  # the human-in-the-loop task between upload and promote (APPROVAL_REQUIRED)
APPROVE, REJECT = "Approve", "Reject"  # its options; no answer before APPROVAL_TIMEOUT counts as REJECT


def run_start(context: Context) -> datetime:
    """When the run logically started: its logical date, or for a manual run without one, when it was due."""
    dag_run = context["dag_run"]
    return dag_run.logical_date or dag_run.run_after


def settings_for(context: Context) -> Settings:
    """Settings from the environment, overridden by the run's values of the Params the DAG declares. Airflow also
    hands over undeclared keys of a trigger's conf, unvalidated: they are ignored, so that a trigger cannot
    widen DATA_ALLOWED_DIRS, redirect the alert webhook or point BUNDLED_DATA_PATH at a key file. `data_url` equal
    to DATA_URL redacted (the Param's default) means DATA_URL with its credentials; one with credentials is refused."""
    from utils.config import load_settings, per_run_data_url

    declared = context["dag"].params.keys()
    overrides = {name: value for name, value in context["params"].items() if name in declared}
    if "data_url" in overrides:
        overrides["data_url"] = per_run_data_url(overrides["data_url"], load_settings().data_url)
    settings = load_settings(**overrides)
    logging.getLogger(ROOT_LOGGER).setLevel(settings.log_level)
    return settings


def run_and_settings(context: Context) -> tuple[RunFolder, Settings]:
    """This DAG run's folder and settings."""
    from etl.run_folder import RunFolder

    settings = settings_for(context)
    return RunFolder.open(settings.runs_dir, context["run_id"], run_start(context)), settings


def list_candidates(step: str, **context: Any) -> list[dict[str, str]]:
    """The keyword arguments of each mapped task instance of the per-candidate step `step`: one per candidate of
    this run's CANDIDATES (the Param `candidates` overrides the environment)."""
    return [{"step": step, "candidate": name} for name in settings_for(context).candidates]


@contextlib.contextmanager
def failing_at_once() -> Iterator[None]:
    """Turn a permanent PipelineError into AirflowFailException (no retries); transient ones propagate as they are."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except PipelineError as exc:
        if exc.transient:
            raise
        raise AirflowFailException(str(exc)) from exc


def run_step(step: str, candidate: str | None = None, **context: Any) -> dict[str, Any]:
    """Run the step `step` (etl/steps.py; a per-candidate step for `candidate`) for this DAG run; its small summary
    becomes the task's XCom. A permanent error (not `transient`: a 404, bad settings, bad data, a candidate that
    cannot be fitted, a failed quality gate) fails the task at once, without retries."""
    from airflow.sdk.exceptions import AirflowSkipException

    from etl import notify
    from etl.pipeline import execute_step
    from etl.steps import STEP

    with failing_at_once():
        run, settings = run_and_settings(context)
        notify.clear_failure(run.path)
        inputs = {"approval": approval_answer(context)} if step == PROMOTE_STEP else {}
        summary = execute_step(STEP[step], run, settings, candidate, **inputs)
    if step == PROMOTE_STEP and not summary["promoted"]:
        raise AirflowSkipException(f"not promoted: {summary['reason']}")  # the DAG run still succeeds
    return summary


def approval_answer(context: Context) -> dict[str, Any] | None:
    """The reviewer's answer as promote records it (`approved`, `by`, `reason`); None when the DAG has no approval
    task or it was skipped (compare kept the champion: nothing to approve)."""
    if APPROVAL_TASK not in context["dag"].task_ids:
        return None
    answer = context["ti"].xcom_pull(task_ids=APPROVAL_TASK)
    if not answer:
        return None
    user = answer.get("responded_by_user") or {}
    approved = answer.get("chosen_options") == [APPROVE]
    if not user:
        return {"approved": False, "by": None, "reason": "approval timed out (APPROVAL_TIMEOUT): counted as a "
                "rejection; the champion stays"}
    name = user.get("name") or user.get("id")
    return {"approved": approved, "by": name,
            "reason": f"approved by {name}" if approved else f"rejected by {name}; the champion stays"}


def skip_unless_promoting(context: Context) -> None:
    """pre_execute of the approval task: nobody is asked when compare already kept the champion."""
    from airflow.sdk.exceptions import AirflowSkipException

    compared = context["ti"].xcom_pull(task_ids=COMPARE_STEP) or {}
    if compared.get("decision") != "promote":
        raise AirflowSkipException(f"nothing to approve: {compared.get('reason', 'compare kept the champion')}")


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
    run, _ = run_and_settings(context)
    failure = notify.StepFailure(task_id=ti.task_id, error_type=type(error).__name__ if error else "unknown",
                                 error=str(error) if error else "", try_number=ti.try_number, log_url=ti.log_url)
    notify.record_failure(run.path, failure)


def failed_task_ids(context: Context) -> list[str]:
    """The tasks of this DAG run that failed themselves (not the ones skipped as upstream_failed)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(task_id for task_id, state in states.items() if state == "failed")


def end_with_failure(**context: Any) -> dict[str, Any]:
    """failure_end: record the run in the history (not promoted, and why), mark the run's folder failed and send
    the alert, once per failure: a retry sends it again only when no earlier try delivered it. When the history
    cannot be written (a full results disk) the alert says so and why, and the task still fails, so that its
    retries write the history; returns the alert."""
    from etl import champion, notify

    run, settings = run_and_settings(context)
    alert = notify.build_alert(context["dag"].dag_id, run.run_id, failed_task_ids(context),
                               notify.read_failure(run.path), run.path)
    try:
        champion.record_failed_run(run, settings, alert["task_id"],
                                  f"{alert['error_type']}: {alert['error']}" if alert["error_type"] else alert["text"])
    except BaseException as exc:  # also a timeout: the alert goes all the same, then the error
        alert = notify.not_in_history(alert, exc)
        raise
    finally:
        notify.alert_once(run.path, alert, settings.alert_webhook_url)
    return alert


def score_batches(**context: Any) -> dict[str, Any]:
    """The scoring DAG's task: score every pending batch with the champion and rescore the stale ones
    (etl/scoring.py); a bad batch fails the task after the others are published, without retries."""
    from etl import scoring

    with failing_at_once():
        return scoring.score_pending(settings_for(context))
