"""The stack's monitoring: statsd-exporter mapping, Prometheus config and alert rules, Grafana dashboards.

Checked with the real promtool, and live: a real Prometheus scrapes a real Pushgateway fed by a real run of the
pipeline, plus a stand-in statsd-exporter (tests/monitoring_support.py) fed with the StatsD packets a real
Airflow sends; every dashboard and rule expression is then evaluated through Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from etl import catalog
from etl.evaluate import INTERVAL_METRICS, PUSHED_METRICS
from etl.run_folder import safe_run_id
from etl.steps import DAG_ID
from tests.support.data import BUNDLED_CSV, SETTING_VARIABLES
from tests.support.monitoring_tools import (
    DASHBOARDS_DIR,
    MONITORING,
    PROMETHEUS_DIR,
    Query,
    StatsdExporter,
    StatsdMapping,
    airflow_metric_registry,
    airflow_statsd_lines,
    all_queries,
    dashboard_queries,
    http_get,
    loopback_prometheus_config,
    parse_statsd,
    prometheus_query,
    require_tool,
    rule_queries,
    series_names,
)
from tests.support.processes import Processes, wait_until
from tests.support.scoring import batch, write_batch
from tests.support.servers import Answer, free_port, scripted_server
from utils.config import PROJECT_ROOT

# The test-set figures the evaluate step pushes as pipeline_model_metric (npv beside PUSHED_METRICS); those of
# INTERVAL_METRICS also with their 95% bounds (pipeline_model_metric_lower, _upper).
PUSHED_FIGURES = (*PUSHED_METRICS, "npv")
TASK_IDS = ("start", "load", "preprocess", "train", "evaluate", "upload", "success_end", "failure_end")
RULES_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
HEALTH = DASHBOARDS_DIR / "airflow-health.json"
QUALITY = DASHBOARDS_DIR / "model-quality.json"
READY_TIMEOUT_SECONDS = 20.0
SCRAPES_BEFORE_QUERYING = 3


# --- what a scheduler, DAG processor and triggerer send during one run of the DAG ------------------------------

def airflow_run_packets(registry: dict[str, dict[str, Any]]) -> list[str]:
    """StatsD lines of one run of the pipeline's DAG (one failed task, one failed earlier run), as Airflow
    3.3 sends them with STATSD_PREFIX=airflow and legacy names on."""
    def lines(stat: str, value: float, **tags: str) -> list[str]:
        return airflow_statsd_lines(registry, stat, value, **tags)

    packets = [*lines("scheduler_heartbeat", 1), *lines("dag_processor_heartbeat", 1),
               *lines("triggerer_heartbeat", 1), *lines("dag_processing.import_errors", 0),
               *lines("dag_processing.total_parse_time", 0.4), *lines("dagbag_size", 1),
               *lines("dagrun.duration.success", 61_000, dag_id=DAG_ID),
               *lines("dagrun.duration.failed", 12_000, dag_id=DAG_ID),
               *lines("dagrun.schedule_delay", 900, dag_id=DAG_ID),
               *lines("ti_successes", 1), *lines("ti_failures", 1),
               *lines("operator_successes", 1, operator_name="PythonOperator"),
               *lines("operator_failures", 1, operator_name="PythonOperator"),
               *lines("pool.open_slots", 128, pool_name="default_pool")]
    for gauge, value in (("executor.open_slots", 3), ("executor.queued_tasks", 0), ("executor.running_tasks", 1)):
        packets += lines(gauge, value, executor_class_name="LocalExecutor")
    for number, task_id in enumerate(TASK_IDS):
        state = "failed" if task_id == "failure_end" else "success"
        packets += [*lines("ti.start", 1, dag_id=DAG_ID, task_id=task_id),
                    *lines("task.duration", 250 * (number + 1), dag_id=DAG_ID, task_id=task_id),
                    *lines("task.queued_duration", 40, dag_id=DAG_ID, task_id=task_id),
                    *lines("ti.finish", 1, dag_id=DAG_ID, task_id=task_id, state=state)]
    return packets


@pytest.fixture(scope="module")
def registry() -> dict[str, dict[str, Any]]:
    return airflow_metric_registry()


@pytest.fixture(scope="module")
def exporter(registry: dict[str, dict[str, Any]]) -> StatsdExporter:
    exporter = StatsdExporter(StatsdMapping.load())
    exporter.feed(airflow_run_packets(registry))
    return exporter


# --- promtool --------------------------------------------------------------------------------------------------

def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_prometheus_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES_FILES)} rule files found" in result.stdout


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", *map(str, RULES_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests in monitoring/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_checks() -> list[dict[str, Any]]:
    return [check for path in RULE_TESTS for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
            for check in case.get("alert_rule_test", [])]


def test_every_alert_has_unit_tests_showing_it_fire_and_stay_silent() -> None:
    alerts = {query.source.split(": ", 1)[1] for path in RULES_FILES for query in rule_queries(path)}
    firing = {check["alertname"] for check in alert_checks() if check.get("exp_alerts")}
    silent = {check["alertname"] for check in alert_checks() if not check.get("exp_alerts")}
    assert alerts - firing == set(), "alerts never shown firing in a promtool test"
    assert alerts - silent == set(), "alerts never shown silent in a promtool test"


def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: with one alert's expression replaced by one that never fires, they do."""
    rules = yaml.safe_load(RULES_FILES[0].read_text(encoding="utf-8"))
    rules["groups"][0]["rules"][0]["expr"] = "vector(1) == 0"
    broken = tmp_path / "rules" / RULES_FILES[0].name
    broken.parent.mkdir()
    broken.write_text(yaml.safe_dump(rules), encoding="utf-8")
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for path in RULE_TESTS:
        (tests_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    result = promtool("test", "rules", *map(str, tests_dir.glob("*.yml")), cwd=tmp_path)
    assert result.returncode != 0
    assert rules["groups"][0]["rules"][0]["alert"] in result.stdout + result.stderr


# --- the statsd-exporter mapping -------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "name", "labels"), [
    ("airflow.dagrun.duration.failed.breast_cancer_pipeline:12000|ms", "airflow_dagrun_duration_seconds",
     {"dag_id": "breast_cancer_pipeline", "state": "failed"}),
    ("airflow.dag.breast_cancer_pipeline.train.duration:1500|ms", "airflow_task_duration_seconds",
     {"dag_id": "breast_cancer_pipeline", "task_id": "train"}),
    ("airflow.dag.breast_cancer_pipeline.train.queued_duration:15|ms", "airflow_task_queued_duration_seconds",
     {"dag_id": "breast_cancer_pipeline", "task_id": "train"}),
    ("airflow.ti.finish.breast_cancer_pipeline.load.up_for_retry:1|c", "airflow_ti_finish_total",
     {"dag_id": "breast_cancer_pipeline", "task_id": "load", "state": "up_for_retry"}),
    ("airflow.ti.finish.breast_cancer_pipeline.group__inner.success:1|c", "airflow_ti_finish_total",
     {"dag_id": "breast_cancer_pipeline", "task_id": "group__inner", "state": "success"}),
    ("airflow.executor.open_slots.LocalExecutor:4|g", "airflow_executor_open_slots", {"executor": "LocalExecutor"}),
    ("airflow.operator_failures_PythonOperator:1|c", "airflow_operator_failures_total", {"operator": "PythonOperator"}),
    ("airflow.scheduler_heartbeat:1|c", "airflow_scheduler_heartbeat_total", {}),
    ("airflow.dag_processing.import_errors:2|g", "airflow_dag_processing_import_errors", {}),
    ("airflow.some.new-metric:1|c", "airflow_some_new_metric", {}),
])
def test_mapping_turns_airflow_names_into_labelled_series(line: str, name: str, labels: dict[str, str]) -> None:
    sample = parse_statsd(line)[0]
    mapped = StatsdMapping.load().map(sample.name, sample.kind)
    assert (mapped.name, dict(mapped.labels), mapped.dropped) == (name, labels, False)


