"""Benchmark at scale: the pipeline on data sets of 10k, 100k and 1M rows drawn from the bundled one
(bench/make_data.py: new Ids, same distributions).

Per size: each step of etl/steps.py as its own process (`python -m etl <step>`, as `make local-test-all` runs them,
DATA_URL a file:// URL, STORAGE_BACKEND=local, temporary RUNS_DIR/RESULTS_DIR), its wall time and peak RSS; a step
run per candidate as one process per candidate (`--candidate`), as many side by side as the machine has cores, as
the DAG's mapped instances run under the LocalExecutor (its wall time is the step's); then
each candidate model's cross-validation + fit on that run's train.csv, one process each (seconds of CV + fit, peak
RSS of the process; the training rows' distinct feature rows are printed beside, for the linear candidates
are fitted on those); then the grouped folds alone, etl/folds.py and sklearn's StratifiedGroupKFold (seconds, and
the spread of the malignant share over the test folds; StratifiedGroupKFold only up to SGKF_MAX_ROWS rows, its
per-group Python loop takes minutes beyond). A process that runs longer than BENCH_SCALE_TIMEOUT seconds (default
300: already more than the whole pipeline may take) is stopped and reported as such (after a step, the later
steps of that size are skipped).

Goals, at the largest size: the whole pipeline (the steps' sum) within PIPELINE_GOAL_S, every process under
MEMORY_GOAL_MIB, and the pipeline's seconds per row growing at most LINEAR_GOAL times from the second-largest size
to the largest (cost linear in the rows). A missed goal prints MISSED; it does not fail the bench.
BENCH_SCALE_ROWS (comma-separated, default 10000,100000,1000000) picks the sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/bench_scale.py`

from bench.make_data import generate, write  # noqa: E402
from etl import catalog  # noqa: E402
from etl.steps import STEPS  # noqa: E402
from utils.config import CANDIDATE_NAMES  # noqa: E402

CANDIDATES = CANDIDATE_NAMES  # the default candidates (CANDIDATES setting), each cross-validated and fitted
SIZES = (10_000, 100_000, 1_000_000)
SGKF_MAX_ROWS = 100_000
PIPELINE_GOAL_S = 90.0
MEMORY_GOAL_MIB = 2048.0
LINEAR_GOAL = 1.25  # largest allowed growth of seconds per row between the two largest sizes
SEED = 0
CANDIDATE_RUN = """
import json, sys, time
import pandas as pd
from etl import modelling
from utils.config import load_settings
settings = load_settings()
frame = pd.read_csv(sys.argv[1])
started = time.perf_counter()
modelling.fit(frame, sys.argv[2], settings.cv_folds, settings.seed)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""
FOLDS_RUN = """
import json, sys, time
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from etl.dataset import features_and_labels
from etl.folds import grouped_stratified_folds
from utils.config import load_settings
settings = load_settings()
features, labels, groups = features_and_labels(pd.read_csv(sys.argv[1]))
splitters = {"etl.folds": lambda: grouped_stratified_folds(labels, groups, settings.cv_folds, settings.seed),
             "StratifiedGroupKFold": lambda: list(StratifiedGroupKFold(
                 settings.cv_folds, shuffle=True, random_state=settings.seed).split(features, labels, groups))}
result = {}
for name in sys.argv[2:]:
    started = time.perf_counter()
    folds = splitters[name]()
    shares = [labels[test].mean() for _, test in folds]
    result[name] = {"seconds": time.perf_counter() - started, "spread": max(shares) - min(shares)}
print(json.dumps(result))
"""


@dataclass(frozen=True)
class Measure:
    """One process: wall seconds (or its own figure of the work measured), peak RSS MiB, whether it was stopped."""

    seconds: float
    rss: float
    stopped: bool = False
    spread: float | None = None


