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

from etl import artifacts, evaluate, preprocess, train, upload
from etl.dataset import FEATURES, ID
from etl.pipeline import run_all
from tests.conftest import BUNDLED_SHA256
from utils.config import PROJECT_ROOT
from utils.errors import ArtifactError, ConfigError, QualityGateError
from utils.files import sha256_file

PUBLISHED = {"model.joblib", "metrics.json", "roc_curve.png", "precision_recall_curve.png",
             "confusion_matrix.png", "calibration_curve.png", "report.md", "validation_report.json", "manifest.json"}
DETERMINISTIC_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc",
                         "brier_score", "confusion_matrix", "cv")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete run on the bundled data, shared by the read-only assertions below."""
    root = tmp_path_factory.mktemp("pipeline")
    from utils.config import load_settings

    settings = load_settings(env={}, env_file=root / "none.env", data_url=(PROJECT_ROOT / "data" /
                             "BreastCancer.csv").as_uri(), runs_dir=root / "runs", results_dir=root / "results",
                             storage_backend="local", run_id="first")
    summaries = run_all(settings)
    return settings, summaries


def published_folder(settings) -> Path:
    return settings.results_dir / json.loads(
        (settings.runs_dir / settings.run_id / artifacts.UPLOAD_INFO).read_text())["destinations"]["local"]


def published_folder_of(settings) -> Path:
    """The run's local results folder, found by name (for runs whose upload did not finish)."""
    (folder,) = settings.results_dir.glob(f"*_{settings.run_id}")
    return folder


def test_run_publishes_every_artifact_with_matching_checksums(finished_run):
    settings, summaries = finished_run
    folder = published_folder(settings)
    assert {p.name for p in folder.iterdir()} == PUBLISHED
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == PUBLISHED - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest, name
    assert manifest["data"]["sha256"] == BUNDLED_SHA256 and manifest["data"]["rows"] == 699
    assert manifest["run_id"] == "first" and manifest["settings"]["SEED"] == 42
    assert manifest["packages"]["scikit-learn"] and manifest["git_commit"]
    assert (settings.results_dir / "latest").resolve() == folder.resolve()
    assert folder.name.endswith("_first") and folder.name[:15] == summaries["upload"]["stamp"]


