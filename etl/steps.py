"""The pipeline's steps in one table: their order, what each consumes and produces, and how Airflow retries it.

The DAG, the in-process pipeline, the command line, the bench and the tests all read this table. It imports no
heavy library (the DAG file imports it at parse time): each step's code is imported when the step runs, by the
two-line function named in its row (go to its definition, then to the step's `run`).

A step `per_candidate` runs once for each model of the CANDIDATES setting, each in the candidate's own folder
`candidates/<name>/` (its `produces` are named inside it): in Airflow as mapped task instances side by side, in
the in-process pipeline and the command line as a loop. A failed candidate does not stop the others; the next
step works with the candidates that succeeded (and fails when none did).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from etl import catalog

if TYPE_CHECKING:
    from etl.run_folder import RunFolder
    from utils.config import Settings
    from utils.errors import PipelineError
    from utils.telemetry import Sample

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
class StepResult:
    """What a step's `run` hands back: fields for its record (`<step>.json`, beside the checksums the runner
    adds), the small summary a person reads in XCom and the CLI, the gauges to push, and `failure`: an error to
    raise once the outputs are recorded (a failed quality gate: its metrics are kept, and pushed, for people)."""

    record: dict[str, Any]
    summary: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    failure: PipelineError | None = None


    consumed: tuple[str, ...] = ()  # inputs known only when the step ran (select: the candidates that succeeded)


StepFunction = Callable[..., StepResult]  # (run, settings, **inputs from the orchestrator) -> StepResult
CandidateStepFunction = Callable[["RunFolder", "Settings", str], StepResult]  # also given the candidate's name


@dataclass(frozen=True)
class Step:
    """One step: its code, its files, and its retries (a step retries only when its failure can be transient)."""

    name: str
    run: StepFunction | CandidateStepFunction
    consumes: tuple[str, ...]  # files of earlier steps it reads; their checksums go into its record
    produces: tuple[str, ...]  # its outputs, its record last
    retries: int
    timeout: timedelta
    retry_reason: str
    per_candidate: bool = False  # once per candidate model, in `candidates/<name>/`

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


def _load(run: RunFolder, settings: Settings) -> StepResult:
    from etl import load
    return load.run(run, settings)


def _preprocess(run: RunFolder, settings: Settings) -> StepResult:
    from etl import preprocess
    return preprocess.run(run, settings)


def _train(run: RunFolder, settings: Settings, candidate: str) -> StepResult:
    from etl import train
    return train.run(run, settings, candidate)


def _select(run: RunFolder, settings: Settings) -> StepResult:
    from etl import select
    return select.run(run, settings)


def _evaluate(run: RunFolder, settings: Settings) -> StepResult:
    from etl import evaluate
    return evaluate.run(run, settings)


def _compare(run: RunFolder, settings: Settings) -> StepResult:
    from etl import compare
    return compare.run(run, settings)


def _upload(run: RunFolder, settings: Settings) -> StepResult:
    from etl import upload
    return upload.run(run, settings)


def _promote(run: RunFolder, settings: Settings, approval: dict[str, Any] | None = None) -> StepResult:
    from etl import promote
    return promote.run(run, settings, approval)


PUBLISHED = (catalog.MODEL, catalog.METRICS, *catalog.CHARTS, catalog.REPORT, catalog.VALIDATION_REPORT,
             catalog.TRAINING_PROFILE, catalog.TRAINING_IDS, catalog.COMPARISON,
             catalog.COMPARISON_REPORT)
STEPS = (
    Step("load", _load, consumes=(), produces=(catalog.RUN_INFO, catalog.RAW, catalog.LOAD_INFO),
         retries=3, timeout=timedelta(minutes=10), retry_reason="the download source can be briefly down"),
    Step("preprocess", _preprocess, consumes=(catalog.RAW,),
         produces=(catalog.VALIDATION_REPORT, catalog.TRAIN, catalog.TEST, catalog.TRAINING_PROFILE,
                   catalog.TRAINING_IDS, catalog.PREPROCESS_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="bad data stays bad"),
    Step("train", _train, consumes=(catalog.TRAIN,),
         produces=(catalog.CANDIDATE_MODEL, catalog.OUT_OF_FOLD, catalog.TRAIN_INFO), per_candidate=True,
         retries=1, timeout=timedelta(minutes=30), retry_reason="a worker killed for memory may fit on another try"),
    Step("select", _select, consumes=(catalog.TRAIN,), produces=(catalog.MODEL, catalog.SELECT_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="the same scores choose the same model"),
    Step("evaluate", _evaluate, consumes=(catalog.MODEL, catalog.TEST),
         produces=(catalog.METRICS, *catalog.CHARTS, catalog.REPORT, catalog.EVALUATE_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="a failed quality gate stays failed"),
    Step("compare", _compare, consumes=(catalog.MODEL, catalog.TEST, catalog.METRICS),
         produces=(catalog.COMPARISON, catalog.COMPARISON_REPORT, catalog.COMPARE_INFO),
         retries=0, timeout=timedelta(minutes=5), retry_reason="a missing or altered champion stays so"),
    Step("upload", _upload, consumes=PUBLISHED, produces=(catalog.MANIFEST, catalog.UPLOAD_INFO),
         retries=3, timeout=timedelta(minutes=15), retry_reason="Google Drive can answer 5xx / rate-limit"),
    Step("promote", _promote, consumes=(catalog.COMPARISON, catalog.MANIFEST), produces=(catalog.PROMOTE_INFO,),
         retries=3, timeout=timedelta(minutes=5), retry_reason="Google Drive can answer 5xx / rate-limit"),
)
STEP = {step.name: step for step in STEPS}
PRODUCED_BY = {name: step.name for step in STEPS if not step.per_candidate for name in step.produces}


def produced_by(name: str) -> str:
    """The step that writes the run-folder file `name` (a candidate's file: the per-candidate step)."""
    if name.startswith(f"{catalog.CANDIDATES_DIR}/"):
        return next(step.name for step in STEPS if step.per_candidate)
    return PRODUCED_BY[name]
