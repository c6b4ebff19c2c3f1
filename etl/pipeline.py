"""How the steps run, everywhere: one step (`execute_step`, what the DAG's tasks and `python -m etl <step>` call),
a per-candidate step for every candidate (`execute_for_candidates`: a loop), all steps in one process
(`python -m etl.pipeline`), and the command line around them.

A step runs while its process holds the run's folder; it starts from a clean folder (its own and later outputs
removed), after the chain of earlier steps' checksums is verified, and ends by writing its record. Its duration and
gauges are pushed once, here. A candidate whose step fails leaves the reason in its folder for the next step.
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
from utils.config import CANDIDATE_NAMES, Settings, load_settings
from utils.errors import PipelineError
from utils.logger import configure_cli_logging, get_logger

DEFAULT_RUN_ID = "local"  # what the command line's steps share unless --run-id or RUN_ID says otherwise
log = get_logger("pipeline")


def unit_name(step: Step, candidate: str | None = None) -> str:
    """How logs, locks and pushed gauges name one run of `step`: `train[logreg]` for a candidate's."""
    return f"{step.name}[{candidate}]" if candidate else step.name


def execute_step(step: Step, run: RunFolder, settings: Settings, candidate: str | None = None,
                 **inputs: Any) -> dict[str, Any]:
    """Run `step` (a per-candidate step: for `candidate`) for `run`: hold the folder, start clean, verify what
    came before, run, record; returns the step's summary. `inputs` are what the orchestrator hands a step besides
    files (promote: the reviewer's answer). Errors propagate (a candidate's also written into its folder); the
    duration is pushed either way."""
    from utils.telemetry import push_metrics, step_samples  # prometheus_client: not at DAG parse time

    if step.per_candidate != (candidate is not None):
        raise ValueError(f"step {step.name}: a candidate is needed exactly when the step runs per candidate")
    name = unit_name(step, candidate)
    with run.hold(f"step {name}", candidate):
        log.info("step %s: starting (run %s)", name, run.run_id)
        started = time.perf_counter()
        result = None
        try:
            run.begin(step, candidate)
            run.verify_chain(before=step)
            function = step.function()
            result = function(run, settings, candidate) if candidate else function(run, settings, **inputs)
            run.write_record(step, result.record, candidate, result.consumed)
            if result.failure:
                raise result.failure
            return result.summary
        except Exception as exc:
            if candidate:
                run.write_candidate_failure(step, candidate, exc)
            raise
        finally:
            succeeded = result is not None and result.failure is None
            duration = time.perf_counter() - started
            log.info("step %s: %s in %.2f s", name, "finished" if succeeded else "FAILED", duration)
            push_metrics(settings, name, step_samples(name, duration, succeeded) + (result.samples if result else []))


def execute_for_candidates(step: Step, run: RunFolder, settings: Settings) -> dict[str, Any]:
    """A per-candidate step for each of CANDIDATES in turn (what Airflow maps side by side); a failure is logged
    and kept in the candidate's folder, and the next candidate runs: the next step decides whether enough
    succeeded. Returns each candidate's summary, or its error."""
    summaries: dict[str, Any] = {}
    for candidate in settings.candidates:
        try:
            summaries[candidate] = execute_step(step, run, settings, candidate)
        except Exception as exc:  # kept in the candidate's folder by execute_step; select reports it
            log.error("step %s failed: %s: %s", unit_name(step, candidate), type(exc).__name__, exc)
            summaries[candidate] = {"failed": f"{type(exc).__name__}: {exc}"}
    return summaries


def run_all(run: RunFolder, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every step in order, holding the folder throughout (a second process with the same run id is refused,
    not interleaved); the first failure of a step stops the run, is recorded in the history, as the DAG's
    failure_end records it, and propagates (a candidate's failure does not stop the run)."""
    from etl.champion import record_failed_run

    summaries: dict[str, dict[str, Any]] = {}
    with run.hold("the whole pipeline"):
        for step in STEPS:
            try:
                summaries[step.name] = (execute_for_candidates(step, run, settings) if step.per_candidate
                                        else execute_step(step, run, settings))
            except Exception as exc:
                record_failed_run(run, settings, step.name, f"{type(exc).__name__}: {exc}")
                raise
    return summaries


def cli_main(argv: list[str] | None = None, all_steps: bool = False) -> int:
    """`python -m etl <step>` (a step of etl/steps.py) or, with `all_steps`, `python -m etl.pipeline` (every step in
    one process), with settings from the environment and `.env`; prints the summary as JSON, or one error line
    (exit status 1)."""
    parser = argparse.ArgumentParser(prog="python -m etl.pipeline" if all_steps else "python -m etl",
                                     description=__doc__.splitlines()[0])
    if not all_steps:
        parser.add_argument("step", choices=list(STEP), help="the step to run")
    parser.add_argument("--run-id", default=os.environ.get("RUN_ID", DEFAULT_RUN_ID),
                        help=f"the run's folder name (default: RUN_ID, else {DEFAULT_RUN_ID!r})")
    parser.add_argument("--candidate", choices=CANDIDATE_NAMES,
                        help="a per-candidate step (train) for this candidate only (default: each of CANDIDATES)")
    args = parser.parse_args(argv)
    step = None if all_steps else STEP[args.step]
    if args.candidate and not (step and step.per_candidate):
        parser.error("--candidate goes only with a per-candidate step: "
                     + ", ".join(name for name, known in STEP.items() if known.per_candidate))
    try:
        settings = load_settings()
        configure_cli_logging(settings.log_level)
        run = RunFolder.open(settings.runs_dir, args.run_id)
        if step is None:
            summary: dict[str, Any] = run_all(run, settings)
        elif step.per_candidate and not args.candidate:
            summary = execute_for_candidates(step, run, settings)
        else:
            summary = execute_step(step, run, settings, args.candidate)
    except PipelineError as exc:
        configure_cli_logging()
        get_logger(step.name if step else "pipeline").error("%s", exc)
        return 1
    json.dump(summary, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    every_candidate_failed = step and step.per_candidate and not args.candidate and all(
        "failed" in result for result in summary.values())
    return 1 if every_candidate_failed else 0


if __name__ == "__main__":
    sys.exit(cli_main(all_steps=True))
