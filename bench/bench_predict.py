"""Benchmark: `python -m etl.predict` on BENCH_PREDICT_ROWS rows (default 1,000,000: the bundled rows resampled
with new Ids, without Class), scored with a model the in-process pipeline publishes first.

Reported: the scoring time the command itself measures (validation, prediction, writing predictions.csv; goal
<= SECONDS_GOAL), the process's wall time with its imports, and its peak RSS against what it held after the
imports: the growth per input byte must stay <= GROWTH_GOAL (memory proportional to the input). Exit status 1
when a goal is missed.
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
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/bench_predict.py`

from bench.make_data import generate, write  # noqa: E402
from etl.dataset import TARGET  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402

SECONDS_GOAL = 10.0
GROWTH_GOAL = 20.0  # peak RSS growth / input bytes
MEASURE = """
import json, resource, sys
from etl import predict, contract, drift  # noqa: F401 (imported before measuring, as the command imports them)
import joblib, sklearn.linear_model, sklearn.pipeline  # noqa: F401
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
status = predict.main(sys.argv[1:])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": status, "before_kib": before, "after_kib": after}), file=sys.stderr)
"""


def samples(path: Path, rows: int) -> Path:
    """`rows` rows drawn from the bundled ones by Id group (bench/make_data.py, seed 0), without Class."""
    return write(generate(rows, 0).drop(columns=[TARGET]), path)


def main() -> int:
    rows = int(os.environ.get("BENCH_PREDICT_ROWS", "1000000"))
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    env = {**os.environ, "ENV_FILE": str(work / "none.env"), "RUNS_DIR": str(work / "runs"),
           "RESULTS_DIR": str(work / "results"), "DATA_URL": BUNDLED_DATA.as_uri(), "STORAGE_BACKEND": "local",
           "PUSHGATEWAY_URL": "", "RUN_ID": "bench"}
    published = subprocess.run([sys.executable, "-m", "etl.pipeline"], env=env, cwd=ROOT, capture_output=True,
                               text=True, timeout=600, check=False)
    if published.returncode != 0:
        raise RuntimeError(f"the pipeline failed:\n{published.stderr[-3000:]}")
    path = samples(work / "samples.csv", rows)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path), "--output", str(work / "predictions.csv")],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - started
    memory = json.loads(result.stderr.strip().splitlines()[-1])
    if memory["status"] != 0:
        raise RuntimeError(f"predict failed:\n{result.stderr[-3000:]}")
    seconds = json.loads(result.stdout)["seconds"]
    size = path.stat().st_size
    growth = (memory["after_kib"] - memory["before_kib"]) * 1024 / size
    verdict = "met" if seconds <= SECONDS_GOAL and growth <= GROWTH_GOAL else "MISSED"
    print(f"predict benchmark: {rows} rows ({size / 2**20:.1f} MiB) scored in {seconds:.2f} s (goal <= "
          f"{SECONDS_GOAL:.0f} s; {wall:.2f} s with the interpreter and imports); peak RSS "
          f"{memory['before_kib'] / 1024:.0f} -> {memory['after_kib'] / 1024:.0f} MiB, growth / input = "
          f"{growth:.1f} (goal <= {GROWTH_GOAL:.0f})  {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
