"""The whole pipeline without Airflow, on the bundled data: artifacts, checksums, quality, reproducibility,
isolation between runs, the quality gate, and the step-by-step command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest

from etl import catalog
from etl.dataset import FEATURES, ID
from etl.pipeline import execute_step, run_all
from etl.steps import PUBLISHED as PUBLISHED_FILES
from etl.steps import STEP, STEPS
from tests.support.data import BUNDLED_CSV, BUNDLED_SHA256, open_run
from utils.errors import ArtifactError, ConfigError, QualityGateError
from utils.files import sha256_file

PUBLISHED = {"model.joblib", "metrics.json", "roc_curve.png", "precision_recall_curve.png",
             "confusion_matrix.png", "calibration_curve.png", "report.md", "validation_report.json",
             "training_profile.json", "manifest.json"}
assert {*PUBLISHED_FILES, catalog.MANIFEST} == PUBLISHED  # the list a user reads in the README
DETERMINISTIC_METRICS = (*catalog.TEST_METRICS, "confusion_matrix", "cv")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete run on the bundled data, shared by the read-only assertions below."""
    root = tmp_path_factory.mktemp("pipeline")
    from utils.config import load_settings

    settings = load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                             results_dir=root / "results", storage_backend="local")
    run = open_run(settings, "first")
    return run, settings, run_all(run, settings)


def published_folder(run, settings) -> Path:
    return settings.results_dir / json.loads(run.file(catalog.UPLOAD_INFO).read_text())["name"]


def published_folder_of(settings, run_id: str) -> Path:
    """The run's local results folder, found by name (for runs whose upload did not finish)."""
    (folder,) = settings.results_dir.glob(f"*_{run_id}")
    return folder


def test_run_publishes_every_artifact_with_matching_checksums(finished_run):
    run, settings, summaries = finished_run
    folder = published_folder(run, settings)
    assert {p.name for p in folder.iterdir()} == PUBLISHED
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == PUBLISHED - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest, name
    assert manifest["data"]["sha256"] == BUNDLED_SHA256 and manifest["data"]["rows"] == 699
    assert manifest["run_id"] == "first" and manifest["settings"]["SEED"] == 42
    assert manifest["packages"]["scikit-learn"] and manifest["git_commit"]
    assert (settings.results_dir / "latest").resolve() == folder.resolve()
    assert folder.name == summaries["upload"]["name"] == f"{run.stamp()}_first"