@pytest.mark.parametrize("line", ["airflow.dagrun.duration.success:61000|ms", "airflow.ti.finish:1|c",
                                  "airflow.task.duration:250|ms", "airflow.executor.open_slots:3|g",
                                  "airflow.pool.open_slots:128|g"])
def test_mapping_drops_the_plain_duplicates_of_labelled_series(line: str) -> None:
    sample = parse_statsd(line)[0]
    assert StatsdMapping.load().map(sample.name, sample.kind).dropped


def test_mapping_uses_the_current_histogram_keys_and_refuses_the_removed_ones(tmp_path: Path) -> None:
    assert StatsdMapping.load().default_buckets[:2] == (0.1, 0.5)
    legacy = tmp_path / "mapping.yml"
    legacy.write_text("defaults: {timer_type: histogram, buckets: [1, 2]}\nmappings: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="defaults.timer_type.*|defaults.buckets.*"):
        StatsdMapping.load(legacy)


def test_the_exporter_stand_in_renders_counters_gauges_and_timer_histograms() -> None:
    exporter = StatsdExporter(StatsdMapping.load())
    exporter.feed(["airflow.scheduler_heartbeat:1|c\nairflow.scheduler_heartbeat:2|c|@0.5",
                   "airflow.dag_processing.import_errors:3|g", "airflow.dag_processing.import_errors:-1|g",
                   "airflow.dag.d.t.duration:200|ms", "airflow.dag.d.t.duration:2000|ms"])
    page = exporter.exposition()
    assert "airflow_scheduler_heartbeat_total 5.0" in page
    assert "airflow_dag_processing_import_errors 2.0" in page
    assert 'airflow_task_duration_seconds_bucket{dag_id="d",task_id="t",le="0.5"} 1' in page
    assert 'airflow_task_duration_seconds_bucket{dag_id="d",task_id="t",le="+Inf"} 2' in page
    assert 'airflow_task_duration_seconds_sum{dag_id="d",task_id="t"} 2.2' in page
    assert 'airflow_task_duration_seconds_count{dag_id="d",task_id="t"} 2' in page


def test_every_metric_airflow_can_send_maps_without_a_conflict(registry: dict[str, dict[str, Any]]) -> None:
    """Each of the installed Airflow's registered metrics, with made-up ids, goes through the mapping without two
    StatsD names landing on one Prometheus name with different types or labels (the exporter would refuse)."""
    exporter = StatsdExporter(StatsdMapping.load())
    for stat, metric in registry.items():
        exporter.feed(airflow_statsd_lines(registry, stat, 1, **{key: f"x_{key}" for key in metric["name_variables"]}))
    assert "airflow_ti_finish_total" in exporter.signatures


def test_every_airflow_series_of_the_dashboards_and_alerts_comes_from_the_mapping(exporter: StatsdExporter) -> None:
    used = {name for query in all_queries() for name in series_names(query.expression, "airflow_")}
    assert used, "no Airflow series in the dashboards and rules?"
    assert used - exporter.names() == set(), "series no mapping rule produces from Airflow's metric names"


# --- Grafana provisioning --------------------------------------------------------------------------------------

def test_dashboards_use_the_provisioned_data_source_and_are_unique() -> None:
    source = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    boards = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]
    assert {board["title"] for board in boards} == {"Airflow health", "Model quality"}
    assert len({board["uid"] for board in boards}) == len(boards)
    for board in boards:
        panels = [panel for panel in board["panels"] if panel["type"] != "row"]
        assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"]), board["title"]
        for panel in panels:
            assert panel["targets"], f"{board['title']}: {panel['title']} has no query"
            assert {panel["datasource"]["uid"], *(target["datasource"]["uid"] for target in panel["targets"])} \
                == {uid}, f"{board['title']}: {panel['title']}"


