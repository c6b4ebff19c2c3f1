"""The DAG's integrity: it parses, has exactly the intended tasks, edges, trigger rules, retries, timeouts and Params,
imports with an empty environment without pulling in the heavy libraries; and failure_end's notifier."""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.import_probe import import_probe
from etl import airflow_tasks, assets, notify
from etl.incoming_watch import POLL_SECONDS
from etl.run_folder import safe_run_id
from etl.steps import DAG_ID
from etl.steps import STEPS as STEP_TABLE
from tests.support.airflow_runs import DAG_FILE, DAGS_FOLDER, STEPS
from tests.support.data import SETTING_VARIABLES
from tests.support.servers import Answer, scripted_server
from utils.config import PROJECT_ROOT, VARIABLES, Settings, load_settings
from utils.data_url import data_url_pattern

# The settings a run may change ("Trigger DAG w/ config"): not DATA_ALLOWED_DIRS, the alert webhook, the
# credentials or the bundled data path, which a trigger must never redirect.
PER_RUN_SETTINGS = {"candidates", "test_size", "min_recall", "min_roc_auc", "promotion_metric", "promotion_tolerance",
                    "storage_backend", "data_url"}
SCHEMA_ANNOTATIONS = ("title", "description", "default", "redact")  # in the settings' schema; validate nothing
HEAVY_MODULES = ("pandas", "numpy", "sklearn", "pandera", "matplotlib", "PIL", "joblib", "googleapiclient",
                 "prometheus_client", "pydantic_settings", "utils.config")  # the last two: the settings model
EXPECTED_DOWNSTREAM = {
    "start": {"load"},
    "load": {"preprocess", "failure_end"},
    "preprocess": {"candidates", "failure_end"},
    "candidates": {"train", "failure_end"},
    "train": {"select"},  # a failed candidate is not a failed run: select decides
    "select": {"evaluate", "failure_end"},
    "evaluate": {"compare", "failure_end"},
    "compare": {"upload", "failure_end"},
    "upload": {"promote", "failure_end"},
    "promote": {"success_end", "failure_end"},
    "success_end": set(),
    "failure_end": set(),
}


def parsed_dags(tmp_path_factory: pytest.TempPathFactory, **settings: str):
    """The DAGs folder parsed by Airflow's DagBag, with no settings from the shell or `.env` but `settings`."""
    with pytest.MonkeyPatch.context() as env:
        for name in SETTING_VARIABLES:
            env.delenv(name, raising=False)
        env.setenv("ENV_FILE", str(tmp_path_factory.mktemp("env") / "absent.env"))
        env.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))  # if this imports airflow first
        for name, value in settings.items():
            env.setenv(name, value)
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    return parsed_dags(tmp_path_factory)


@pytest.fixture(scope="module")
def approval_dag(tmp_path_factory: pytest.TempPathFactory):
    """The DAG as parsed with APPROVAL_REQUIRED=true and a 30-minute APPROVAL_TIMEOUT."""
    return parsed_dags(tmp_path_factory, APPROVAL_REQUIRED="true", APPROVAL_TIMEOUT="30").dags[DAG_ID]


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_dags_folder_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids


def test_tasks_and_edges_are_exactly_the_pipeline(dag):
    assert {task_id: set(task.downstream_task_ids) for task_id, task in dag.task_dict.items()} == EXPECTED_DOWNSTREAM


def test_failure_end_runs_when_any_step_fails_and_success_end_when_all_succeed(dag):
    from airflow.sdk import TriggerRule

    assert dag.get_task("failure_end").trigger_rule == TriggerRule.ONE_FAILED
    assert set(dag.get_task("failure_end").upstream_task_ids) == {*STEPS, "candidates"} - {"train"}
    assert dag.get_task("select").trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    assert all(dag.get_task(task_id).trigger_rule == TriggerRule.ALL_SUCCESS
               for task_id in dag.task_ids if task_id not in ("failure_end", "select", "success_end"))
    assert dag.get_task("success_end").trigger_rule == TriggerRule.NONE_FAILED  # promote may end skipped
    assert dag.leaves and {task.task_id for task in dag.leaves} == {"success_end", "failure_end"}


