"""Score new samples with the champion model, triggered by Assets.

    start -> score_batches -> success_end
    failure_end (one_failed) <- score_batches

Scheduled on `champion | incoming` (etl/assets.py): a run starts when the training DAG publishes a new
champion, and when a batch of samples is handed off into INCOMING_DIR (written as `<name>.csv.part`, then renamed
to `<name>.csv`): the incoming Asset's watcher, run by the triggerer, lists the folder every 5 seconds
(etl/incoming_watch.py), so the batch is scored within about 15 seconds. `make announce-batch` remains for scripted
use (it posts an event of the same Asset: POST /api/v2/assets/events with the incoming Asset's id).
`score_batches` scores every CSV waiting in INCOMING_DIR, publishes its predictions and drift summary under
RESULTS_DIR/scoring/<batch>/ (and to Drive when configured), then moves it to PROCESSED_DIR; after a new champion
it rescores the processed batches (etl/scoring.py). A bad batch is left in INCOMING_DIR with `<batch>.error.json`
and fails the run once the others are published.

This file is configuration: what the task runs is etl/airflow_tasks.py and then etl/scoring.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, TriggerRule

from etl import airflow_tasks, assets
from etl.steps import DEFAULT_ARGS, FAILURE_END
from utils import dag_settings

SCORE_RETRIES = 3  # only transient errors retry (Drive answering 5xx): bad data and bad settings fail at once
# The settings read at parse time; a relative folder is relative to the project, as the settings model reads it.
INCOMING_DIR = dag_settings.PROJECT_ROOT / Path(dag_settings.current()["incoming_dir"]).expanduser()

with DAG(
    dag_id=assets.SCORING_DAG_ID,
    description="Score the incoming batches of samples with the champion model and measure their drift",
    doc_md=__doc__,
    schedule=assets.champion() | assets.incoming(INCOMING_DIR),
    catchup=False,
    max_active_runs=1,  # one run scores at a time; events that arrive meanwhile start the next run
    dagrun_timeout=timedelta(hours=1),
    is_paused_upon_creation=False,
    default_args=DEFAULT_ARGS,
    tags=["ml", "breast-cancer", "scoring"],
) as dag:
    start = EmptyOperator(task_id="start")
    score = PythonOperator(task_id="score_batches", python_callable=airflow_tasks.score_batches,
                           retries=SCORE_RETRIES, execution_timeout=timedelta(minutes=30),
                           on_failure_callback=airflow_tasks.record_step_failure)
    success_end = EmptyOperator(task_id="success_end")
    failure_end = PythonOperator(task_id="failure_end", python_callable=airflow_tasks.end_with_failure,
                                 trigger_rule=TriggerRule.ONE_FAILED, **FAILURE_END)
    start >> score >> [success_end, failure_end]


if __name__ == "__main__":
    dag.test()
