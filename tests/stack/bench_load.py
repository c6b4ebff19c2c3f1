"""`make bench-stack` (docs/benchmarks.md): the stack test's load (tests/support/stack_load.py: 20 training runs
triggered at once, 10 batches handed off meanwhile) on the default profile (LocalExecutor) and on the `celery`
profile with two workers, each from fresh volumes; the wall time and the stack's peak memory of each go to
results/bench/stack-load.json. Not collected by `make test` (not a test_*.py file): a benchmark, not a check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker_stack import Stack, running_stack, stack_api
from tests.support.stack_load import put_load
from utils.config import PROJECT_ROOT

pytestmark = pytest.mark.stack

OUTPUT = PROJECT_ROOT / "results" / "bench" / "stack-load.json"
PROFILES = {"LocalExecutor": ({}, ""),
            "CeleryExecutor": ({"COMPOSE_PROFILES": "celery", "AIRFLOW_EXECUTOR": "CeleryExecutor"},
                               "--scale airflow-worker=2")}


@pytest.fixture(scope="module", params=list(PROFILES))
def profile(request: pytest.FixtureRequest, stand_ins: dict[str, str], settings: dict[str, str],
            log_dir: Path) -> Iterator[tuple[str, Stack]]:
    """The executor's name and its stack, up from fresh volumes."""
    extra, up_flags = PROFILES[request.param]
    with running_stack({**settings, **extra}, log_dir, up_flags=up_flags) as stack:
        yield request.param, stack


def test_load_cost(profile: tuple[str, Stack]) -> None:
    executor, stack = profile
    report = put_load(stack, stack_api(stack), executor)
    measured = json.loads(OUTPUT.read_text(encoding="utf-8")) if OUTPUT.is_file() else {}
    measured[report.executor] = report.summary()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    print(f"\nbench-stack: {report.summary()}")