def test_with_approval_required_a_reviewer_approves_between_upload_and_promote(approval_dag):
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import TriggerRule

    approve = approval_dag.get_task(airflow_tasks.APPROVAL_TASK)
    assert isinstance(approve, HITLOperator)
    assert approve.upstream_task_ids == {"upload"} and approve.downstream_task_ids == {"promote", "failure_end"}
    assert approve.options == ["Approve", "Reject"] and approve.defaults == ["Reject"]  # a timeout rejects
    assert approve.response_timeout == timedelta(minutes=30)
    assert approve._pre_execute_hook is airflow_tasks.skip_unless_promoting
    assert approval_dag.get_task("promote").trigger_rule == TriggerRule.NONE_FAILED  # runs when approve is skipped
    assert set(approval_dag.get_task("failure_end").upstream_task_ids) == (
        {*STEPS, "candidates", airflow_tasks.APPROVAL_TASK} - {"train"})
    assert "review" in approve.body and "upload" in approve.body


def test_the_reviewers_answer_becomes_promotes_input(dag, approval_dag):
    def context(dag, answer):
        return {"dag": dag, "ti": SimpleNamespace(xcom_pull=lambda task_ids: answer)}

    user = {"id": "7", "name": "dr.house"}
    assert airflow_tasks.approval_answer(context(dag, {"chosen_options": ["Approve"]})) is None
    assert airflow_tasks.approval_answer(context(approval_dag, None)) is None
    assert airflow_tasks.approval_answer(context(approval_dag, {"chosen_options": ["Approve"],
                                                                "responded_by_user": user})) == {
        "approved": True, "by": "dr.house", "reason": "approved by dr.house"}
    rejected = airflow_tasks.approval_answer(context(approval_dag, {"chosen_options": ["Reject"],
                                                                    "responded_by_user": user}))
    assert not rejected["approved"] and rejected["reason"].startswith("rejected by dr.house")
    timed_out = airflow_tasks.approval_answer(context(approval_dag, {"chosen_options": ["Reject"],
                                                                     "responded_by_user": None}))
    assert not timed_out["approved"] and timed_out["reason"].startswith("approval timed out")


def test_steps_call_the_etl_functions_and_record_their_failures(dag):
    for step in STEPS:
        if step == "train":
            continue
        task = dag.get_task(step)
        assert task.python_callable is airflow_tasks.run_step and task.op_kwargs == {"step": step}
        assert task.on_failure_callback == [airflow_tasks.record_step_failure]
    assert dag.get_task("failure_end").python_callable is airflow_tasks.end_with_failure


def test_train_is_mapped_over_the_candidates_task_and_named_by_candidate(dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    train = dag.get_task("train")
    assert isinstance(train, MappedOperator)
    assert train.partial_kwargs["python_callable"] is airflow_tasks.run_step
    assert train.map_index_template == "{{ task.op_kwargs['candidate'] }}"
    assert train.upstream_task_ids == {"candidates"}
    assert dag.get_task("candidates").python_callable is airflow_tasks.list_candidates
    assert dag.get_task("candidates").op_kwargs == {"step": "train"}


def test_the_candidates_task_lists_the_runs_candidates(dag):
    context = {"dag": dag, "params": {"candidates": ["linear_svm", "logreg"]}}
    assert airflow_tasks.list_candidates("train", **context) == [{"step": "train", "candidate": "linear_svm"},
                                                                 {"step": "train", "candidate": "logreg"}]


def test_the_tasks_are_the_step_table_in_its_order_with_its_retries_and_timeouts(dag):
    for step, after in itertools.pairwise(STEP_TABLE):
        expected = {"candidates" if after.per_candidate else after.name} | (set() if step.per_candidate
                                                                            else {"failure_end"})
        assert dag.get_task(step.name).downstream_task_ids == expected, step.name
    assert dag.get_task("start").downstream_task_ids == {STEP_TABLE[0].name}
    assert dag.get_task("success_end").upstream_task_ids == {STEP_TABLE[-1].name}
    assert {step.name: (dag.get_task(step.name).retries, dag.get_task(step.name).execution_timeout)
            for step in STEP_TABLE} == {step.name: (step.retries, step.timeout) for step in STEP_TABLE}


def test_network_steps_retry_with_exponential_backoff_and_every_step_has_a_timeout(dag):
    retries = {step: dag.get_task(step).retries for step in STEPS}
    assert retries["load"] >= 2 and retries["upload"] >= 2 and retries["train"] >= 1
    assert retries["preprocess"] == 0 and retries["evaluate"] == 0
    for task_id in (*STEPS, "failure_end"):
        task = dag.get_task(task_id)
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=1), task_id
        assert task.depends_on_past is False
        if task.retries:
            assert task.retry_exponential_backoff > 1 and task.max_retry_delay <= timedelta(hours=1), task_id