def test_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./monitoring/grafana/dashboards"] == provider["providers"][0]["options"]["path"]


# --- live: Prometheus, Pushgateway, the pipeline ---------------------------------------------------------------

@dataclass(frozen=True)
class Live:
    prometheus: str  # base URL
    metrics: dict[str, Any]  # metrics.json of the pipeline run whose metrics were pushed
    scoring: dict[str, Any]  # the summary of a drifting batch scored with the run's model (`python -m etl.predict`)
    comparison: dict[str, Any]  # the run's comparison.json (the first run: promoted, no champion before it)


@pytest.fixture(scope="module")
def metrics_page(exporter: StatsdExporter) -> Iterator[str]:
    """The stand-in statsd-exporter's /metrics, served on loopback; yields host:port."""
    with scripted_server(Answer(body=exporter.exposition().encode(),
                                content_type="text/plain; version=0.0.4")) as server:
        yield urlsplit(server.url).netloc


def run_pipeline(folder: Path, pushgateway: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The real pipeline, every step, then a drifting batch scored with its model, pushing to `pushgateway`;
    returns the run's metrics.json, the batch's summary and the run's comparison.json."""
    env = {key: value for key, value in os.environ.items() if key not in SETTING_VARIABLES}
    env.update(ENV_FILE=str(folder / "absent.env"), RUNS_DIR=str(folder / "runs"),
               RESULTS_DIR=str(folder / "results"), DATA_URL=BUNDLED_CSV.as_uri(),
               STORAGE_BACKEND="local", PUSHGATEWAY_URL=pushgateway, RUN_ID="monitoring")
    result = subprocess.run([sys.executable, "-m", "etl.pipeline"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    drifting = write_batch(folder, "drifting", batch(300, seed=11, drift=True))
    scored = subprocess.run([sys.executable, "-m", "etl.predict", str(drifting), "--output", str(folder / "p.csv")],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    run = folder / "runs" / safe_run_id(env["RUN_ID"])
    return (json.loads((run / catalog.METRICS).read_text(encoding="utf-8")), json.loads(scored.stdout),
            json.loads((run / catalog.COMPARISON).read_text(encoding="utf-8")))


def wait_for_data(base_url: str, expression: str) -> None:
    """Until `expression` returns something: scrapes happen every 500 ms, and this waits for a few."""
    wait_until(lambda: prometheus_query(base_url, expression), 30, f"data for {expression}", interval=0.2,
               details=lambda: f"up: {prometheus_query(base_url, 'up')}")


def start_server(processes: Processes, argv: list[str], ready_url: str) -> None:
    """Start a server and wait until `ready_url` answers; fail at once, with its log, if it exits."""
    server = processes.start(Path(argv[0]).name, argv, dict(os.environ))

    def ready() -> bytes:
        if server.process.poll() is not None:
            raise AssertionError(f"{argv[0]} exited with {server.process.returncode}:\n{server.log_tail()}")
        return http_get(ready_url, timeout=1.0)

    wait_until(ready, READY_TIMEOUT_SECONDS, ready_url, interval=0.1, details=server.log_tail)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, metrics_page: str) -> Iterator[Live]:
    prometheus, pushgateway = require_tool("prometheus"), require_tool("prometheus-pushgateway")
    folder = tmp_path_factory.mktemp("monitoring")
    gateway, address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = loopback_prometheus_config({"prometheus": address, "airflow": metrics_page, "pushgateway": gateway},
                                        "500ms", folder)
    processes = Processes(folder / "logs")
    try:
        start_server(processes, [pushgateway, f"--web.listen-address={gateway}"], f"http://{gateway}/-/ready")
        start_server(processes, [prometheus, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
                                 f"--web.listen-address={address}"], f"http://{address}/-/ready")
        metrics, scoring, comparison = run_pipeline(folder, f"http://{gateway}")
        base_url = f"http://{address}"
        wait_for_data(base_url, f"count(count_over_time(up[1m]) >= {SCRAPES_BEFORE_QUERYING} and up == 1) == 3")
        wait_for_data(base_url, "pipeline_last_success_timestamp_seconds")
        wait_for_data(base_url, "pipeline_scoring_feature_psi")
        wait_for_data(base_url, "pipeline_promoted")
        yield Live(base_url, metrics, scoring, comparison)
    finally:
        processes.stop_all()


@pytest.mark.slow
@pytest.mark.parametrize("query", all_queries(), ids=lambda query: query.source)
def test_every_dashboard_and_rule_expression_evaluates(live: Live, query: Query) -> None:
    prometheus_query(live.prometheus, query.expression)


@pytest.mark.slow
@pytest.mark.parametrize("query", dashboard_queries(HEALTH), ids=lambda query: query.source)
def test_every_airflow_health_panel_shows_data(live: Live, query: Query) -> None:
    assert prometheus_query(live.prometheus, query.expression), f"{query.source}: no data"


def gate(metrics: dict[str, Any]) -> dict[str, float]:
    return metrics["quality_gate"]["thresholds"]


def series_key(labels: dict[str, str]) -> str:
    """A series' key in the tables below: its `metric` (or `feature`) label, then its `rows` and `bound` labels
    when it has them (a check of the quality gate); "" for a series without them."""
    return " ".join(labels[name] for name in ("metric", "feature", "rows", "bound") if name in labels)


def checks(metrics: dict[str, Any], value: Callable[[dict[str, Any]], float]) -> dict[str, float]:
    """`value` of each check of the quality gate, keyed as its pipeline_quality_gate_bound series (a check whose
    bound could not be computed is not pushed)."""
    return {f"{check['figure']} {check['rows']} {check['bound']}": value(check)
            for check in metrics["quality_gate"]["checks"] if check["value"] is not None}


def intervals(metrics: dict[str, Any], end: str) -> dict[str, float]:
    """The `end` (lower, estimate, upper) of the 95% interval of each test-set figure pushed with its bounds (those
    that could be computed)."""
    return {name: metrics["intervals"][name][end] for name in INTERVAL_METRICS
            if metrics["intervals"][name]["lower"] is not None}


# Per Model quality panel (and query refId): the values it must show, by series_key ("" = no label), computed
# from the run's metrics.json.
EXPECTED: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, float]]] = {
    ("Quality gate", "A"): lambda m: {"": float(m["quality_gate"]["passed"])},
    ("Recall (malignant found)", "A"): lambda m: {"": m["recall"]},
    ("Recall (malignant found)", "B"): lambda m: {"": m["intervals"]["recall"]["lower"]},
    ("Recall (malignant found)", "C"): lambda m: {"": m["intervals"]["recall"]["upper"]},
    ("ROC-AUC", "A"): lambda m: {"": m["roc_auc"]},
    ("ROC-AUC", "B"): lambda m: {"": m["intervals"]["roc_auc"]["lower"]},
    ("ROC-AUC", "C"): lambda m: {"": m["intervals"]["roc_auc"]["upper"]},
    ("Test rows", "A"): lambda m: {"": m["rows_test"]},
    ("Test rows", "B"): lambda m: {"": m["rows_train"]},
    ("Test-set metrics", "A"): lambda m: {name: m[name] for name in PUSHED_FIGURES},
    ("Test-set metrics with 95% CI", "A"): lambda m: intervals(m, "lower"),
    ("Test-set metrics with 95% CI", "B"): lambda m: intervals(m, "estimate"),
    ("Test-set metrics with 95% CI", "C"): lambda m: intervals(m, "upper"),
    ("Quality gate checks", "A"): lambda m: checks(m, lambda check: check["value"]),
    ("Quality gate checks", "B"): lambda m: checks(m, lambda check: check["minimum"]),
    ("Quality gate checks", "C"): lambda m: checks(m, lambda check: float(check["passed"])),
    ("Margin over the gate", "A"): lambda m: checks(m, lambda check: check["value"] - check["minimum"]),
    ("Gate minimums", "A"): lambda m: dict(gate(m)),
    ("Operating threshold", "A"): lambda m: {"": m["operating_threshold"]},
    ("Metrics over time", "A"): lambda m: {name: m[name] for name in PUSHED_FIGURES},
}
# The same for the scoring panels, by `feature` label, from the scored batch's summary.
SCORING_EXPECTED: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, float]]] = {
    ("Drift of the last scored batch (PSI per feature)", "A"): lambda s: dict(s["drift"]["psi"]),
    ("Drift of the last scored batch (PSI per feature)", "B"): lambda s: dict(s["drift"]["chance_psi"]),
    ("Drift of the last scored batch (PSI per feature)", "C"): lambda s: {
        name: float(name in s["drift"]["drifted_features"]) for name in s["drift"]["psi"]},
    ("Predicted malignant: last batch vs training", "A"): lambda s: {"": s["drift"]["predicted_malignant_share"]},
    ("Predicted malignant: last batch vs training", "B"): lambda s: {"": s["drift"]["training_malignant_share"]},
    ("Rows of the last scored batch", "A"): lambda s: {"": s["rows"]},
}
# And for champion vs challenger, from the run's comparison.json: its model was promoted (no champion before it).
COMPARISON_EXPECTED: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, float]]] = {
    ("Promoted", "A"): lambda c: {"": float(c["decision"] == "promote")},
    ("Champion vs challenger", "A"): lambda c: c["challenger"]["metrics"],
    ("Champion vs challenger", "B"): lambda c: c["challenger"]["metrics"],  # the champion now
}


