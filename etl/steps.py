"""The pipeline's steps in one table: their order, what each consumes and produces, and how Airflow retries it.

The DAG, the in-process pipeline, the command line, the bench and the tests all read this table. It imports no
heavy library and no step (the DAG file imports it at parse time): a step's code, `etl/<name>.py`, is imported
when the step runs (`Step.function`).

A step `per_candidate` runs once for each model of the CANDIDATES setting, each in the candidate's own folder
`candidates/<name>/` (its `produces` are named inside it): in Airflow as mapped task instances side by side, in
the in-process pipeline and the command line as a loop. A failed candidate does not stop the others; the next
step works with the candidates that succeeded (and fails when none did).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from etl import catalog

if TYPE_CHECKING:
    from etl.step_result import StepResult

DAG_ID = "breast_cancer_pipeline"
# What the tasks of both DAGs share. The first retry waits Airflow's [core] default_task_retry_delay
# (AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY; mk/airflow.env sets it), each later one twice as long, up to
# MAX_RETRY_DELAY.
MAX_RETRY_DELAY = timedelta(minutes=20)
DEFAULT_ARGS = {
    "owner": "ml-pipeline",
    "depends_on_past": False,  # a failed run must not block the next one
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": MAX_RETRY_DELAY,
}
FAILURE_END = {"retries": 2, "execution_timeout": timedelta(minutes=2)}  # retries re-send an undelivered alert


@dataclass(frozen=True)
class Step:
    """One step: its code, its files, and its retries (a step retries only when its failure can be transient)."""

    name: str  # also its module: etl/<name>.py, whose `run` the runner calls (imported only then)
    consumes: tuple[str, ...]  # files of earlier steps it reads; their checksums go into its record
    produces: tuple[str, ...]  # its outputs, its record last
    retries: int
    timeout: timedelta
    retry_reason: str
    per_candidate: bool = False  # once per candidate model, in `candidates/<name>/`

    def function(self) -> Callable[..., StepResult]:
        """The step's `run(run, settings, ...)`, from its module `etl.<name>`, imported now: the table itself imports
        no step, so that the DAG file parses without pandas or sklearn and no step's import leads back here."""
        return importlib.import_module(f"etl.{self.name}").run

    @property
    def record(self) -> str:
        """The step's record: the sha256 of what it consumed and produced, and its own facts."""
        return self.produces[-1]

    def outputs(self, candidate: str | None = None) -> tuple[str, ...]:
        """The run-folder paths of what the step (for a per-candidate step: for `candidate`) writes, record last."""
        if not self.per_candidate:
            return self.produces
        if candidate is None:
            raise ValueError(f"step {self.name} runs per candidate: name the candidate")
        return tuple(catalog.candidate_file(candidate, name) for name in self.produces)


STEPS = (
    Step("load", consumes=(), produces=(catalog.RUN_INFO, catalog.RAW, catalog.LOAD_INFO),
         retries=3, timeout=timedelta(minutes=10), retry_reason="the download source can be briefly down"),
    Step("preprocess", consumes=(catalog.RAW,),
         produces=(catalog.VALIDATION_REPORT, catalog.TRAIN, catalog.TEST, catalog.TRAINING_PROFILE,
                   catalog.TRAINING_IDS, catalog.PREPROCESS_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="bad data stays bad"),
    Step("train", consumes=(catalog.TRAIN,),
         produces=(catalog.CANDIDATE_MODEL, catalog.OUT_OF_FOLD, catalog.TRAIN_INFO), per_candidate=True,
         retries=1, timeout=timedelta(minutes=30), retry_reason="a worker killed for memory may fit on another try"),
    Step("select", consumes=(catalog.TRAIN,),
         produces=(catalog.MODEL, catalog.REPEATED_OUT_OF_FOLD, catalog.SELECT_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="the same scores choose the same model"),
    Step("evaluate", consumes=(catalog.MODEL, catalog.REPEATED_OUT_OF_FOLD, catalog.TEST),
         produces=(catalog.METRICS, *catalog.CHARTS, catalog.REPORT, catalog.EVALUATE_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="a failed quality gate stays failed"),
    Step("compare", consumes=(catalog.MODEL, catalog.TEST, catalog.METRICS, catalog.TRAIN, catalog.VALIDATION_REPORT,
                              *catalog.CHARTS),
         produces=(catalog.COMPARISON, catalog.COMPARISON_REPORT, catalog.MODEL_CARD, catalog.COMPARE_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="a missing or altered champion stays so"),
    Step("upload", consumes=catalog.PUBLISHED, produces=(catalog.MANIFEST, catalog.UPLOAD_INFO),
         retries=3, timeout=timedelta(minutes=15), retry_reason="Google Drive can answer 5xx / rate-limit"),
    Step("promote", consumes=(catalog.COMPARISON, catalog.MANIFEST), produces=(catalog.PROMOTE_INFO,),
         retries=3, timeout=timedelta(minutes=5), retry_reason="Google Drive can answer 5xx / rate-limit"),
)
STEP = {step.name: step for step in STEPS}
PRODUCED_BY = {name: step.name for step in STEPS if not step.per_candidate for name in step.produces}


def produced_by(name: str) -> str:
    """The step that writes the run-folder file `name` (a candidate's file: the per-candidate step)."""
    if name.startswith(f"{catalog.CANDIDATES_DIR}/"):
        return next(step.name for step in STEPS if step.per_candidate)
    return PRODUCED_BY[name]
