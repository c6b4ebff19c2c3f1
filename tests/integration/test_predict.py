"""Scoring with a real published run: `make predict` / `python -m etl.predict` as processes, and the batch
scoring the DAG runs (etl/scoring.py) on real folders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etl import catalog, scoring
from etl.predict import PREDICTION_COLUMNS
from tests.support.data import BUNDLED_CSV
from tests.support.drive_fake import FOLDER_MIME, FakeDrive
from tests.support.scoring import batch, pipeline_env, point_champion_at, publish_run, write_batch
from utils.config import PROJECT_ROOT, load_settings
from utils.errors import DataValidationError
from utils.files import read_json, sha256_file


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The folder of two published runs (logreg, then random_forest) and each run's folder."""
    root = tmp_path_factory.mktemp("published")
    env = pipeline_env(root)
    first = publish_run(env, "first")
    second = publish_run(env, "second", CANDIDATES="random_forest")
    return root, first, second


@pytest.fixture
def results(published: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    """A copy of the published runs for one test (its own champion pointer, and `latest` at the second run)."""
    root, _, _ = published
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy, symlinks=True)
    (copy / catalog.CHAMPION).unlink()  # the pipeline promoted its first run; each test sets the pointer it needs
    return copy


def predict(tmp_path: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m etl.predict` as a process with RESULTS_DIR at tmp_path/results."""
    return subprocess.run([sys.executable, "-m", "etl.predict", *arguments], env=pipeline_env(tmp_path, **env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


def test_make_predict_scores_the_bundled_file_with_the_champion(results: Path, tmp_path: Path):
    pointer = read_json(point_champion_at(results / sorted(p.name for p in results.glob("*_first"))[0]))
    output = tmp_path / "out" / "predictions.csv"
    done = subprocess.run(["make", "--no-print-directory", "predict", f"INPUT={BUNDLED_CSV}", f"OUTPUT={output}"],
                          cwd=PROJECT_ROOT, env=pipeline_env(tmp_path), capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    predictions = pd.read_csv(output)
    assert list(predictions.columns) == PREDICTION_COLUMNS and len(predictions) == summary["rows"] == 699
    assert set(predictions["model_run_id"]) == {"first"} and set(predictions["model_sha256"]) == {
        pointer["model_sha256"]}
    assert predictions["probability_malignant"].between(0, 1).all()
    assert set(predictions["predicted_class"]) == {0, 1}
    labelled_at = pointer["operating_threshold"]  # the model's own threshold, not 0.5
    assert 0 < labelled_at < 0.5 and set(predictions["operating_threshold"]) == {labelled_at}  # the rule on every row
    assert ((predictions["probability_malignant"] >= labelled_at) == predictions["predicted_class"].astype(bool)).all()
    assert summary["model"]["source"].startswith("champion") and summary["model"]["name"] == pointer["name"]
    assert summary["accuracy"] > 0.93  # the bundled rows carry Class
    assert summary["drift"]["drifted"] is False and summary["drift"]["max_psi"] < 0.05


def test_samples_without_class_are_scored_and_a_drifted_batch_is_flagged(results: Path, tmp_path: Path):
    path = write_batch(tmp_path, "drifted", batch(500, seed=3, drift=True))
    done = predict(tmp_path, str(path), "--output", "p.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert "accuracy" not in summary and summary["rows"] == 500
    assert summary["drift"]["drifted"] is True and summary["drift"]["max_psi"] > 0.2
    drift = summary["drift"]  # each drifted feature is above both the threshold and what chance gives at 500 rows
    assert drift["rows"] == 500 and all(drift["psi"][name] > max(drift["threshold"], drift["chance_psi"][name])
                                        for name in drift["drifted_features"])
    assert summary["predicted_malignant_share"] > summary["drift"]["training_malignant_share"] + 0.2
    assert len(pd.read_csv(tmp_path / "p.csv")) == 500


def test_without_a_champion_the_newest_published_run_scores_and_the_summary_says_so(results: Path, tmp_path: Path):
    done = predict(tmp_path, str(BUNDLED_CSV))
    assert done.returncode == 0, done.stderr[-2000:]
    model = json.loads(done.stdout)["model"]
    assert model["run_id"] == "second" and "no champion.json yet" in model["source"]
    assert (tmp_path / catalog.PREDICTIONS).is_file()


GOOD_SAMPLES = ("Id,Cl.thickness,Cell.size,Cell.shape,Marg.adhesion,Epith.c.size,Bare.nuclei,Bl.cromatin,"
                "Normal.nucleoli,Mitoses\n1000025,5,1,1,1,2,1,3,1,1\n1002945,5,4,4,5,7,10,3,2,1\n")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda text: text.replace("\n1002945,5,4,4,5,7,10,3,2,1\n", "\n1002945,5,4,4,5,7,10,3,2,11\n"),
     r"line 3, column Mitoses: '11' fails in_range"),
    (lambda text: text.replace("\n1002945,5,4,4,5,7,10,3,2,1\n", "\n1002945,5,four,4,5,7,10,3,2,1\n"),
     r"line 3, column Cell.size: 'four' not a whole number"),
    (lambda text: text.replace("Mitoses", "Mitosis"), r"missing column\(s\) Mitoses; unexpected column\(s\) 'Mitosis'"),
    (lambda text: text.replace("\n1002945,5,4,4,5,7,10,3,2,1\n", "\n1002945,5,4,4,5,7,10,3,2\n"),
     r"line 3 has 9 fields, the header 10"),
])
def test_bad_input_is_an_error_naming_line_and_column_and_writes_nothing(results, tmp_path, change, expected):
    path = tmp_path / "bad.csv"
    path.write_text(change(GOOD_SAMPLES))
    done = predict(tmp_path, str(path))
    assert done.returncode == 1
    assert str(path) in done.stderr and re.search(expected, done.stderr), done.stderr
    assert not (tmp_path / catalog.PREDICTIONS).exists() and not list(tmp_path.glob(".predictions*"))


def test_a_changed_model_or_a_pointer_to_another_model_is_refused_before_loading(results: Path, tmp_path: Path):
    first = next(results.glob("*_first"))
    pointer = point_champion_at(first)
    (first / catalog.MODEL).write_bytes((first / catalog.MODEL).read_bytes() + b"tampered")
    done = predict(tmp_path, str(BUNDLED_CSV))
    assert done.returncode == 1 and "model.joblib has sha256" in done.stderr, done.stderr
    assert "changed after publication; publish the run again, or choose another with PREDICT_RUN" in done.stderr
    pointer.write_text(json.dumps({**read_json(pointer), "model_sha256": "0" * 64}))
    done = predict(tmp_path, str(BUNDLED_CSV))
    assert done.returncode == 1 and "champion.json pins model.joblib sha256 000000000000…, but" in done.stderr
    assert not (tmp_path / catalog.PREDICTIONS).exists()


def test_batches_are_scored_once_a_bad_one_stays_with_its_report_and_a_new_champion_rescores(results, tmp_path):
    first, second = next(results.glob("*_first")), next(results.glob("*_second"))
    point_champion_at(first)
    settings = load_settings(env_file=tmp_path / "none.env", results_dir=results, runs_dir=tmp_path / "runs",
                             incoming_dir=tmp_path / "incoming", processed_dir=tmp_path / "processed")
    incoming = settings.incoming_dir
    write_batch(incoming, "monday", batch(300, seed=5))
    write_batch(incoming, "tuesday", batch(200, seed=6, drift=True))
    bad = incoming / "broken.csv"
    bad.write_text("Id,Cl.thickness\n1,5\n")

    with pytest.raises(DataValidationError, match=r"(?s)1 batch\(es\) rejected .*broken\.csv: .*missing column"):
        scoring.score_pending(settings)
    scored = settings.results_dir / scoring.SCORING_RESULTS
    assert sorted(path.name for path in scored.iterdir()) == ["monday", "tuesday"]
    assert sorted(path.name for path in settings.processed_dir.iterdir()) == ["monday.csv", "tuesday.csv"]
    assert sorted(path.name for path in incoming.iterdir()) == [".claimed", "broken.csv", "broken.error.json"]
    report = read_json(incoming / "broken.error.json")
    assert report["sha256"] == sha256_file(bad) and "missing column(s)" in report["error"]
    monday = read_json(scored / "monday" / catalog.SCORING_SUMMARY)
    tuesday = read_json(scored / "tuesday" / catalog.SCORING_SUMMARY)
    assert (monday["drift"]["drifted"], tuesday["drift"]["drifted"]) == (False, True)
    assert monday["rows"] == 300 and monday["model"]["run_id"] == "first"
    first_predictions = (scored / "monday" / catalog.PREDICTIONS).read_bytes()

    again = scoring.score_pending(settings)  # the bad batch is unchanged: reported once, not failed again
    assert again["scored"] == again["rescored"] == [] and again["waiting_for_a_fix"] == ["broken.csv"]

    point_champion_at(second)
    rescored = scoring.score_pending(settings)
    assert sorted(item["batch"] for item in rescored["rescored"]) == ["monday", "tuesday"]
    assert read_json(scored / "monday" / catalog.SCORING_SUMMARY)["model"]["run_id"] == "second"
    assert (scored / "monday" / catalog.PREDICTIONS).read_bytes() != first_predictions

    write_batch(incoming, "monday", batch(10, seed=9))  # a name already used is refused, not scored over
    with pytest.raises(DataValidationError, match="a batch named 'monday' was already scored"):
        scoring.score_pending(settings)
    assert (incoming / "monday.error.json").is_file() and read_json(scored / "monday" / catalog.SCORING_SUMMARY)[
        "rows"] == 300


def test_a_killed_try_leaves_its_claim_and_the_retry_publishes_the_same_predictions(results, tmp_path):
    point_champion_at(next(results.glob("*_first")))
    settings = load_settings(env_file=tmp_path / "none.env", results_dir=results, runs_dir=tmp_path / "runs",
                             incoming_dir=tmp_path / "incoming", processed_dir=tmp_path / "processed")
    path = write_batch(settings.incoming_dir, "wednesday", batch(100, seed=7))
    path_bytes = path.read_bytes()
    expected = tmp_path / "expected.csv"
    assert predict(tmp_path, str(path), "--output", str(expected)).returncode == 0
    claimed = scoring.claim(settings.incoming_dir, path.name, settings.incoming_dir)
    assert claimed is not None and not path.exists()
    assert scoring.score_pending(settings)["scored"] == []  # its owner is alive: nobody else takes it
    claimed.release()  # as the kernel does when the scorer that claimed it is killed
    outcome = scoring.score_pending(settings)
    assert [item["batch"] for item in outcome["scored"]] == ["wednesday"]
    published = settings.results_dir / scoring.SCORING_RESULTS / "wednesday" / catalog.PREDICTIONS
    assert published.read_bytes() == expected.read_bytes()
    assert not claimed.path.exists() and (settings.processed_dir / "wednesday.csv").read_bytes() == path_bytes


def test_a_scored_batch_is_published_to_drive_too_when_configured(results, tmp_path, make_settings):
    point_champion_at(next(results.glob("*_first")))
    with FakeDrive() as fake:
        settings = make_settings(
            storage_backend="gdrive", gdrive_api_root=fake.root_url,
            google_credentials=fake.write_service_account_key(tmp_path / "secrets" / "drive_sa.json"),
            gdrive_folder_id=fake.create_folder("pipeline runs", shared_drive=True), results_dir=results,
            incoming_dir=tmp_path / "incoming", processed_dir=tmp_path / "processed")
        write_batch(settings.incoming_dir, "friday", batch(50, seed=8))
        outcome = scoring.score_pending(settings)
        (folder,) = [item for item in fake.files_in(settings.gdrive_folder_id) if item.mime_type == FOLDER_MIME]
        files = {item.name: item.content for item in fake.files_in(folder.id)}
    local = settings.results_dir / scoring.SCORING_RESULTS / "friday"
    assert folder.name == "scoring_friday" and [item["batch"] for item in outcome["scored"]] == ["friday"]
    assert files == {name: (local / name).read_bytes() for name in (catalog.PREDICTIONS, catalog.SCORING_SUMMARY)}
