"""Breast-cancer diagnosis model: load, preprocess, train the candidate models, select one, evaluate, compare
with the champion, publish and promote.

    start -> load -> preprocess -> candidates -> train[<candidate>] x N -> select -> evaluate -> compare -> upload
          [-> approve] -> promote -> success_end
    failure_end (one_failed) <- every task from load on but the candidates' training

`train` is a mapped task: one instance per candidate of the run's CANDIDATES (the Param `candidates`), listed by
`candidates`, shown by name in the grid, trained side by side. `select` runs once all of them are done and at
least one succeeded: a failed candidate stays red in the grid and is reported, the run goes on with the others
and can end in success; when none succeeded, select is upstream_failed and the run fails (failure_end alerts).
Both ends are leaves, so a failed step fails the DAG run (success_end becomes upstream_failed) while
failure_end records and sends the alert. `promote` ends skipped when the run's model did not become the champion
(worse than the champion, rejected, or the approval timed out); the run still succeeds (success_end: none_failed).
With APPROVAL_REQUIRED (read when this file is parsed) `approve`, a human-in-the-loop task, asks a reviewer in the
UI or the REST API; it is skipped when compare kept the champion, and no answer within APPROVAL_TIMEOUT counts as
a rejection. Steps exchange files in `<RUNS_DIR>/<run_id>/` and only their small
summaries (counts, checksums, where the run was published) through XCom. "Trigger DAG w/ config" in the UI sets
the Params below; their defaults come from the environment / `.env` (utils/config.py).

This file is configuration: the graph below is the step table's order (etl/steps.py, which also gives each step's
retries and timeout; tests/unit/test_dag.py keeps the two in step); what a task runs is etl/airflow_tasks.py and
then etl/<step>.py, imported when the task runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseOperator, Param, TriggerRule, chain

from etl import airflow_tasks, assets
from etl.steps import DAG_ID, DEFAULT_ARGS, FAILURE_END, STEP
from utils import dag_settings

# Retries and timeouts of each step, and the arguments every task shares, are in etl/steps.py.
CANDIDATE_LABEL = "{{ task.op_kwargs['candidate'] }}"  # a mapped train instance's name in the grid
REVIEW = ("{{ ti.xcom_pull(task_ids='compare')['review'] }}\n\n"
          "Published to: {% for backend, location in ti.xcom_pull(task_ids='upload')['destinations'].items() %}"
          "{{ backend }} {{ location }}{{ '; ' if not loop.last }}{% endfor %}")  # what the reviewer reads


def run_params(values: dict[str, Any]) -> dict[str, Param]:
    """A Param for each per-run setting (utils/config.py's PER_RUN_SETTINGS): its current value as default, its
    description and JSON schema, checked before a run is made. Defaults are stored in the metadata database and
    shown in the Trigger form, so `data_url`'s is DATA_URL redacted; a run with that default reads DATA_URL itself
    (etl/airflow_tasks.py). Any other key of a trigger's conf is ignored there."""
    return {name: Param(**spec) for name, spec in dag_settings.param_specs(values).items()}


def approval_task(timeout_minutes: float) -> BaseOperator:
    """The reviewer's Approve / Reject between upload and promote; no answer in time is a Reject. Imported only
    when APPROVAL_REQUIRED asks for it, so that the DAG without it parses no faster or slower than before."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    return HITLOperator(task_id=airflow_tasks.APPROVAL_TASK, subject="Make run {{ run_id }} the champion?",
                        body=REVIEW, options=[airflow_tasks.APPROVE, airflow_tasks.REJECT],
                        defaults=[airflow_tasks.REJECT], response_timeout=timedelta(minutes=timeout_minutes),
                        pre_execute=airflow_tasks.skip_unless_promoting,
                        on_failure_callback=airflow_tasks.record_step_failure)


def step_task(name: str, **options: Any) -> PythonOperator:
    """The task of the step `name`: its retries and timeout from the step table (etl/steps.py), its failure kept
    for failure_end."""
    step = STEP[name]
    return PythonOperator(task_id=name, python_callable=airflow_tasks.run_step, op_kwargs={"step": name},
                          retries=step.retries, execution_timeout=step.timeout,
                          on_failure_callback=airflow_tasks.record_step_failure, **options)


SETTINGS = dag_settings.current()  # the settings read at parse time, without the settings model
APPROVAL_REQUIRED = SETTINGS["approval_required"]

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
    params=run_params(SETTINGS),
    tags=["ml", "breast-cancer"],
) as dag:
    start = EmptyOperator(task_id="start")
    load = step_task("load")
    preprocess = step_task("preprocess")
    candidates = PythonOperator(task_id="candidates", python_callable=airflow_tasks.list_candidates,
                                op_kwargs={"step": "train"})
    train = PythonOperator.partial(task_id="train", python_callable=airflow_tasks.run_step,
                                   retries=STEP["train"].retries, execution_timeout=STEP["train"].timeout,
                                   map_index_template=CANDIDATE_LABEL).expand(op_kwargs=candidates.output)
    # select runs once every candidate is done and one succeeded; a failed candidate is reported, not fatal
    select = step_task("select", trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    evaluate = step_task("evaluate")
    compare = step_task("compare")
    upload = step_task("upload")
    # an event of the champion Asset (the scoring DAG's trigger) only when promote succeeds: a new champion;
    # after a skipped approval (compare kept the champion) promote still records the run in the history
    promote = step_task("promote", outlets=[assets.champion()],
                        trigger_rule=TriggerRule.NONE_FAILED if APPROVAL_REQUIRED else TriggerRule.ALL_SUCCESS)
    success_end = EmptyOperator(task_id="success_end", trigger_rule=TriggerRule.NONE_FAILED)
    failure_end = PythonOperator(task_id="failure_end", python_callable=airflow_tasks.end_with_failure,
                                 trigger_rule=TriggerRule.ONE_FAILED, **FAILURE_END)

    start >> load >> preprocess >> candidates >> train >> select >> evaluate >> compare >> upload
    reviewed = [approval_task(SETTINGS["approval_timeout"])] if APPROVAL_REQUIRED else []
    chain(upload, *reviewed, promote, success_end)
    [load, preprocess, candidates, select, evaluate, compare, upload, *reviewed, promote] >> failure_end  # not train


if __name__ == "__main__":
    dag.test()