def run(command: list[str], env: dict[str, str], timeout: float) -> tuple[Measure, str]:
    """Run `command` (which must succeed) to its end or its timeout; its measure and its standard output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)
        stopped = False
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if not stopped and time.perf_counter() - started > timeout:
                    process.kill()
                    stopped = True
                time.sleep(0.05)
        except BaseException:  # interrupted: leave no measuring process behind
            process.kill()
            process.wait()
            raise
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0 and not stopped:
            raise RuntimeError(f"{' '.join(command[:3])} failed ({process.returncode}):\n"
                               f"{err.read().decode(errors='replace')[-3000:]}")
        return Measure(elapsed, usage.ru_maxrss / 1024, stopped), out.read().decode()


def run_side_by_side(commands: list[list[str]], env: dict[str, str], timeout: float) -> Measure:
    """Run `commands` (which must succeed), as many at a time as there are cores; the wall time of all of them,
    the largest peak RSS, and whether one was stopped."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as lanes:
        measures = [measure for measure, _ in lanes.map(lambda command: run(command, env, timeout), commands)]
    return Measure(time.perf_counter() - started, max(m.rss for m in measures), any(m.stopped for m in measures))


def distinct_feature_rows(train_csv: Path) -> int:
    """How many distinct (features, label) rows the training rows hold: what the linear candidates are fitted on."""
    import numpy as np
    import pandas as pd

    from etl.dataset import features_and_labels
    from etl.unique_rows import distinct_rows

    features, labels, _ = features_and_labels(pd.read_csv(train_csv))
    return len(distinct_rows(np.column_stack([features.to_numpy(dtype=float), labels]))[1])


def show(name: str, measure: Measure) -> None:
    spread = "" if measure.spread is None else f"  malignant share spread {measure.spread:.5f}"
    seconds = f"> {measure.seconds:.0f} s, stopped" if measure.stopped else f"{measure.seconds:.2f} s"
    print(f"  {name:<36}{seconds:>16}{measure.rss:>9.0f} MiB{spread}", flush=True)


def bench_size(rows: int, work: Path, timeout: float) -> dict[str, Measure]:
    """Each step's, each candidate's CV + fit and the folds' measures at one size."""
    data = work / "data" / f"rows_{rows}.csv"
    started = time.perf_counter()
    write(generate(rows, SEED), data)
    print(f"\n{rows} rows: generated {data.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - started:.1f} s")
    env = {**os.environ, "ENV_FILE": str(work / "none.env"), "RUNS_DIR": str(work / "runs"),
           "RESULTS_DIR": str(work / "results"), "STORAGE_BACKEND": "local", "DATA_URL": data.as_uri(),
           "DATA_ALLOWED_DIRS": str(data.parent), "DATA_FALLBACK": "false", "PUSHGATEWAY_URL": ""}
    python, run_id = sys.executable, f"scale{rows}"
    results: dict[str, Measure] = {}
    for step in STEPS:
        command = [python, "-m", "etl", step.name, "--run-id", run_id]
        if step.per_candidate:
            results[f"step {step.name}"] = run_side_by_side([[*command, "--candidate", name] for name in CANDIDATES],
                                                            env, timeout)
        else:
            results[f"step {step.name}"], _ = run(command, env, timeout)
        show(f"step {step.name}", results[f"step {step.name}"])
        if results[f"step {step.name}"].stopped:
            return results
    steps = [results[f"step {step.name}"] for step in STEPS]
    results["pipeline (the steps' sum)"] = Measure(sum(m.seconds for m in steps), max(m.rss for m in steps))
    train_csv = str(work / "runs" / run_id / catalog.TRAIN)
    print(f"  training rows: {distinct_feature_rows(Path(train_csv))} distinct (features, label) rows", flush=True)
    for name in CANDIDATES:
        measure, out = run([python, "-c", CANDIDATE_RUN, train_csv, name], env, timeout)
        if not measure.stopped:
            measure = Measure(json.loads(out.splitlines()[-1])["seconds"], measure.rss)
        results[f"cv+fit {name}"] = measure
        show(f"cv+fit {name}", measure)
    splitters = ["etl.folds", *(["StratifiedGroupKFold"] if rows <= SGKF_MAX_ROWS else [])]
    measure, out = run([python, "-c", FOLDS_RUN, train_csv, *splitters], env, timeout)
    for name, figures in ({} if measure.stopped else json.loads(out.splitlines()[-1])).items():
        results[f"folds {name}"] = Measure(figures["seconds"], measure.rss, spread=figures["spread"])
        show(f"folds {name}", results[f"folds {name}"])
    return results


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def cell(measure: Measure | None, rows: int) -> str:
    if measure is None:
        return f"{'-':>26}"
    if measure.stopped:
        return f"{'stopped > ' + format(measure.seconds, '.0f') + ' s':>18}{measure.rss:>8.0f}"
    return f"{measure.seconds:>9.2f}{measure.seconds / rows * 1e6:>9.2f}{measure.rss:>8.0f}"


