"""The whole pipeline without Airflow, on the bundled data: artifacts, checksums, quality at the operating
threshold, reproducibility, the candidates (also one that cannot be fitted), isolation between runs, the quality
gate, and the step-by-step command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest

from etl import catalog, champion
from etl.dataset import FEATURES, ID, features_and_labels
from etl.pipeline import execute_step, run_all
from etl.steps import STEP, STEPS
from tests.support.data import BUNDLED_CSV, BUNDLED_SHA256, few_malignant_csv, open_run
from utils.config import CANDIDATE_NAMES, PROJECT_ROOT
from utils.errors import ArtifactError, ConfigError, QualityGateError, TrainingError
from utils.files import sha256_file

PUBLISHED = {"model.joblib", "metrics.json", "roc_curve.png", "precision_recall_curve.png",
             "confusion_matrix.png", "calibration_curve.png", "decision_curve.png", "report.md",
             "validation_report.json", "training_profile.json", "training_ids.json", "comparison.json",
             "comparison.md", "report.html", "manifest.json"}
assert {*catalog.PUBLISHED, catalog.MANIFEST} == PUBLISHED  # the list a user reads in the README
DETERMINISTIC_METRICS = (*catalog.TEST_METRICS, "confusion_matrix", "cv", "model", "operating_threshold",
                         "at_default_threshold", "candidates", "internal_validation", "intervals", "calibration",
                         "decision_curve", "clinical_direction", "quality_gate")


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


def test_no_published_file_names_a_path_of_the_machine_that_trained_it(finished_run):
    run, settings, _ = finished_run
    folder = published_folder(run, settings)
    machine_paths = (str(PROJECT_ROOT), str(settings.results_dir.parent), str(Path.home()))
    for path in folder.iterdir():
        text = path.read_bytes().decode("utf-8", "replace")
        assert not [where for where in machine_paths if where in text], path.name
    manifest = json.loads((folder / catalog.MANIFEST).read_text())
    assert manifest["settings"]["BUNDLED_DATA_PATH"] == "data/BreastCancer.csv"
    assert manifest["settings"]["RESULTS_DIR"] == "…/results"
    assert manifest["data"]["location"] == "data/BreastCancer.csv"


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


def test_default_run_reaches_the_target_recall_and_says_how_sure_it_is(finished_run):
    """The clinic's target: at the operating threshold chosen on the training rows (out of fold, repeated CV), at
    least 97% of the held-out malignant cases are found; every figure carries its interval and its counts."""
    run, settings, _ = finished_run
    metrics = json.loads((published_folder(run, settings) / "metrics.json").read_text())
    assert metrics["recall"] >= 0.97 and metrics["roc_auc"] >= 0.99
    assert metrics["target_recall"] == settings.target_recall == 0.97 and metrics["target_reached"] is True
    assert metrics["at_default_threshold"]["decision_threshold"] == 0.5
    assert 0 < metrics["operating_threshold"] < 0.5 == metrics["at_default_threshold"]["decision_threshold"]
    assert metrics["decision_threshold"] == metrics["operating_threshold"]
    recall, cm = metrics["intervals"]["recall"], metrics["confusion_matrix"]
    assert (recall["successes"], recall["trials"]) == (cm["tp"], cm["tp"] + cm["fn"])
    assert recall["lower"] < recall["estimate"] == metrics["recall"] <= recall["upper"]
    internal = metrics["internal_validation"]
    assert internal["repeats"] == settings.cv_repeats and internal["rows"] == metrics["rows_train"]
    assert internal["intervals"]["recall"]["lower"] >= 0.9 and internal["intervals"]["roc_auc"]["lower"] >= 0.95
    for name in ("roc_auc", "pr_auc", "brier_score", "calibration_intercept", "calibration_slope"):
        interval = metrics["intervals"][name]
        assert interval["lower"] <= interval["estimate"] <= interval["upper"], name
        assert interval["replicates"] == settings.bootstrap_replicates, name
    assert abs(internal["intervals"]["calibration_intercept"]["estimate"]) < 0.3  # no class-weight shift
    assert metrics["quality_gate"]["passed"] and len(metrics["quality_gate"]["checks"]) == 4


def test_every_candidate_is_cross_validated_and_the_winner_chosen_by_the_selection_metric(finished_run):
    run, _, summaries = finished_run
    metrics = json.loads(run.file(catalog.METRICS).read_text())
    assert [candidate["name"] for candidate in metrics["candidates"]] == list(CANDIDATE_NAMES)
    assert all(candidate["status"] == "trained" and set(candidate["cv"]) == set(catalog.CV_METRICS)
               for candidate in metrics["candidates"])
    means = {c["name"]: c["cv"]["roc_auc"]["mean"] for c in metrics["candidates"]}
    assert means[metrics["model"]] >= max(means.values()) - 0.001  # the best, or tied with it and simpler
    assert metrics["cv"] == run.record("train", metrics["model"])["cv"]
    assert set(summaries["train"]) == set(CANDIDATE_NAMES) and summaries["select"]["failed_candidates"] == []
    for name in CANDIDATE_NAMES:
        folder = run.path / catalog.CANDIDATES_DIR / name
        assert {p.name for p in folder.iterdir()} >= {catalog.CANDIDATE_MODEL, catalog.OUT_OF_FOLD, catalog.TRAIN_INFO}
    oof = pd.read_csv(run.path / catalog.CANDIDATES_DIR / metrics["model"] / catalog.OUT_OF_FOLD)
    assert oof[ID].tolist() == pd.read_csv(run.file(catalog.TRAIN))[ID].tolist() and oof["probability"].notna().all()
    report = run.file(catalog.REPORT).read_text()
    assert all(f"| {name} |" in report or f"| **{name}** (selected) |" in report for name in CANDIDATE_NAMES)
    assert all(f"## {section}" in report for section in ("How the threshold was chosen", "Calibration", "Quality gate",
                                                         "The 2×2 table", "Clinical utility: the decision curve"))
    assert "At 0.5 the same model would miss" in report


def test_model_artifact_decides_at_the_operating_threshold_and_handles_missing_values(finished_run):
    run, settings, _ = finished_run
    model = joblib.load(published_folder(run, settings) / "model.joblib")
    metrics = json.loads((published_folder(run, settings) / "metrics.json").read_text())
    assert model.threshold == metrics["operating_threshold"]
    pipeline = model.estimator_.estimator  # FixedThresholdClassifier around the frozen, fitted pipeline
    assert [name for name, _ in pipeline.steps] == ["impute", "scale", "model"]
    row = pd.DataFrame([[5, 1, 1, 1, 2, None, 3, 1, 1]], columns=FEATURES, dtype="float64")
    assert model.predict(row).tolist() == [0]
    features, _, _ = features_and_labels(pd.read_csv(run.file(catalog.TEST)))
    probabilities = model.predict_proba(features)[:, 1]
    between = (probabilities >= model.threshold) & (probabilities < 0.5)
    assert between.any()  # cases flagged only thanks to the lower threshold
    assert model.predict(features[between]).tolist() == [1] * int(between.sum())
    assert pipeline.predict(features[between]).tolist() == [0] * int(between.sum())


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
    published = [p for p in settings.results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(p.name for p in published if p.name != "latest") == [published_folder(run, settings).name]


def test_quality_gate_failure_stops_publication(make_settings):
    """The gate applies at the operating threshold: one chosen for 60% recall cannot show the 97% minimum."""
    settings = make_settings(min_roc_auc=1.0, min_recall=0.97, target_recall=0.6, target_confidence=0.0)
    run = open_run(settings, "strict-gate")
    with pytest.raises(QualityGateError, match=r"roc_auc on the repeated out-of-fold probabilities of the training "
                                               r"rows: the lower 95% bound 0\.\d+ < 1\.0000 \(MIN_ROC_AUC; "):
        run_all(run, settings)
    metrics = json.loads(run.file(catalog.METRICS).read_text())
    assert metrics["quality_gate"]["passed"] is False and metrics["operating_threshold"] > 0.5
    assert run.record("evaluate")["quality_gate_passed"] is False  # recorded, so the chain stays checkable
    with pytest.raises(QualityGateError, match="records a failed quality gate"):
        execute_step(STEP["compare"], run, settings)
    with pytest.raises(ArtifactError, match="compare.json is missing"):
        execute_step(STEP["upload"], run, settings)
    # nothing published: only the history (with the failed run) and its lock
    assert sorted(path.name for path in settings.results_dir.iterdir()) == [champion.LOCK, champion.HISTORY]
    assert [row["reason"].split(":")[0] for row in champion.read_history(settings.results_dir)] == [
        "failed at evaluate"]


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
            execute_step(step, run, settings, "logreg" if step.per_candidate else None)


def test_a_candidate_that_cannot_fit_the_data_leaves_the_others_results(make_settings, tmp_path):
    """With 3 malignant training Ids and 2 folds, linear_svm's internal 3-fold calibration cannot be fitted; the
    others can: the run goes on with them, and records and reports why linear_svm is missing."""
    data = few_malignant_csv(tmp_path / "few.csv")
    settings = make_settings(data_url=data.as_uri(), data_allowed_dirs=(tmp_path,), cv_folds=2, min_recall=0.0,
                             min_roc_auc=0.0)
    run = open_run(settings, "one-fails")
    summaries = run_all(run, settings)
    assert "cannot be fitted" in summaries["train"]["linear_svm"]["failed"]
    failure = json.loads((run.path / catalog.CANDIDATES_DIR / "linear_svm" / catalog.CANDIDATE_FAILURE).read_text())
    assert failure["error_type"] == "TrainingError" and "less than 3 examples" in failure["error"]
    selected = run.record("select")
    assert selected["failed_candidates"] == ["linear_svm"]
    statuses = {c["name"]: c["status"] for c in selected["candidates"]}
    assert statuses == {**dict.fromkeys(CANDIDATE_NAMES, "trained"), "linear_svm": "failed"}
    assert all("roc_auc" in c["cv"] for c in selected["candidates"] if c["status"] == "trained")
    assert selected["model"] != "linear_svm" and set(selected["inputs"]) >= {
        catalog.candidate_file(name, catalog.CANDIDATE_MODEL) for name in ("logreg", "random_forest")}
    assert selected["target_reached"] is False  # 3 malignant cases cannot show 97% recall with 95% confidence
    report = run.file(catalog.REPORT).read_text()
    assert "| linear_svm | failed: TrainingError: candidate linear_svm cannot be fitted" in report
    assert published_folder(run, settings).is_dir()


def test_when_no_candidate_can_be_trained_select_fails_naming_each(make_settings, tmp_path):
    data = few_malignant_csv(tmp_path / "few.csv")
    settings = make_settings(data_url=data.as_uri(), data_allowed_dirs=(tmp_path,), cv_folds=2,
                             candidates="linear_svm")
    run = open_run(settings, "none-trains")
    with pytest.raises(TrainingError, match=r"no candidate could be trained.*linear_svm: TrainingError: candidate "
                                            r"linear_svm cannot be fitted"):
        run_all(run, settings)
    assert not run.file(catalog.MODEL).exists()
    (row,) = champion.read_history(settings.results_dir)  # the failed run is in the history; no pointer
    assert (row["run_id"], row["promoted"], row["model"]) == ("none-trains", "false", "")
    assert row["reason"].startswith("failed at select: TrainingError: no candidate could be trained")
    assert row["data_sha256"] == sha256_file(data) and "\n" not in row["reason"]
    assert champion.read_pointer(settings.results_dir) is None


def test_steps_as_separate_commands_share_the_run_id(tmp_path):
    env = {"PATH": os.environ["PATH"], "ENV_FILE": str(tmp_path / "none.env"),
           "RUNS_DIR": str(tmp_path / "runs"), "RESULTS_DIR": str(tmp_path / "results"), "RUN_ID": "cli",
           "DATA_URL": BUNDLED_CSV.as_uri(), "STORAGE_BACKEND": "local"}
    for step in STEPS:
        result = subprocess.run([sys.executable, "-m", "etl", step.name], env=env, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        units = [f"{step.name}[{name}]" for name in CANDIDATE_NAMES] if step.per_candidate else [step.name]
        assert all(f"step {unit}: finished" in result.stderr for unit in units), result.stderr
        json.loads(result.stdout)
    one = subprocess.run([sys.executable, "-m", "etl", "train", "--candidate", "linear_svm"], env=env, text=True,
                         capture_output=True, cwd=tmp_path, timeout=300)
    assert one.returncode == 0 and "step train[linear_svm]: finished" in one.stderr, one.stderr
    assert "step train[logreg]" not in one.stderr and json.loads(one.stdout)["candidate"] == "linear_svm"
    assert (tmp_path / "results" / "latest" / "model.joblib").is_file()


def test_missing_drive_settings_fail_upload_after_a_complete_local_copy(make_settings, tmp_path):
    settings = make_settings(storage_backend="gdrive", google_credentials=tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="GDRIVE_FOLDER_ID"):
        run_all(open_run(settings, "drive-misconfigured"), settings)
    assert {p.name for p in published_folder_of(settings, "drive-misconfigured").iterdir()} == PUBLISHED
