"""Times the DAG file's import inside a fresh interpreter: used by `make bench` and by the DAG's tests."""

AIRFLOW_IMPORTS = ("import airflow.sdk, airflow.providers.standard.operators.python, "
                   "airflow.providers.standard.operators.empty")
# Run as `python -c <probe> <dag file>`: times Airflow's imports, then the DAG file on top of them, and prints
# {"airflow_ms": ..., "dag_ms": ..., **extra}; `extra` is a dict expression that may use the imported `module`.
IMPORT_PROBE = """
import importlib.util, json, sys, time
started = time.perf_counter()
{airflow_imports}
imported = time.perf_counter()
spec = importlib.util.spec_from_file_location("probe_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
report = {{"airflow_ms": 1000 * (imported - started), "dag_ms": 1000 * (time.perf_counter() - imported)}}
print(json.dumps({{**report, **({extra})}}))
"""


def import_probe(airflow_imports: str = AIRFLOW_IMPORTS, extra: str = "{}") -> str:
    """The IMPORT_PROBE script for these Airflow imports and extra report fields."""
    return IMPORT_PROBE.format(airflow_imports=airflow_imports, extra=extra)