def report(by_size: dict[int, dict[str, Measure]]) -> None:
    """The table (seconds, microseconds per row, peak RSS MiB per size) and the goals at the largest size."""
    sizes = sorted(by_size)
    names = list(dict.fromkeys(name for size in sizes for name in by_size[size]))
    growth = f"; growth = seconds per row at {sizes[-1]} / at {sizes[-2]}" if len(sizes) > 1 else ""
    print(f"\nscale benchmark: per size, seconds, microseconds per row, peak RSS MiB{growth}")
    print(f"{'what':<36}" + "".join(f"{size:>26}" for size in sizes) + "   growth")
    for name in names:
        cells = [by_size[size].get(name) for size in sizes]
        growth = ""
        if len(sizes) > 1 and all(c is not None and not c.stopped for c in cells[-2:]):
            growth = f"{(cells[-1].seconds / sizes[-1]) / (cells[-2].seconds / sizes[-2]):>8.2f}"
        print(f"{name:<36}" + "".join(cell(c, size) for c, size in zip(cells, sizes, strict=True)) + growth)
    largest, rows = by_size[sizes[-1]], sizes[-1]
    pipeline = largest.get("pipeline (the steps' sum)")
    if pipeline is None:
        print(f"goal: pipeline at {rows} rows within {PIPELINE_GOAL_S:.0f} s  MISSED (a step was stopped)")
    else:
        print(f"goal: pipeline at {rows} rows {pipeline.seconds:.1f} s <= {PIPELINE_GOAL_S:.0f} s  "
              f"{verdict(pipeline.seconds <= PIPELINE_GOAL_S)}")
    peak = max(measure.rss for measure in largest.values())
    print(f"goal: peak RSS of any process at {rows} rows {peak:.0f} MiB < {MEMORY_GOAL_MIB:.0f} MiB  "
          f"{verdict(peak < MEMORY_GOAL_MIB)}")
    if len(sizes) > 1:
        before = by_size[sizes[-2]].get("pipeline (the steps' sum)")
        if pipeline is None or before is None:
            print(f"goal: linear cost (pipeline seconds per row grow <= {LINEAR_GOAL}x)  MISSED (a step was stopped)")
        else:
            growth = (pipeline.seconds / rows) / (before.seconds / sizes[-2])
            print(f"goal: pipeline seconds per row grow {growth:.2f}x from {sizes[-2]} to {rows} rows <= "
                  f"{LINEAR_GOAL}x  {verdict(growth <= LINEAR_GOAL)}")


def main() -> int:
    sizes = [int(size) for size in os.environ.get("BENCH_SCALE_ROWS", ",".join(map(str, SIZES))).split(",")]
    timeout = float(os.environ.get("BENCH_SCALE_TIMEOUT", "300"))
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        report({rows: bench_size(rows, work, timeout) for rows in sizes})
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
