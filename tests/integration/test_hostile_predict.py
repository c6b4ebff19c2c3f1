"""Issue 19, classes 1, 4 and 6 on a real published run: a model is loaded only from a published folder inside
RESULTS_DIR (a booby-trapped pickle proves nothing foreign ran), `make predict`'s input and output are checked,
and no cell written for people is a spreadsheet formula."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etl import catalog, champion
from etl.predict import load_published
from tests.support.data import BUNDLED_CSV
from tests.support.scoring import pipeline_env, point_champion_at, publish_run
from utils.config import load_settings
from utils.errors import ArtifactError, PipelineError
from utils.files import read_json, sha256_file, write_json_atomic

FORMULA_RUN_ID = "=HYPERLINK(1)"


class Trap:
    """A pickle that, when loaded, creates the file `marker`: what foreign code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RESULTS_DIR with one published run whose run id is a spreadsheet formula."""
    root = tmp_path_factory.mktemp("hostile")
    publish_run(pipeline_env(root), FORMULA_RUN_ID, CANDIDATES="logreg")
    return root / "results"


@pytest.fixture
def results(published: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(published, copy, symlinks=True)
    return copy


def trapped_run(folder: Path, marker: Path) -> Path:
    """A folder shaped like a published run whose model is the trap and whose manifest vouches for it."""
    folder.mkdir(parents=True)
    (folder / catalog.MODEL).write_bytes(pickle.dumps(Trap(marker)))
    write_json_atomic(folder / catalog.MANIFEST, {"run_id": "evil",
                                                  "files": {catalog.MODEL: sha256_file(folder / catalog.MODEL)}})
    return folder


def settings_for(results: Path, tmp_path: Path, **overrides: str):
    return load_settings(env_file=tmp_path / "none.env", results_dir=results, runs_dir=tmp_path / "runs",
                         incoming_dir=tmp_path / "incoming", processed_dir=tmp_path / "processed", **overrides)


def predict(tmp_path: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.predict", *arguments], env=pipeline_env(tmp_path, **env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


def own_run(results: Path) -> Path:
    (folder,) = [path for path in results.iterdir() if path.is_dir() and not path.is_symlink()]
    return folder


ESCAPES = {
    "dot-dot": lambda results, trap: f"../{trap.parent.name}/{trap.name}",
    "absolute path": lambda results, trap: str(trap),
    "stamped dot-dot": lambda results, trap: f"20261204_000000_x/../../{trap.parent.name}/{trap.name}",
    "symlink out": lambda results, trap: os.symlink(trap, results / "20261204_000000_link") or "20261204_000000_link",
    "not a published name": lambda results, trap: "latest",
}


@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_predict_run_never_loads_a_model_from_outside_results(results, tmp_path, how):
    marker = tmp_path / "foreign-code-ran"
    trap = trapped_run(tmp_path / "outside" / "20261204_000000_evil", marker)
    name = ESCAPES[how](results, trap)
    with pytest.raises(PipelineError, match="PREDICT_RUN") as error:
        load_published(settings_for(results, tmp_path, predict_run=name))
    assert not marker.exists(), f"foreign code ran: {error.value}"
    done = predict(tmp_path, str(BUNDLED_CSV), "--run", name, RESULTS_DIR=str(results))
    assert done.returncode == 1 and "PREDICT_RUN" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("how", sorted(set(ESCAPES) - {"not a published name"}))
def test_a_champion_pointer_naming_a_folder_outside_results_is_refused_by_predict_and_compare(results, tmp_path, how):
    marker = tmp_path / "foreign-code-ran"
    trap = trapped_run(tmp_path / "outside" / "20261204_000000_evil", marker)
    pointer = {"name": ESCAPES[how](results, trap), "run_id": "evil",
               "model_sha256": sha256_file(trap / catalog.MODEL)}
    write_json_atomic(results / catalog.CHAMPION, pointer)
    with pytest.raises(PipelineError, match="champion.json"):
        load_published(settings_for(results, tmp_path))
    with pytest.raises(PipelineError, match="champion.json"):  # what compare reads of the champion: its model
        champion.champion_model(results, pointer)
    with pytest.raises(PipelineError, match="champion.json"):  # and its training Ids
        champion.published_content(results, pointer, catalog.TRAINING_IDS)
    with pytest.raises(PipelineError):  # what promote checks before it writes a pointer
        champion.verified_file(results, pointer["name"], catalog.MODEL, "rerun upload", pointer["model_sha256"],
                               "the run's manifest")
    assert not marker.exists()


def test_links_inside_a_published_folder_and_a_linked_pointer_or_latest_are_refused(results, tmp_path):
    marker = tmp_path / "foreign-code-ran"
    trap = trapped_run(tmp_path / "outside" / "20261204_000000_evil", marker)
    run = own_run(results)
    point_champion_at(run)
    settings = settings_for(results, tmp_path)
    assert load_published(settings).name == run.name

    linked_pointer = tmp_path / "outside" / "pointer.json"
    write_json_atomic(linked_pointer, {"name": run.name, "run_id": "x", "model_sha256": "0" * 64})
    (results / catalog.CHAMPION).unlink()
    (results / catalog.CHAMPION).symlink_to(linked_pointer)
    with pytest.raises(PipelineError, match="champion.json is a symbolic link"):
        load_published(settings)
    (results / catalog.CHAMPION).unlink()

    latest = results / "latest"
    latest.unlink()
    latest.symlink_to(trap)
    with pytest.raises(PipelineError, match="points outside RESULTS_DIR"):
        load_published(settings)

    point_champion_at(run)
    model = run / catalog.MODEL
    model.unlink()
    model.symlink_to(trap / catalog.MODEL)  # and the manifest vouches for the trap
    manifest = read_json(run / catalog.MANIFEST)
    write_json_atomic(run / catalog.MANIFEST, {**manifest, "files": {**manifest["files"],
                                                                     catalog.MODEL: sha256_file(trap / catalog.MODEL)}})
    with pytest.raises(PipelineError, match="model.joblib is a symbolic link"):
        load_published(settings)
    assert not marker.exists()


def test_a_changed_model_is_refused_and_what_is_loaded_is_what_was_checked(results, tmp_path):
    marker = tmp_path / "foreign-code-ran"
    run = own_run(results)
    point_champion_at(run)
    (run / catalog.MODEL).write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(ArtifactError, match="changed after publication"):
        load_published(settings_for(results, tmp_path))
    assert not marker.exists()


# --- class 4: predict's output ----------------------------------------------------------------------------------

def output_cases(results: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Outputs that must be refused, each with the words the refusal must contain."""
    (tmp_path / "a folder").mkdir()
    (tmp_path / "plain").write_text("keep me")
    (tmp_path / "link.csv").symlink_to(tmp_path / "plain")
    os.mkfifo(tmp_path / "fifo.csv")
    return {
        "the champion pointer": (results / catalog.CHAMPION, "inside RESULTS_DIR"),
        "a published run's file": (own_run(results) / catalog.METRICS, "inside RESULTS_DIR"),
        "the runs folder": (tmp_path / "runs" / "x.csv", "inside RUNS_DIR"),
        "the incoming folder": (tmp_path / "incoming" / "x.csv", "inside INCOMING_DIR"),
        "the processed folder": (tmp_path / "processed" / "x.csv", "inside PROCESSED_DIR"),
        "the input itself": (tmp_path / "input.csv", "is the input itself"),
        "the input by another spelling": (tmp_path / "a folder" / ".." / "input.csv", "is the input itself"),
        "a device": (Path(os.devnull), "is a character device"),
        "a symlink": (tmp_path / "link.csv", "is a symbolic link"),
        "a FIFO": (tmp_path / "fifo.csv", "is a FIFO"),
        "a folder": (tmp_path / "a folder", "is a directory"),
        "below a file": (tmp_path / "plain" / "x.csv", "cannot"),
    }