@pytest.mark.slow
@pytest.mark.parametrize("query", dashboard_queries(QUALITY), ids=lambda query: query.source)
def test_every_model_quality_panel_shows_the_numbers_of_metrics_json(live: Live, query: Query) -> None:
    key = (query.panel, query.ref_id)
    sources = ((EXPECTED, live.metrics), (SCORING_EXPECTED, live.scoring), (COMPARISON_EXPECTED, live.comparison))
    wanted = next((table[key](values) for table, values in sources if key in table), None)
    assert wanted is not None, f"{query.source}: add the values this panel must show"
    shown = {series_key(series["metric"]): float(series["value"][1])
             for series in prometheus_query(live.prometheus, query.expression)}
    assert shown == pytest.approx(wanted, rel=1e-9)


@pytest.mark.slow
def test_a_drifting_batch_fires_the_drift_alert_for_each_drifted_feature(live: Live) -> None:
    assert live.scoring["drift"]["drifted_features"], "the batch was meant to drift"
    query = 'ALERTS{alertname="ScoringBatchDrift",alertstate="firing"}'
    wait_for_data(live.prometheus, query)
    firing = {series["metric"]["feature"] for series in prometheus_query(live.prometheus, query)}
    assert firing == set(live.scoring["drift"]["drifted_features"])


@pytest.mark.slow
def test_prometheus_loads_every_rule_and_evaluates_it_without_error(live: Live) -> None:
    deadline = time.monotonic() + 10
    while True:
        groups = json.loads(http_get(f"{live.prometheus}/api/v1/rules"))["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expected = {query.source.split(": ", 1)[1] for path in RULES_FILES for query in rule_queries(path)}
    assert {rule["name"] for rule in rules} == expected
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []


@pytest.mark.slow
def test_a_healthy_run_fires_no_pipeline_alert(live: Live) -> None:
    firing = prometheus_query(live.prometheus, 'ALERTS{alertname=~"Model.*|PipelineNoRecentSuccess"}')
    assert firing == []
    assert prometheus_query(live.prometheus, "pipeline_quality_gate_bound < ignoring(rows, bound) group_left() "
                                             "pipeline_quality_gate_threshold") == []
