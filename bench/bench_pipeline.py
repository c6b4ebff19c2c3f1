"""Benchmark: the pipeline as six processes and in one process, against `import pandas, sklearn`.

Every figure is a median wall time over BENCH_REPEAT runs (default 3), reported as a ratio to the baseline
measured in the same run, so that figures compare across machines. They are reported without goals: the
per-step 1.5x and in-process 2x goals were retired with the move to matplotlib (evaluate's time includes
importing it and drawing the four charts). Peak memory (max RSS) of each process is reported too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/bench_pipeline.py`

from etl.steps import STEPS as STEP_TABLE  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402

STEPS = tuple(step.name for step in STEP_TABLE)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, which must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024


def report(rows: dict[str, list[tuple[float, float]]], repeat: int) -> None:
    """Print the table of medians and ratios."""
    def median(name: str, index: int) -> float:
        return statistics.median(sample[index] for sample in rows[name])

    baseline = median("baseline", 0)
    separate_total = sum(median(step, 0) for step in STEPS)
    print(f"pipeline benchmark: median of {repeat} run(s); baseline = python -c 'import pandas, sklearn'")
    print(f"{'what':<22}{'seconds':>9}{'x baseline':>12}{'max RSS MiB':>13}")
    lines = [("baseline", baseline, median("baseline", 1))]
    lines += [(f"step {step}", median(step, 0), median(step, 1)) for step in STEPS]
    lines += [("six processes total", separate_total, max(median(s, 1) for s in STEPS)),
              ("in-process total", median("in-process", 0), median("in-process", 1))]
    for name, seconds, rss in lines:
        print(f"{name:<22}{seconds:>9.2f}{seconds / baseline:>12.2f}{rss:>13.0f}")


def main() -> None:
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    env = {**os.environ, "ENV_FILE": str(work / "none.env"),
           "RUNS_DIR": str(work / "runs"), "RESULTS_DIR": str(work / "results"), "STORAGE_BACKEND": "local",
           "DATA_URL": BUNDLED_DATA.as_uri(), "PUSHGATEWAY_URL": ""}
    python = sys.executable
    rows: dict[str, list[tuple[float, float]]] = {"baseline": [], "in-process": [], **{s: [] for s in STEPS}}
    for attempt in range(repeat):
        rows["baseline"].append(timed([python, "-c", "import pandas, sklearn"], env))
        for step in STEPS:
            rows[step].append(timed([python, "-m", "etl", step, "--run-id", f"separate{attempt}"], env))
        rows["in-process"].append(timed([python, "-m", "etl.pipeline", "--run-id", f"single{attempt}"], env))
    report(rows, repeat)


if __name__ == "__main__":
    main()
