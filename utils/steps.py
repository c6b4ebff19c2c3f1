"""How a step runs: timing, logging and metrics around it, and its command-line entry point."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from etl import artifacts
from utils.config import Settings, load_settings
from utils.errors import PipelineError
from utils.files import hold_run_folder, run_dir
from utils.logger import configure_cli_logging, get_logger
from utils.telemetry import push_metrics, step_samples

StepFunction = Callable[[Settings], dict[str, Any]]
log = get_logger("steps")


def execute_step(step: str, function: StepFunction, settings: Settings) -> dict[str, Any]:
    """Run one step for `settings.run_id` while holding the run's folder, log its outcome and push its
    duration; errors propagate. The step first removes its own and downstream outputs (`artifacts.begin_step`),
    so a failure leaves nothing stale for the next step."""
    folder = run_dir(settings.runs_dir, settings.run_id)
    with hold_run_folder(folder, settings.run_id, f"step {step}"):
        log.info("step %s: starting (run_id=%s)", step, settings.run_id)
        started = time.perf_counter()
        succeeded = False
        try:
            artifacts.begin_step(folder, step)
            summary = function(settings)
            succeeded = True
            return summary
        finally:
            duration = time.perf_counter() - started
            log.info("step %s: %s in %.2f s", step, "finished" if succeeded else "FAILED", duration)
            push_metrics(settings, step, step_samples(step, duration, succeeded))


def cli_main(step: str, function: StepFunction, argv: list[str] | None = None, as_step: bool = True) -> int:
    """`python -m etl.<step>`: run the step with settings from the environment/.env, print its summary.

    `as_step=False` runs `function` as it is (for a function that runs several steps itself).
    """
    parser = argparse.ArgumentParser(prog=f"python -m etl.{step}", description=function.__doc__)
    parser.add_argument("--run-id", help="the run's folder name (default: RUN_ID, else 'local')")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(run_id=args.run_id)
        configure_cli_logging(settings.log_level)
        summary = execute_step(step, function, settings) if as_step else function(settings)
    except PipelineError as exc:
        configure_cli_logging()
        get_logger(step).error("%s", exc)
        return 1
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0
