"""End to end with the real Airflow 3 (`airflow dags test`, SQLite): a good run, a run on bad data that must fail
and alert, a run whose download fails twice and succeeds on Airflow's retry, and their isolation from each other.

Three Airflow runs in all, shared by the tests: the good run first, then the bad and the retried run at the same
time, in two Airflow homes (SQLite is not made for concurrent writers) sharing one RUNS_DIR and RESULTS_DIR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl import artifacts, notify
from tests.airflow_support import (
    STEPS,
    SUCCESSFUL_RUN,
    DagRunOutcome,
    Folders,
    clone_home,
    dags_test,
    finish,
    start_dags_test,
)
from tests.conftest import BUNDLED_CSV
from tests.http_support import Answer, scripted_server
from utils.files import read_json, run_stamp, sha256_file

pytestmark = pytest.mark.slow

GOOD_DATE = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
BAD_DATE = datetime(2030, 1, 2, 6, 0, tzinfo=UTC)
RETRIED_DATE = datetime(2030, 1, 3, 6, 0, tzinfo=UTC)
RUN_SPECIFIC_METRICS = ("run_id", "started_at", "data_location")


@pytest.fixture(scope="module")
def airflow_home(migrated_airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's Airflow home (SQLite)."""
    return clone_home(migrated_airflow_home, tmp_path_factory.mktemp("airflow_home"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Folders:
    root = tmp_path_factory.mktemp("pipeline")
    return Folders(root / "runs", root / "results")


@pytest.fixture(scope="module")
def good_run(airflow_home: Path, folders: Folders) -> DagRunOutcome:
    return dags_test(airflow_home, GOOD_DATE, folders.settings())


@dataclass(frozen=True)
class ConcurrentRuns:
    bad: DagRunOutcome
    retried: DagRunOutcome
    alerts: list[dict]
    download_requests: int


@pytest.fixture(scope="module")
def concurrent_runs(good_run: DagRunOutcome, airflow_home: Path, folders: Folders,
                    tmp_path_factory: pytest.TempPathFactory) -> ConcurrentRuns:
    """After the good run: a run on data with an out-of-range score, and at the same time a run whose download
    answers HTTP 500 twice (no download retries and no fallback, so Airflow's task retry must recover)."""
    bad_csv = tmp_path_factory.mktemp("data") / "bad.csv"
    lines = BUNDLED_CSV.read_text(encoding="utf-8").splitlines()
    cells = lines[4].split(",")
    cells[1] = '"11"'  # line 5, Cl.thickness: scores are 1-10
    bad_csv.write_text("\n".join([*lines[:4], ",".join(cells), *lines[5:]]) + "\n", encoding="utf-8")
    second_home = clone_home(airflow_home, tmp_path_factory.mktemp("airflow_home_2"))
    flaky = (Answer(500, b"down"), Answer(500, b"still down"), Answer(body=BUNDLED_CSV.read_bytes()))
    with scripted_server(Answer(200, b"ok", "text/plain")) as webhook, scripted_server(*flaky) as download:
        settings = folders.settings(ALERT_WEBHOOK_URL=webhook.url)
        bad = start_dags_test(airflow_home, BAD_DATE, settings, conf={"data_url": bad_csv.as_uri()})
        retried = start_dags_test(second_home, RETRIED_DATE, {**settings, "DATA_FALLBACK": "false"},
                                  conf={"data_url": download.url})
        outcomes = finish(bad, airflow_home, BAD_DATE), finish(retried, second_home, RETRIED_DATE)
    return ConcurrentRuns(*outcomes, [json.loads(request["body"]) for request in webhook.requests],
                          len(download.requests))


def published_files_match_manifest(folder: Path) -> None:
    manifest = read_json(folder / artifacts.MANIFEST)
    assert manifest["files"], f"{folder}: the manifest lists no files"
    for name, checksum in manifest["files"].items():
        assert sha256_file(folder / name) == checksum, f"{folder / name} differs from its manifest checksum"


def comparable_metrics(folder: Path) -> dict:
    metrics = read_json(folder / artifacts.METRICS)
    return {key: value for key, value in metrics.items() if key not in RUN_SPECIFIC_METRICS}


# --- a good run -------------------------------------------------------------------------------------------------

def test_good_run_succeeds_and_skips_failure_end(good_run: DagRunOutcome):
    assert good_run.returncode == 0, good_run.output[-3000:]
    assert good_run.state == "success"
    assert good_run.task_states == SUCCESSFUL_RUN


def test_good_run_publishes_checksummed_artifacts_stamped_with_the_logical_date(good_run, folders):
    [published] = folders.published(good_run)
    assert published.name.startswith(run_stamp(GOOD_DATE) + "_")
    assert {"model.joblib", "metrics.json", "report.md", "roc_curve.png", "manifest.json"} <= {
        path.name for path in published.iterdir()}
    published_files_match_manifest(published)
    assert (folders.results / "latest").resolve().parent == folders.results.resolve()


def test_good_run_leaves_no_failure_marks(good_run, folders):
    folder = folders.run_folder(good_run)
    assert (folder / artifacts.UPLOAD_INFO).is_file()
    assert not (folder / notify.FAILURE_FILE).exists() and not (folder / notify.FAILED_MARKER).exists()


def test_steps_pass_only_small_summaries_through_xcom(good_run):
    assert set(good_run.xcom_values) == set(STEPS)
    for step, value in good_run.xcom_values.items():
        assert len(value) < 2000, f"{step} pushed {len(value)} bytes to XCom"
        assert isinstance(json.loads(value), dict)
    assert json.loads(good_run.xcom_values["upload"])["stamp"] == run_stamp(GOOD_DATE)


def test_task_logs_carry_the_pipeline_loggers(good_run):
    for logger in ("pipeline.load", "pipeline.preprocess", "pipeline.train", "pipeline.evaluate", "pipeline.upload"):
        assert logger in good_run.output, f"no {logger} lines in the task logs"
    assert "step upload: finished" in good_run.output


# --- a run on bad data ------------------------------------------------------------------------------------------

def test_bad_data_fails_the_run_at_preprocess(concurrent_runs: ConcurrentRuns):
    bad = concurrent_runs.bad
    assert bad.returncode == 1
    assert bad.state == "failed"
    assert bad.task_states == {"start": "success", "load": "success", "preprocess": "failed",
                               **dict.fromkeys(("train", "evaluate", "upload", "success_end"), "upstream_failed"),
                               "failure_end": "success"}


def test_failure_end_alerts_the_webhook_once_with_the_cause(concurrent_runs):
    [alert] = concurrent_runs.alerts  # the retried run recovered: its failed tries must not alert
    assert alert["run_id"] == concurrent_runs.bad.run_id
    assert alert["task_id"] == "preprocess" and alert["failed_tasks"] == ["preprocess"]
    assert alert["error_type"] == "DataValidationError"
    assert "Cl.thickness" in alert["error"] and "preprocess" in alert["text"]
    assert alert["log_url"].endswith("/tasks/preprocess?try_number=1")


def test_failed_run_folder_is_marked_and_nothing_is_published(concurrent_runs, folders):
    folder = folders.run_folder(concurrent_runs.bad)
    assert read_json(folder / notify.FAILED_MARKER)["task_id"] == "preprocess"
    assert read_json(folder / notify.FAILURE_FILE)["error_type"] == "DataValidationError"
    assert not (folder / artifacts.MODEL).exists()
    assert folders.published(concurrent_runs.bad) == []


# --- a run that recovers through Airflow's retry ----------------------------------------------------------------

def test_download_failing_twice_succeeds_on_the_third_try(concurrent_runs):
    retried = concurrent_runs.retried
    assert retried.returncode == 0, retried.output[-3000:]
    assert retried.state == "success" and retried.task_states["failure_end"] == "skipped"
    assert retried.try_numbers["load"] == 3
    assert concurrent_runs.download_requests == 3


def test_retried_run_produces_the_same_model_and_metrics_as_a_clean_run(concurrent_runs, good_run, folders):
    [clean] = folders.published(good_run)
    [retried] = folders.published(concurrent_runs.retried)
    assert comparable_metrics(retried) == comparable_metrics(clean)
    assert sha256_file(retried / artifacts.MODEL) == sha256_file(clean / artifacts.MODEL)


# --- isolation --------------------------------------------------------------------------------------------------

def test_runs_one_after_another_and_concurrent_keep_to_their_own_files(concurrent_runs, good_run, folders):
    runs = (good_run, concurrent_runs.bad, concurrent_runs.retried)
    assert len({folders.run_folder(run) for run in runs}) == 3
    sources = [read_json(folders.run_folder(run) / artifacts.LOAD_INFO)["location"] for run in runs]
    assert sources[0] == BUNDLED_CSV.as_uri() and sources[1].endswith("/bad.csv") and sources[2].startswith("http")
    for run in (good_run, concurrent_runs.retried):
        [published] = folders.published(run)
        published_files_match_manifest(published)
        assert read_json(published / artifacts.MANIFEST)["run_id"] == run.run_id