def test_run_policy(dag):
    assert dag.schedule == "@once" and type(dag.timetable).__name__ == "OnceTimetable"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is False
    assert dag.dagrun_timeout is not None


def test_the_scoring_dag_runs_for_a_new_champion_and_for_a_batch_its_watcher_sees_in_incoming_dir(dagbag):
    watched = {asset.name: [(watcher.name, *watcher.trigger.serialize()) for watcher in asset.watchers]
               for asset in dagbag.dags[assets.SCORING_DAG_ID].schedule.objects}
    assert watched == {assets.CHAMPION_NAME: [], assets.INCOMING_NAME: [(
        assets.INCOMING_WATCHER, "etl.incoming_watch.IncomingBatchTrigger",  # INCOMING_DIR's default, made absolute
        {"folder": str(PROJECT_ROOT / "data" / "incoming"), "poll_seconds": POLL_SECONDS})]}


def test_params_are_the_per_run_settings_and_default_to_the_settings(dag):
    defaults = load_settings()
    assert set(dag.params) == PER_RUN_SETTINGS
    assert {name: dag.params[name] for name in dag.params} == {
        name: list(value) if isinstance(value := getattr(defaults, name), tuple) else value for name in dag.params}
    for name in dag.params:
        field = Settings.model_fields[name]
        assert dag.params.get_param(name).description == f"{VARIABLES[name]}: {field.description}", name


def test_params_validate_as_the_settings_json_schema_says(dag):
    """Each Param carries every constraint the settings' JSON schema has for its field (type, choices, bounds),
    and data_url also a pattern no wider than DATA_ALLOWED_DIRS (which the schema cannot express)."""
    schema = Settings.model_json_schema(by_alias=False)["properties"]
    extra = {"data_url": {"pattern": data_url_pattern(load_settings().data_allowed_dirs)},
             "candidates": {"uniqueItems": True}}
    for name in dag.params:
        expected = {key: value for key, value in schema[name].items() if key not in SCHEMA_ANNOTATIONS}
        assert expected.get("type") or expected.get("enum"), f"{name}: the settings' schema constrains nothing"
        assert dag.params.get_param(name).schema == {**expected, **extra.get(name, {})}, name


@pytest.mark.parametrize(("name", "value"), [
    ("candidates", ["xgboost"]), ("candidates", []), ("candidates", ["logreg", "logreg"]), ("candidates", "logreg"),
    ("test_size", 0), ("test_size", 1), ("test_size", "0.2"), ("min_recall", 1.5),
    ("min_roc_auc", -0.1), ("storage_backend", "s3"), ("data_url", "ftp://example.org/data.csv"),
])
def test_params_reject_bad_values(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=name):
        params[name] = value


def test_params_accept_good_values(dag):
    params = copy.deepcopy(dag.params)
    for name, value in {"candidates": ["linear_svm", "logreg"], "test_size": 0.3, "min_recall": 1, "min_roc_auc": 0,
                        "promotion_metric": "brier_score", "promotion_tolerance": -0.1,
                        "storage_backend": "local", "data_url": (PROJECT_ROOT / "data" / "x.csv").as_uri()}.items():
        params[name] = value
    assert params.validate()["candidates"] == ["linear_svm", "logreg"]


# --- the task adapters ------------------------------------------------------------------------------------------

def test_params_override_the_environment_and_the_run_start_is_the_logical_date(dag, monkeypatch, tmp_path):
    monkeypatch.setenv("CANDIDATES", "random_forest")
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    logical = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    run_id = "manual__2030-05-06T07:08:09+00:00"
    # Undeclared conf keys reach the params unvalidated: a non-setting, and settings a trigger must not change.
    undeclared = {"not_a_setting": 1, "data_allowed_dirs": "/", "alert_webhook_url": "http://evil.example/hook",
                  "runs_dir": str(tmp_path / "elsewhere")}
    context = {"dag": dag, "params": {"candidates": ["linear_svm"], **undeclared}, "run_id": run_id,
               "dag_run": SimpleNamespace(logical_date=logical, run_after=logical + timedelta(hours=1))}

    run, settings = airflow_tasks.run_and_settings(context)

    assert (settings.candidates, settings.seed) == (("linear_svm",), 7)
    assert settings.alert_webhook_url == "" and settings.runs_dir == tmp_path / "runs"
    assert settings.data_allowed_dirs == Settings.model_fields["data_allowed_dirs"].default
    assert (run.run_id, run.path, run.declared_start) == (run_id, tmp_path / "runs" / safe_run_id(run_id), logical)
    assert run.path.is_dir()