def test_model_meets_the_quality_the_data_allows(finished_run):
    settings, _ = finished_run
    metrics = json.loads((published_folder(settings) / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.93 and metrics["roc_auc"] >= 0.98
    assert metrics["quality_gate"]["passed"] is True
    assert {"precision", "recall", "f1", "pr_auc", "specificity", "confusion_matrix", "cv"} <= set(metrics)
    cm = metrics["confusion_matrix"]
    assert cm["tp"] + cm["fn"] + cm["fp"] + cm["tn"] == metrics["rows_test"]


def test_model_artifact_is_one_pipeline_that_handles_missing_values(finished_run):
    settings, _ = finished_run
    model = joblib.load(published_folder(settings) / "model.joblib")
    assert [name for name, _ in model.steps] == ["impute", "scale", "model"]
    row = pd.DataFrame([[5, 1, 1, 1, 2, None, 3, 1, 1]], columns=FEATURES, dtype="float64")
    assert model.predict(row).tolist() == [0]


def test_test_ids_never_appear_in_training(finished_run):
    settings, _ = finished_run
    folder = settings.runs_dir / settings.run_id
    train_ids = set(pd.read_csv(folder / artifacts.TRAIN)[ID])
    test_ids = set(pd.read_csv(folder / artifacts.TEST)[ID])
    assert train_ids and test_ids and not train_ids & test_ids


def test_charts_are_png_and_report_names_the_verdict_and_embeds_every_chart(finished_run):
    settings, _ = finished_run
    folder = published_folder(settings)
    report = (folder / "report.md").read_text()
    assert "**PASSED**" in report
    for name in artifacts.CHARTS:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report


def test_same_data_and_seed_give_identical_metrics(finished_run, make_settings):
    settings, _ = finished_run
    again = make_settings(run_id="second")
    run_all(again)
    first = json.loads((settings.runs_dir / "first" / "metrics.json").read_text())
    second = json.loads((again.runs_dir / "second" / "metrics.json").read_text())
    assert {k: first[k] for k in DETERMINISTIC_METRICS} == {k: second[k] for k in DETERMINISTIC_METRICS}


def test_runs_with_different_ids_keep_to_their_own_folders(finished_run, make_settings):
    settings, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in (settings.runs_dir / "first").iterdir()}
    other = make_settings(run_id="other", runs_dir=settings.runs_dir, results_dir=settings.results_dir,
                          seed=7)
    run_all(other)
    assert {p: p.stat().st_mtime_ns for p in (settings.runs_dir / "first").iterdir()} == before
    assert len([p for p in settings.results_dir.iterdir() if p.name.endswith(("_first", "_other"))]) == 2


def test_upload_retry_replaces_the_published_folder_without_duplicates(make_settings):
    settings = make_settings(run_id="retry")
    run_all(settings)
    upload.run(settings)
    published = [p for p in settings.results_dir.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in published if p.name != "latest") == [published_folder(settings).name]


def test_quality_gate_failure_stops_publication(make_settings):
    settings = make_settings(run_id="strict-gate", min_roc_auc=1.0, min_recall=1.0)
    with pytest.raises(QualityGateError, match=r"recall 0\.\d+ < 1\.0000 \(MIN_RECALL\)"):
        run_all(settings)
    metrics = json.loads((settings.runs_dir / "strict-gate" / "metrics.json").read_text())
    assert metrics["quality_gate"]["passed"] is False
    with pytest.raises(QualityGateError, match="records a failed quality gate"):
        upload.run(settings)
    assert not settings.results_dir.exists() or not any(settings.results_dir.iterdir())


def test_tampered_model_is_refused(make_settings):
    settings = make_settings(run_id="tamper")
    run_all(settings)
    model_path = settings.runs_dir / "tamper" / artifacts.MODEL
    model_path.write_bytes(model_path.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="model.joblib has sha256"):
        evaluate.run(settings)


def test_steps_demand_their_inputs(make_settings):
    settings = make_settings(run_id="empty")
    with pytest.raises(ArtifactError, match="load.json is missing: it is written by the 'load' step"):
        preprocess.run(settings)
    with pytest.raises(ArtifactError, match="load.json is missing"):
        train.run(settings)
    with pytest.raises(ArtifactError, match="load.json is missing"):
        evaluate.run(settings)
    with pytest.raises(ArtifactError, match="load.json is missing"):
        upload.run(settings)


@pytest.mark.parametrize("model", ["random_forest", "gradient_boosting", "svm"])
def test_every_selectable_model_trains_and_evaluates(make_settings, model):
    settings = make_settings(run_id=model, model=model, min_recall=0.0, min_roc_auc=0.0)
    run_all(settings)
    metrics = json.loads((settings.runs_dir / model / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["roc_auc"] >= 0.97 and metrics["accuracy"] >= 0.9


def test_steps_as_separate_commands_share_the_run_id(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PROJECT_ROOT), "ENV_FILE": str(tmp_path / "none.env"),
           "RUNS_DIR": str(tmp_path / "runs"), "RESULTS_DIR": str(tmp_path / "results"), "RUN_ID": "cli",
           "DATA_URL": (PROJECT_ROOT / "data" / "BreastCancer.csv").as_uri(), "STORAGE_BACKEND": "local"}
    for step in ("load", "preprocess", "train", "evaluate", "upload"):
        result = subprocess.run([sys.executable, "-m", f"etl.{step}"], env=env, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"step {step}: finished" in result.stderr
        json.loads(result.stdout)
    assert (tmp_path / "results" / "latest" / "model.joblib").is_file()


def test_missing_drive_settings_fail_upload_after_a_complete_local_copy(make_settings, tmp_path):
    settings = make_settings(run_id="drive-misconfigured", storage_backend="gdrive",
                             google_credentials=tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="GDRIVE_FOLDER_ID"):
        run_all(settings)
    assert {p.name for p in published_folder_of(settings).iterdir()} == PUBLISHED
