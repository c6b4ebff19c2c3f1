"""The load the stack test puts on a running stack, and `make bench-stack` measures on both executors
(docs/stack-test.md): many training runs triggered over the REST API at the same moment, each with its own Params,
while batches of samples are handed off into `data/incoming` one after another; then every run ends and the scoring
DAG settles. What is measured is the wall time from the first trigger to the settled stack and the peak memory of
the stack's containers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from etl import scoring
from etl.assets import SCORING_DAG_ID
from etl.steps import DAG_ID
from tests.support.airflow_api import FINISHED_RUN_STATES, AirflowApi
from tests.support.docker_stack import Stack
from tests.support.processes import wait_until
from tests.support.scoring import batch, hand_off_batch

LOAD_RUNS = 20
LOAD_BATCHES = 10
BATCH_ROWS = 40
BATCH_GAP_SECONDS = 12  # between two hand-offs: the batches arrive while the runs train
# The cheaper candidates, so that the load is many runs rather than long ones; the other Params vary per run.
CANDIDATE_SETS = (["logreg"], ["linear_svm"], ["logreg", "linear_svm"])
RUN_SECONDS_EACH = 90  # the slowest a queued run may take on the 2-core machine under this load
SETTLED_SECONDS = 300
MEMORY_SAMPLE_SECONDS = 1.0
MIB = 2**20


def load_params(count: int) -> list[dict[str, Any]]:
    """`count` different sets of Params: candidates, test split and promotion margin vary from run to run."""
    return [{"candidates": CANDIDATE_SETS[index % len(CANDIDATE_SETS)],
             "test_size": round(0.2 + 0.01 * (index % 10), 2),
             "promotion_tolerance": 0.01 + 0.005 * (index % 3)} for index in range(count)]


@dataclass
class LoadReport:
    """What one load did and cost."""

    executor: str
    runs: list[str]
    batches: list[str]
    wall_seconds: float
    peak_memory_mib: float

    def summary(self) -> dict[str, Any]:
        """The report without the run ids, for logs and the benchmark's table."""
        return {key: value for key, value in asdict(self).items() if key not in ("runs", "batches")} | {
            "run_count": len(self.runs), "batch_count": len(self.batches)}


@contextmanager
def peak_memory(stack: Stack) -> Iterator[list[int]]:
    """Sample the stack's memory every MEMORY_SAMPLE_SECONDS in a thread; the list holds the peak so far."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], stack.memory_bytes())
            done.wait(MEMORY_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, name="stack-memory", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join(30)


def trigger_at_once(api: AirflowApi, params: list[dict[str, Any]]) -> list[str]:
    """One REST trigger per set of Params, all sent at the same moment from as many threads; the run ids."""
    api.token()  # one login, before the threads share it
    with ThreadPoolExecutor(max_workers=len(params)) as pool:
        return list(pool.map(lambda conf: api.trigger(DAG_ID, conf), params))


def scoring_settled(api: AirflowApi, incoming: Path) -> bool:
    """No scoring run queued or running, and no batch waiting or claimed in the incoming folder."""
    busy = [run for run in api.runs(SCORING_DAG_ID) if run["state"] not in FINISHED_RUN_STATES]
    claimed = incoming / scoring.CLAIMED
    waiting = [*incoming.glob(f"*{scoring.BATCH_SUFFIX}"), *(claimed.iterdir() if claimed.is_dir() else [])]
    return not busy and not waiting


def put_load(stack: Stack, api: AirflowApi, executor: str, runs: int = LOAD_RUNS,
             batches: int = LOAD_BATCHES) -> LoadReport:
    """Trigger `runs` training runs at once, hand off `batches` batches while they run, wait for every run to end
    and the scoring DAG to settle twice in a row; the report of what it cost."""
    incoming = stack.root / "data" / "incoming"
    with peak_memory(stack) as peak:
        began = time.monotonic()
        run_ids = trigger_at_once(api, load_params(runs))
        names = []
        for index in range(batches):
            time.sleep(BATCH_GAP_SECONDS)
            names.append(f"load-{index:02d}")
            hand_off_batch(incoming, names[-1], batch(BATCH_ROWS, seed=100 + index))
        for run_id in run_ids:
            api.wait_for_run(DAG_ID, run_id, RUN_SECONDS_EACH * runs)
        for _ in range(2):  # a champion's event may start one more scoring run just after the last training run
            time.sleep(10)
            wait_until(lambda: scoring_settled(api, incoming), SETTLED_SECONDS, "the scoring DAG to settle",
                       interval=3.0)
        wall = time.monotonic() - began
    return LoadReport(executor, run_ids, names, round(wall, 1), round(peak[0] / MIB, 1))