def test_predict_refuses_every_output_it_must_not_overwrite_in_one_line(results, tmp_path):
    point_champion_at(own_run(results))
    shutil.copy(BUNDLED_CSV, tmp_path / "input.csv")
    cases = output_cases(results, tmp_path)
    before = {path: path.read_bytes() for path in (results / catalog.CHAMPION, own_run(results) / catalog.METRICS,
                                                   tmp_path / "input.csv", tmp_path / "plain")}
    for case, (output, words) in cases.items():
        done = predict(tmp_path, str(tmp_path / "input.csv"), "--output", str(output), RESULTS_DIR=str(results))
        assert done.returncode == 1, case
        assert words in done.stderr and "Traceback" not in done.stderr, (case, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (case, done.stderr)
    assert {path: path.read_bytes() for path in before} == before
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "fifo.csv").is_fifo()
    fine = tmp_path / "out" / "p.csv"
    assert predict(tmp_path, str(tmp_path / "input.csv"), "--output", str(fine),
                   RESULTS_DIR=str(results)).returncode == 0
    assert sorted(path.name for path in fine.parent.iterdir()) == ["p.csv"]  # no temporary left


def test_predict_input_that_is_a_link_fifo_or_folder_is_refused_unread(results, tmp_path):
    point_champion_at(own_run(results))
    secret = tmp_path / "secrets" / "token.txt"
    secret.parent.mkdir()
    secret.write_text("Id,SECRET-TOKEN-4242\n1,2\n")
    (tmp_path / "link.csv").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "folder.csv").mkdir()
    for name, words in (("link.csv", "is a symbolic link"), ("fifo.csv", "is a FIFO"),
                        ("folder.csv", "is a directory")):
        done = predict(tmp_path, str(tmp_path / name), "--output", str(tmp_path / "p.csv"), RESULTS_DIR=str(results))
        assert done.returncode == 1 and words in done.stderr, done.stderr
        assert "SECRET-TOKEN" not in done.stderr + done.stdout and not (tmp_path / "p.csv").exists()


def test_a_file_that_is_not_the_data_is_refused_without_quoting_it(results, tmp_path):
    point_champion_at(own_run(results))
    secret = tmp_path / "settings.csv"
    secret.write_text("AIRFLOW__CORE__FERNET_KEY=SECRET-TOKEN-4242\n")
    done = predict(tmp_path, str(secret), RESULTS_DIR=str(results))
    assert done.returncode == 1 and "names none of the expected columns" in done.stderr
    assert "SECRET" not in done.stderr and "FERNET" not in done.stderr


# --- class 6: cells a spreadsheet would run ---------------------------------------------------------------------

def test_a_formula_run_id_is_text_in_history_and_predictions(results, tmp_path):
    with open(results / champion.HISTORY, newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["run_id"] == f"'{FORMULA_RUN_ID}" and float(row["roc_auc"]) > 0.9
    point_champion_at(own_run(results))
    done = predict(tmp_path, str(BUNDLED_CSV), "--output", str(tmp_path / "p.csv"), RESULTS_DIR=str(results))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model_run_id"] for row in rows} == {f"'{FORMULA_RUN_ID}"}
    assert json.loads(done.stdout)["model"]["run_id"] == FORMULA_RUN_ID  # JSON keeps the id as it is


def test_a_run_id_with_a_line_break_is_refused_by_name(tmp_path):
    done = subprocess.run([sys.executable, "-m", "etl", "load", "--run-id", "a\nb"], env=pipeline_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "has a control character" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
