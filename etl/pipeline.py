"""All five steps in one process (`python -m etl.pipeline`): the quickest way to run the pipeline without
Airflow, and what the benchmark and the end-to-end tests compare Airflow against."""

from __future__ import annotations

import sys
from typing import Any

from etl import evaluate, load, preprocess, train, upload
from utils.config import Settings
from utils.files import hold_run_folder, run_dir
from utils.steps import StepFunction, cli_main, execute_step

STEPS: tuple[tuple[str, StepFunction], ...] = (
    (load.STEP, load.run), (preprocess.STEP, preprocess.run), (train.STEP, train.run),
    (evaluate.STEP, evaluate.run), (upload.STEP, upload.run),
)


def run_all(settings: Settings) -> dict[str, dict[str, Any]]:
    """Run every step in order for `settings.run_id`, holding its folder throughout (a second process with the
    same RUN_ID is refused, not interleaved); the first failure stops the run and propagates."""
    with hold_run_folder(run_dir(settings.runs_dir, settings.run_id), settings.run_id, "the whole pipeline"):
        return {name: execute_step(name, function, settings) for name, function in STEPS}


def main(argv: list[str] | None = None) -> int:
    return cli_main("pipeline", run_all, argv, as_step=False)


if __name__ == "__main__":
    sys.exit(main())
