"""Benchmark at scale: the pipeline on data sets of 10k, 100k and 1M rows drawn from the bundled one
(bench/make_data.py: new Ids, same distributions).

Per size: each step of etl/steps.py as its own process (`python -m etl.<step>`, as `make local-test-all` runs them,
DATA_URL a file:// URL, STORAGE_BACKEND=local, temporary RUNS_DIR/RESULTS_DIR), its wall time and peak RSS; then
each candidate model's cross-validation + fit on that run's train.csv, one process each (time of CV + fit, peak
RSS of the process); then the grouped folds alone: etl/folds.py against sklearn's StratifiedGroupKFold (time, and
the spread of the malignant share over the test folds). Goals, checked at the largest size: the whole pipeline
within PIPELINE_GOAL_S, every process under MEMORY_GOAL_MIB, and time per row growing at most LINEAR_GOAL times
from the second-largest size to the largest (cost linear in the rows). A missed goal prints MISSED; it does not
fail the bench. BENCH_SCALE_ROWS (comma-separated, default 10000,100000,1000000) picks the sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/bench_scale.py`

from bench.bench_pipeline import STEPS, timed  # noqa: E402
from bench.make_data import generate, write  # noqa: E402
from etl import catalog  # noqa: E402
from utils.config import MODELS  # noqa: E402

CANDIDATES = MODELS  # the candidate models the train step compares (one line to adapt if their place moves)
SIZES = (10_000, 100_000, 1_000_000)
PIPELINE_GOAL_S = 90.0
MEMORY_GOAL_MIB = 2048.0
LINEAR_GOAL = 1.25  # largest allowed growth of seconds per row between the two largest sizes
SEED = 0
CANDIDATE_RUN = """
import json, sys, time
import pandas as pd
from etl import train
from utils.config import load_settings
settings = load_settings()
frame = pd.read_csv(sys.argv[1])
started = time.perf_counter()
train.fit(frame, sys.argv[2], settings.cv_folds, settings.seed)
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
def spread(folds):
    shares = [labels[test].mean() for _, test in folds]
    return max(shares) - min(shares)
result = {}
for name, make in (("etl.folds", lambda: grouped_stratified_folds(labels, groups, settings.cv_folds, settings.seed)),
                   ("StratifiedGroupKFold", lambda: list(StratifiedGroupKFold(
                       settings.cv_folds, shuffle=True, random_state=settings.seed).split(features, labels, groups)))):
    started = time.perf_counter()
    folds = make()
    result[name] = {"seconds": time.perf_counter() - started, "spread": spread(folds)}
print(json.dumps(result))
"""


def measured(command: list[str], env: dict[str, str]) -> tuple[dict[str, object], float]:
    """The JSON a measuring process prints last, and its peak RSS (MiB)."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        stdout = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{stderr[-3000:]}")
    return json.loads(stdout.splitlines()[-1]), usage.ru_maxrss / 1024


def bench_size(rows: int, work: Path) -> dict[str, dict[str, float]]:
    """Seconds and peak RSS of each step, each candidate's CV + fit and the folds at one size."""
    data = work / "data" / f"rows_{rows}.csv"
    started = time.perf_counter()
    write(generate(rows, SEED), data)
    print(f"\n{rows} rows: generated {data.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - started:.1f} s")
    env = {**os.environ, "ENV_FILE": str(work / "none.env"), "RUNS_DIR": str(work / "runs"),
           "RESULTS_DIR": str(work / "results"), "STORAGE_BACKEND": "local", "DATA_URL": data.as_uri(),
           "DATA_ALLOWED_DIRS": str(data.parent), "DATA_FALLBACK": "false", "PUSHGATEWAY_URL": ""}
    python, run_id = sys.executable, f"scale{rows}"
    results: dict[str, dict[str, float]] = {}
    for step in STEPS:
        seconds, rss = timed([python, "-m", f"etl.{step}", "--run-id", run_id], env)
        results[f"step {step}"] = {"seconds": seconds, "rss": rss}
        print(f"  step {step:<30}{seconds:>9.2f} s{rss:>9.0f} MiB", flush=True)
    train_csv = str(work / "runs" / run_id / catalog.TRAIN)
    for name in CANDIDATES:
        report, rss = measured([python, "-c", CANDIDATE_RUN, train_csv, name], env)
        results[f"cv+fit {name}"] = {"seconds": float(report["seconds"]), "rss": rss}
        print(f"  cv+fit {name:<28}{report['seconds']:>9.2f} s{rss:>9.0f} MiB", flush=True)
    report, rss = measured([python, "-c", FOLDS_RUN, train_csv], env)
    for name, figures in report.items():
        results[f"folds {name}"] = {"seconds": figures["seconds"], "rss": rss, "spread": figures["spread"]}
        print(f"  folds {name:<29}{figures['seconds']:>9.2f} s  malignant share spread {figures['spread']:.4f}",
              flush=True)
    results["pipeline"] = {"seconds": sum(results[f"step {s}"]["seconds"] for s in STEPS),
                           "rss": max(results[f"step {s}"]["rss"] for s in STEPS)}
    return results


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(by_size: dict[int, dict[str, dict[str, float]]]) -> None:
    """The table (seconds, µs per row, MiB per size) and the goals at the largest size."""
    sizes = sorted(by_size)
    print("\nscale benchmark: seconds / microseconds per row / peak RSS MiB")
    print(f"{'what':<36}" + "".join(f"{size:>26}" for size in sizes) + "   growth")
    for name in by_size[sizes[0]]:
        cells = [by_size[size][name] for size in sizes]
        line = "".join(f"{c['seconds']:>9.2f} {c['seconds'] / size * 1e6:>7.2f} {c['rss']:>7.0f}"
                       for c, size in zip(cells, sizes, strict=True))
        growth = ""
        if len(sizes) > 1:
            ratio = (cells[-1]["seconds"] / sizes[-1]) / (cells[-2]["seconds"] / sizes[-2])
            growth = f"{ratio:>7.2f} {verdict(ratio <= LINEAR_GOAL) if name == 'pipeline' else ''}"
        print(f"{name:<36}{line}  {growth}")
    largest = by_size[sizes[-1]]
    peak = max(figures["rss"] for figures in largest.values())
    print(f"goal: pipeline at {sizes[-1]} rows {largest['pipeline']['seconds']:.1f} s <= {PIPELINE_GOAL_S:.0f} s  "
          f"{verdict(largest['pipeline']['seconds'] <= PIPELINE_GOAL_S)}")
    print(f"goal: peak RSS of any process at {sizes[-1]} rows {peak:.0f} MiB < {MEMORY_GOAL_MIB:.0f} MiB  "
          f"{verdict(peak < MEMORY_GOAL_MIB)}")
    if len(sizes) > 1:
        print(f"goal: pipeline seconds per row grow <= {LINEAR_GOAL}x from {sizes[-2]} to {sizes[-1]} rows (growth "
              "column; per candidate for information)")


def main() -> int:
    sizes = [int(size) for size in os.environ.get("BENCH_SCALE_ROWS", ",".join(map(str, SIZES))).split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    report({rows: bench_size(rows, work) for rows in sizes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