def test_a_manual_run_without_logical_date_starts_when_it_was_due():
    due = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert airflow_tasks.run_start({"dag_run": SimpleNamespace(logical_date=None, run_after=due)}) == due


# --- importing the DAG file in a fresh interpreter --------------------------------------------------------------

def import_dag_in_subprocess(tmp_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Import the DAG file with `env -i`-like environment (PATH, HOME + `extra_env`) and print what
    it imported, its import time next to Airflow's own, and the load task's retry delay."""
    script = import_probe(extra=f"""{{"tasks": sorted(module.dag.task_ids),
        "heavy": [name for name in {HEAVY_MODULES!r} if name in sys.modules],
        "retry_delay": module.dag.get_task("load").retry_delay.total_seconds()}}""")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", script, str(DAG_FILE)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


def test_dag_imports_with_an_empty_environment_and_without_heavy_libraries(tmp_path, capsys):
    result = import_dag_in_subprocess(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["tasks"] == sorted(EXPECTED_DOWNSTREAM)
    assert report["heavy"] == []
    with capsys.disabled():
        print(f"\n[DAG import] airflow + operators: {report['airflow_ms']:.0f} ms; "
              f"the DAG module on top: {report['dag_ms']:.1f} ms (`make bench`: against a same-shape no-op DAG)")


def test_retry_delay_comes_from_airflow_config(tmp_path):
    result = import_dag_in_subprocess(tmp_path, {"AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "7"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1])["retry_delay"] == 7


def test_a_bad_setting_in_the_environment_breaks_the_dag_with_its_name(tmp_path):
    result = import_dag_in_subprocess(tmp_path, {"CANDIDATES": "logreg,xgboost"})
    assert result.returncode != 0
    assert "ConfigError" in result.stderr and "CANDIDATES='xgboost'" in result.stderr


# --- failure_end's notifier (no Airflow) ------------------------------------------------------------------------

FAILURE = notify.StepFailure(task_id="train", error_type="MemoryError", error="out of memory", try_number=2,
                             log_url="http://127.0.0.1:8080/dags/x/runs/r/tasks/train?try_number=2")


def test_alert_names_the_task_the_error_and_the_log(tmp_path):
    notify.record_failure(tmp_path, FAILURE)
    alert = notify.build_alert(DAG_ID, "run-1", ["train"], notify.read_failure(tmp_path), tmp_path)
    assert alert["task_id"] == "train" and alert["error_type"] == "MemoryError"
    assert "train (try 2): MemoryError: out of memory" in alert["text"] and FAILURE.log_url in alert["text"]


def test_alert_without_a_recorded_failure_names_the_failed_task(tmp_path):
    alert = notify.build_alert(DAG_ID, "run-1", ["upload"], notify.read_failure(tmp_path), tmp_path)
    assert alert["task_id"] == "upload" and "no error was recorded" in alert["text"]


def test_a_rerun_step_clears_the_failure_marks(tmp_path):
    notify.record_failure(tmp_path, FAILURE)
    notify.mark_failed(tmp_path, {"text": "x"})
    notify.clear_failure(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_webhook_receives_the_alert_as_json(tmp_path):
    alert = notify.build_alert(DAG_ID, "run-1", ["train"], FAILURE, tmp_path)
    with scripted_server(Answer(200, b"ok", "text/plain")) as hook:
        notify.send_alert(alert, hook.url)
    [request] = hook.requests
    assert request["method"] == "POST" and request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == alert


def test_a_failing_webhook_is_logged_without_its_secret_path_and_raised(tmp_path, caplog):
    alert = notify.build_alert(DAG_ID, "run-1", ["train"], FAILURE, tmp_path)
    with scripted_server(Answer(500, b"no", "text/plain")) as hook:
        secret_url = hook.url.replace("/BreastCancer.csv", "/T000/B000/secret-token")
        with pytest.raises(notify.AlertDeliveryError, match="HTTP 500"):
            notify.send_alert(alert, secret_url)
    assert "NOT delivered" in caplog.text and "secret-token" not in caplog.text
