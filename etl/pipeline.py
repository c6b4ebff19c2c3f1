"""How the steps run, everywhere: one step (`execute_step`, what the DAG's tasks and `python -m etl.<step>` call),
all five in one process (`python -m etl.pipeline`), and the command line around both.

A step runs while its process holds the run's folder; it starts from a clean folder (its own and later outputs
removed), after the chain of earlier steps' checksums is verified, and ends by writing its record. Its duration and
gauges are pushed once, here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from etl.run_folder import RunFolder
from etl.steps import STEP, STEPS, Step
from utils.config import Settings, load_settings
from utils.errors import PipelineError
from utils.logger import configure_cli_logging, get_logger

DEFAULT_RUN_ID = "local"  # what the command line's steps share unless --run-id or RUN_ID says otherwise
log = get_logger("pipeline")


def execute_step(step: Step, run: RunFolder, settings: Settings) -> dict[str, Any]:
    """Run `step` for `run`: hold the folder, start clean, verify what came before, run, record; returns the
    step's summary. Errors propagate; the duration is pushed either way."""
    from utils.telemetry import push_metrics, step_samples  # prometheus_client: not at DAG parse time

    with run.hold(f"step {step.name}"):
        log.info("step %s: starting (run %s)", step.name, run.run_id)
        started = time.perf_counter()
        result = None
        try:
            run.begin(step)
            run.verify_chain(before=step)
            result = step.run(run, settings)
            run.write_record(step, result.record)
            if result.failure:
                raise result.failure
            return result.summary
        finally:
            succeeded = result is not None and result.failure is None
            duration = time.perf_counter() - started
            log.info("step %s: %s in %.2f s", step.name, "finished" if succeeded else "FAILED", duration)
            push_metrics(settings, step.name, step_samples(step.name, duration, succeeded)
                         + (result.samples if result else []))


def run_all(run: RunFolder, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every step in order, holding the folder throughout (a second process with the same run id is refused,
    not interleaved); the first failure stops the run and propagates."""
    with run.hold("the whole pipeline"):
        return {step.name: execute_step(step, run, settings) for step in STEPS}


def cli_main(name: str, argv: list[str] | None = None) -> int:
    """`python -m etl.<name>`: the step `name` (or "pipeline": all of them) with settings from the environment and
    `.env`; prints the summary as JSON, or one error line (exit status 1)."""
    parser = argparse.ArgumentParser(prog=f"python -m etl.{name}", description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", default=os.environ.get("RUN_ID", DEFAULT_RUN_ID),
                        help=f"the run's folder name (default: RUN_ID, else {DEFAULT_RUN_ID!r})")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_cli_logging(settings.log_level)
        run = RunFolder.open(settings.runs_dir, args.run_id)
        summary = run_all(run, settings) if name == "pipeline" else execute_step(STEP[name], run, settings)
    except PipelineError as exc:
        configure_cli_logging()
        get_logger(name).error("%s", exc)
        return 1
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main("pipeline"))