def test_model_meets_the_quality_the_data_allows(finished_run):
    run, settings, _ = finished_run
    metrics = json.loads((published_folder(run, settings) / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.93 and metrics["roc_auc"] >= 0.98
    assert metrics["quality_gate"]["passed"] is True
    assert {"precision", "recall", "f1", "pr_auc", "specificity", "confusion_matrix", "cv"} <= set(metrics)
    cm = metrics["confusion_matrix"]
    assert cm["tp"] + cm["fn"] + cm["fp"] + cm["tn"] == metrics["rows_test"]


def test_model_artifact_is_one_pipeline_that_handles_missing_values(finished_run):
    run, settings, _ = finished_run
    model = joblib.load(published_folder(run, settings) / "model.joblib")
    assert [name for name, _ in model.steps] == ["impute", "scale", "model"]
    row = pd.DataFrame([[5, 1, 1, 1, 2, None, 3, 1, 1]], columns=FEATURES, dtype="float64")
    assert model.predict(row).tolist() == [0]


def test_test_ids_never_appear_in_training(finished_run):
    run, _, _ = finished_run
    train_ids = set(pd.read_csv(run.file(catalog.TRAIN))[ID])
    test_ids = set(pd.read_csv(run.file(catalog.TEST))[ID])
    assert train_ids and test_ids and not train_ids & test_ids


def test_charts_are_png_and_report_names_the_verdict_and_embeds_every_chart(finished_run):
    run, settings, _ = finished_run
    folder = published_folder(run, settings)
    report = (folder / "report.md").read_text()
    assert "**PASSED**" in report
    for name in catalog.CHARTS:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report


def test_same_data_and_seed_give_identical_metrics(finished_run, make_settings):
    run, _, _ = finished_run
    again = make_settings()
    second_run = open_run(again, "second")
    run_all(second_run, again)
    first = json.loads(run.file(catalog.METRICS).read_text())
    second = json.loads(second_run.file(catalog.METRICS).read_text())
    assert {k: first[k] for k in DETERMINISTIC_METRICS} == {k: second[k] for k in DETERMINISTIC_METRICS}


def test_runs_with_different_ids_keep_to_their_own_folders(finished_run, make_settings):
    run, settings, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in run.path.iterdir()}
    other = make_settings(runs_dir=settings.runs_dir, results_dir=settings.results_dir, seed=7)
    run_all(open_run(other, "other"), other)
    assert {p: p.stat().st_mtime_ns for p in run.path.iterdir()} == before
    assert len([p for p in settings.results_dir.iterdir() if p.name.endswith(("_first", "_other"))]) == 2


def test_upload_retry_replaces_the_published_folder_without_duplicates(make_settings):
    settings = make_settings()
    run = open_run(settings, "retry")
    run_all(run, settings)
    execute_step(STEP["upload"], run, settings)
    published = [p for p in settings.results_dir.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in published if p.name != "latest") == [published_folder(run, settings).name]


def test_quality_gate_failure_stops_publication(make_settings):
    settings = make_settings(min_roc_auc=1.0, min_recall=1.0)
    run = open_run(settings, "strict-gate")
    with pytest.raises(QualityGateError, match=r"recall 0\.\d+ < 1\.0000 \(MIN_RECALL\)"):
        run_all(run, settings)
    metrics = json.loads(run.file(catalog.METRICS).read_text())
    assert metrics["quality_gate"]["passed"] is False
    assert run.record("evaluate")["quality_gate_passed"] is False  # recorded, so the chain stays checkable
    with pytest.raises(QualityGateError, match="records a failed quality gate"):
        execute_step(STEP["upload"], run, settings)
    assert not settings.results_dir.exists() or not any(settings.results_dir.iterdir())


def test_tampered_model_is_refused(make_settings):
    settings = make_settings()
    run = open_run(settings, "tamper")
    run_all(run, settings)
    model_path = run.file(catalog.MODEL)
    model_path.write_bytes(model_path.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="model.joblib has sha256"):
        execute_step(STEP["evaluate"], run, settings)


def test_steps_demand_their_inputs(make_settings):
    settings = make_settings()
    run = open_run(settings, "empty")
    for step in STEPS[1:]:
        with pytest.raises(ArtifactError, match="load.json is missing: it is written by the 'load' step"):
            execute_step(step, run, settings)


@pytest.mark.parametrize("model", ["random_forest", "gradient_boosting", "svm"])
def test_every_selectable_model_trains_and_evaluates(make_settings, model):
    settings = make_settings(model=model, min_recall=0.0, min_roc_auc=0.0)
    run = open_run(settings, model)
    run_all(run, settings)
    metrics = json.loads(run.file(catalog.METRICS).read_text())
    assert metrics["model"] == model and metrics["roc_auc"] >= 0.97 and metrics["accuracy"] >= 0.9


def test_steps_as_separate_commands_share_the_run_id(tmp_path):
    env = {"PATH": os.environ["PATH"], "ENV_FILE": str(tmp_path / "none.env"),
           "RUNS_DIR": str(tmp_path / "runs"), "RESULTS_DIR": str(tmp_path / "results"), "RUN_ID": "cli",
           "DATA_URL": BUNDLED_CSV.as_uri(), "STORAGE_BACKEND": "local"}
    for step in STEPS:
        result = subprocess.run([sys.executable, "-m", f"etl.{step.name}"], env=env, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"step {step.name}: finished" in result.stderr
        json.loads(result.stdout)
    assert (tmp_path / "results" / "latest" / "model.joblib").is_file()


def test_missing_drive_settings_fail_upload_after_a_complete_local_copy(make_settings, tmp_path):
    settings = make_settings(storage_backend="gdrive", google_credentials=tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="GDRIVE_FOLDER_ID"):
        run_all(open_run(settings, "drive-misconfigured"), settings)
    assert {p.name for p in published_folder_of(settings, "drive-misconfigured").iterdir()} == PUBLISHED
