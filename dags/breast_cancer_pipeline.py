"""Breast-cancer diagnosis model: load, preprocess, train the candidate models, select one, evaluate and publish.

    start -> load -> preprocess -> candidates -> train[<candidate>] x N -> select -> evaluate -> upload -> success_end
    failure_end (one_failed) <- every task from load on but the candidates' training

`train` is a mapped task: one instance per candidate of the run's CANDIDATES (the Param `candidates`), listed by
`candidates`, shown by name in the grid, trained side by side. `select` runs once all of them are done and at
least one succeeded: a failed candidate stays red in the grid and is reported, the run goes on with the others
and can end in success; when none succeeded, select is upstream_failed and the run fails (failure_end alerts).
Both ends are leaves, so a failed step fails the DAG run (success_end becomes upstream_failed) while
failure_end records and sends the alert. Steps exchange files in `<RUNS_DIR>/<run_id>/` and only their small
summaries (counts, checksums, where the run was published) through XCom. "Trigger DAG w/ config" in the UI sets
the Params below; their defaults come from the environment / `.env` (utils/config.py).

This file is configuration: the steps, their order, retries and timeouts are the table in etl/steps.py; what a
task runs is etl/airflow_tasks.py and then etl/<step>.py, imported when the task runs.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, TriggerRule

from etl import airflow_tasks, assets
from etl.steps import DAG_ID, DEFAULT_ARGS, FAILURE_END, STEPS
from utils.config import Settings, data_url_pattern, load_settings

# The settings a user may change per run ("Trigger DAG w/ config"); their types, bounds and choices come from
# utils/config.py. Any other key of a trigger's conf is ignored (etl/airflow_tasks.py).
PER_RUN_SETTINGS = ("candidates", "test_size", "min_recall", "min_roc_auc", "storage_backend", "data_url")
# Retries and timeouts of each step, and the arguments every task shares, are in etl/steps.py.
PARAM_KEYWORDS = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems")
CANDIDATE_LABEL = "{{ task.op_kwargs['candidate'] }}"  # a mapped train instance's name in the grid


def run_params(defaults: Settings) -> dict[str, Param]:
    """A Param for each per-run setting: its current value as default, its description, its JSON schema from
    the settings (and for `data_url` a pattern no wider than DATA_ALLOWED_DIRS), checked before a run is made."""
    schema = Settings.model_json_schema(by_alias=False)["properties"]
    extra = {"data_url": {"pattern": data_url_pattern(defaults.data_allowed_dirs)},
             "candidates": {"uniqueItems": True}}
    fields = Settings.model_fields
    values = {name: getattr(defaults, name) for name in PER_RUN_SETTINGS}
    return {name: Param(list(value) if isinstance(value, tuple) else value,
                        description=f"{fields[name].alias}: {fields[name].description}",
                        **{key: value for key, value in schema[name].items() if key in PARAM_KEYWORDS},
                        **extra.get(name, {}))
            for name, value in values.items()}


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

    upstream, mapped = start, False
    for step in STEPS:
        task_settings = {"task_id": step.name, "python_callable": airflow_tasks.run_step, "retries": step.retries,
                         "execution_timeout": step.timeout}
        if step.per_candidate:  # failure_end is not downstream: the next step decides whether enough succeeded
            listed = PythonOperator(task_id="candidates", python_callable=airflow_tasks.list_candidates,
                                    op_kwargs={"step": step.name})
            upstream >> listed >> failure_end
            task = PythonOperator.partial(**task_settings, map_index_template=CANDIDATE_LABEL).expand(
                op_kwargs=listed.output)
            listed >> task
        else:
            task = PythonOperator(**task_settings, op_kwargs={"step": step.name},
                                  on_failure_callback=airflow_tasks.record_step_failure,
                                  outlets=[assets.champion()] if step.name == "upload" else [],  # scoring's trigger
                                  trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS if mapped
                                  else TriggerRule.ALL_SUCCESS)
            upstream >> task >> failure_end
        upstream, mapped = task, step.per_candidate
    upstream >> success_end


if __name__ == "__main__":
    dag.test()
