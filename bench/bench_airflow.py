"""Benchmark: what Airflow adds. The DAG file's import time on top of Airflow's own imports, against a no-op DAG
file of the same shape (same tasks, edges, trigger rules and Params as literals: bench/same_shape.py), next to
`import airflow`; and the wall time of `make run` (a full `airflow dags test`) against the steps run in one process
(`python -m etl.pipeline`).

Import times are medians over BENCH_IMPORT_REPEAT fresh interpreters (default 7), measured inside each one, so
interpreter start-up is excluded; run times are medians over BENCH_REPEAT runs (default 1: a run takes ~20 s).
Goals: the DAG module within PARSE_RATIO_GOAL times the same-shape no-op DAG (what the dag-processor pays on
every parse for the project's own imports and settings); an Airflow run <= 30 s.
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/bench_airflow.py`

from bench.bench_pipeline import timed  # noqa: E402
from bench.import_probe import AIRFLOW_IMPORTS, import_probe  # noqa: E402
from bench.same_shape import same_shape_source  # noqa: E402
from etl.steps import DAG_ID  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402

PARSE_RATIO_GOAL = 1.3
AIRFLOW_RUN_GOAL_S = 30.0


def probe(dag_file: Path, env: dict[str, str], airflow_imports: str = AIRFLOW_IMPORTS) -> dict[str, float]:
    """Import times (ms) measured inside one fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", import_probe(airflow_imports), str(dag_file)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"importing {dag_file} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def parsed_dag(dag_file: Path, env: dict[str, str]):
    """The DAG object of `dag_file`, imported here with the bench's settings."""
    import importlib.util

    os.environ.update(env)
    spec = importlib.util.spec_from_file_location("bench_dag", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def median_probe(dag_file: Path, env: dict[str, str], repeat: int, **kwargs: str) -> dict[str, float]:
    """The median of each import time over `repeat` fresh interpreters."""
    samples = [probe(dag_file, env, **kwargs) for _ in range(repeat)]
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def timed_seconds(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def make(target: str, home: Path, env: dict[str, str]) -> None:
    """`make <target>` with the embedded Airflow in `home`: the users' own door (migrate, then `make run`)."""
    result = subprocess.run(["make", "--no-print-directory", target, f"AIRFLOW_HOME_DIR={home}"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"make {target} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def main() -> int:
    import_repeat = int(os.environ.get("BENCH_IMPORT_REPEAT", "7"))
    run_repeat = int(os.environ.get("BENCH_REPEAT", "1"))
    work = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    home = work / "airflow_home"
    env = {**os.environ, "ENV_FILE": str(work / "none.env"), "RUNS_DIR": str(work / "runs"),
           "RESULTS_DIR": str(work / "results"), "STORAGE_BACKEND": "local", "DATA_URL": BUNDLED_DATA.as_uri(),
           "PUSHGATEWAY_URL": "", "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    make("airflow-db", home, env)
    dag_file = ROOT / "dags" / f"{DAG_ID}.py"
    same_shape_dag = work / "same_shape_dag.py"
    same_shape_dag.write_text(same_shape_source(parsed_dag(dag_file, env)), encoding="utf-8")
    probe(dag_file, env)  # warm the file caches and Airflow's config before measuring

    import_airflow = median_probe(dag_file, env, import_repeat, airflow_imports="import airflow")["airflow_ms"]
    same_shape = median_probe(same_shape_dag, env, import_repeat)["dag_ms"]
    this_dag = median_probe(dag_file, env, import_repeat)
    operators, pipeline_dag = this_dag["airflow_ms"], this_dag["dag_ms"]

    airflow_runs = [timed_seconds(make, "run", home, env) for _ in range(run_repeat)]
    in_process_runs = [timed([sys.executable, "-m", "etl.pipeline", "--run-id", f"bench{n}"], env)[0]
                       for n in range(run_repeat)]
    airflow_run, in_process = statistics.median(airflow_runs), statistics.median(in_process_runs)

    rows = [
        ("import airflow", f"{import_airflow:.0f} ms", ""),
        ("airflow.sdk + operators", f"{operators:.0f} ms", ""),
        ("same-shape no-op DAG", f"{same_shape:.1f} ms", ""),
        ("this DAG", f"{pipeline_dag:.1f} ms", ""),
        ("  parse ratio", f"{pipeline_dag / same_shape:.2f}x", (pipeline_dag / same_shape, PARSE_RATIO_GOAL, "x")),
        ("pipeline in one process", f"{in_process:.1f} s", ""),
        ("make run (dags test)", f"{airflow_run:.1f} s", (airflow_run, AIRFLOW_RUN_GOAL_S, "s")),
        ("  Airflow's overhead", f"{airflow_run - in_process:.1f} s", ""),
    ]
    print(f"airflow benchmark: imports median of {import_repeat}, runs median of {run_repeat}")
    missed = []
    for name, value, goal in rows:
        verdict = ""
        if goal:
            measured, limit, unit = goal
            verdict = f"<= {limit:g} {unit}  " + ("ok" if measured <= limit else "MISSED")
            if measured > limit:
                missed.append(name)
        print(f"{name:<26}{value:>10}  {verdict}")
    if missed:
        print("goals missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
