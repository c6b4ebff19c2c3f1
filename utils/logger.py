"""One logger format for every step, on the command line and inside Airflow task logs."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

ROOT_LOGGER = "pipeline"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger under the project's namespace, e.g. `get_logger("load")` -> `pipeline.load`."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def configure_cli_logging(level: str = "INFO") -> None:
    """Send the project's logs to stderr with one format; used by the command-line entry points.

    Inside Airflow nothing is configured here: records propagate to the task logger and show in the UI.
    """
    root = logging.getLogger(ROOT_LOGGER)
    root.setLevel(level)
    if not any(getattr(h, "_pipeline_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._pipeline_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def run_command(log: logging.Logger, work: Callable[[], Any]) -> int:
    """A command line's body: `work()`'s result printed as JSON (exit status 0), or the PipelineError it raised
    as one log line without a traceback (exit status 1). `work` configures the logging from its settings."""
    from utils.errors import PipelineError

    try:
        result = work()
    except PipelineError as exc:
        configure_cli_logging()
        log.error("%s", exc)
        return 1
    json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0
