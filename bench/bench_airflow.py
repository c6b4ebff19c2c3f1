"""Benchmark: what Airflow adds. The DAG file's import time on top of Airflow's own imports (next to `import
airflow` and to a one-task DAG), and the wall time of `make run` (a full `airflow dags test`) against the six steps run
in one process (`python -m etl.pipeline`).

Import times are medians over BENCH_IMPORT_REPEAT fresh interpreters (default 7), measured inside each one, so
interpreter start-up is excluded; run times are medians over BENCH_REPEAT runs (default 1: a run takes ~20 s).
Goals: the DAG module <= 50 ms on top of the Airflow imports it needs; an Airflow run <= 30 s.
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
from etl.steps import DAG_ID  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402

DAG_IMPORT_GOAL_MS = 50.0
AIRFLOW_RUN_GOAL_S = 30.0
ONE_TASK_DAG = ("from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
                "with DAG(dag_id='one_task', schedule='@once', catchup=False):\n    EmptyOperator(task_id='only')\n")


def probe(dag_file: Path, env: dict[str, str], airflow_imports: str = AIRFLOW_IMPORTS) -> dict[str, float]:
    """Import times (ms) measured inside one fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", import_probe(airflow_imports), str(dag_file)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"importing {dag_file} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


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
    one_task_dag = work / "one_task_dag.py"
    one_task_dag.write_text(ONE_TASK_DAG, encoding="utf-8")
    probe(dag_file, env)  # warm the file caches and Airflow's config before measuring

    import_airflow = median_probe(dag_file, env, import_repeat, airflow_imports="import airflow")["airflow_ms"]
    one_task = median_probe(one_task_dag, env, import_repeat)["dag_ms"]
    this_dag = median_probe(dag_file, env, import_repeat)
    operators, pipeline_dag = this_dag["airflow_ms"], this_dag["dag_ms"]

    airflow_runs = [timed_seconds(make, "run", home, env) for _ in range(run_repeat)]
    in_process_runs = [timed([sys.executable, "-m", "etl.pipeline", "--run-id", f"bench{n}"], env)[0]
                       for n in range(run_repeat)]
    airflow_run, in_process = statistics.median(airflow_runs), statistics.median(in_process_runs)

    rows = [
        ("import airflow", f"{import_airflow:.0f} ms", ""),
        ("airflow.sdk + operators", f"{operators:.0f} ms", ""),
        ("one-task DAG on top", f"{one_task:.1f} ms", ""),
        ("this DAG on top", f"{pipeline_dag:.1f} ms", (pipeline_dag, DAG_IMPORT_GOAL_MS, "ms")),
        ("  of which its own", f"{pipeline_dag - one_task:.1f} ms", ""),
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
