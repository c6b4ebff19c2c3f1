"""Champion and challenger under the real Airflow (`airflow dags test`, SQLite), in one results folder: the first
run promotes itself; a second run whose challenger is forced worse (a negative PROMOTION_TOLERANCE Param) is not
promoted, its `promote` task is skipped and the run succeeds; a run that fails its quality gate leaves the pointer
and the history alone. Then, without Airflow: a retried promotion keeps one history row per run, a champion whose
files changed is refused, and a promotion SIGKILLed at each file operation leaves the old champion intact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl import catalog, champion
from etl.pipeline import execute_for_candidates, execute_step, run_all
from etl.steps import STEP, STEPS
from tests.support.airflow_runs import SUCCESSFUL_RUN, DagRunOutcome, Folders, clone_home, dags_test
from tests.support.data import BUNDLED_CSV, open_run
from tests.support.processes import killed_at
from utils.config import load_settings
from utils.errors import ArtifactError
from utils.files import read_json

pytestmark = pytest.mark.slow

FIRST_DATE = datetime(2031, 1, 1, 6, 0, tzinfo=UTC)
WORSE_DATE = datetime(2031, 1, 2, 6, 0, tzinfo=UTC)
FAILED_DATE = datetime(2031, 1, 3, 6, 0, tzinfo=UTC)
NEVER_GOOD_ENOUGH = {"promotion_tolerance": -1.0}  # the challenger must beat the champion by 1: impossible
GATE_FAILS = {"min_roc_auc": 1.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Folders:
    root = tmp_path_factory.mktemp("promotion")
    return Folders(root / "runs", root / "results")


@pytest.fixture(scope="module")
def runs(migrated_airflow_home: Path, tmp_path_factory: pytest.TempPathFactory,
         folders: Folders) -> dict[str, tuple[DagRunOutcome, bytes, list[dict[str, str]]]]:
    """Three runs one after another; after each, the pointer's bytes and the history."""
    home = clone_home(migrated_airflow_home, tmp_path_factory.mktemp("airflow_home"))
    outcomes = {}
    for name, date, conf in (("first", FIRST_DATE, None), ("worse", WORSE_DATE, NEVER_GOOD_ENOUGH),
                             ("failed", FAILED_DATE, GATE_FAILS)):
        outcome = dags_test(home, date, folders.settings(), conf)
        outcomes[name] = (outcome, champion.pointer_path(folders.results).read_bytes(),
                          champion.read_history(folders.results))
    return outcomes


def test_the_first_run_promotes_itself(runs, folders):
    outcome, pointer, history = runs["first"]
    assert outcome.state == "success" and outcome.task_states == SUCCESSFUL_RUN, outcome.output[-3000:]
    (published,) = folders.published(outcome)
    first = json.loads(pointer)
    assert first["name"] == published.name and first["run_id"] == outcome.run_id
    assert first["model_sha256"] == read_json(published / catalog.MANIFEST)["files"][catalog.MODEL]
    assert first["operating_threshold"] == read_json(published / catalog.METRICS)["operating_threshold"]
    assert first["metrics"]["roc_auc"] > 0.95
    assert [(row["run_id"], row["promoted"]) for row in history] == [(outcome.run_id, "true")]
    assert history[0]["reason"] == "first champion: no model was promoted before"
    assert "promoted" in outcome.xcom_values["promote"]


def test_a_worse_challenger_is_not_promoted_and_the_run_succeeds(runs, folders):
    outcome, pointer, history = runs["worse"]
    assert outcome.state == "success", outcome.output[-3000:]
    assert outcome.task_states == {**SUCCESSFUL_RUN, "promote": "skipped"}
    assert pointer == runs["first"][1]  # the champion stays, byte for byte
    assert folders.published(outcome), "a kept run is still published"
    row = history[-1]
    assert [r["run_id"] for r in history] == [runs["first"][0].run_id, outcome.run_id]
    assert row["promoted"] == "false" and row["champion"] == json.loads(pointer)["name"]
    assert "the champion stays" in row["reason"] and "margin -1" in row["reason"]
    assert "not promoted: " + row["reason"] in outcome.output  # the task log says why
    comparison = read_json(folders.run_folder(outcome) / catalog.COMPARISON)
    assert comparison["decision"] == "keep" and comparison["rows_compared"] > 0


def test_a_failed_run_never_moves_the_pointer_and_is_recorded_as_failed(runs):
    outcome, pointer, history = runs["failed"]
    assert outcome.state == "failed" and outcome.task_states["evaluate"] == "failed"
    assert outcome.task_states["promote"] == "upstream_failed" and outcome.task_states["failure_end"] == "success"
    assert outcome.task_states["success_end"] == "upstream_failed"
    assert pointer == runs["first"][1] and history[:-1] == runs["worse"][2]
    row = history[-1]  # recorded by failure_end, with what the finished steps knew
    assert (row["run_id"], row["promoted"], row["name"]) == (outcome.run_id, "false", "")
    assert row["reason"].startswith("failed at evaluate: QualityGateError: ") and "roc_auc" in row["reason"]
    assert row["data_sha256"] == runs["first"][2][0]["data_sha256"] and row["model"] == "logreg"
    assert float(row["roc_auc"]) > 0.95 and float(row["operating_threshold"]) > 0


# --- without Airflow ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def challenger_ready(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A champion (run "old") and a run "new" whose compare chose it and whose upload published it, promote not yet
    run; and the environment naming those folders."""
    root = tmp_path_factory.mktemp("ready")
    env = {"RUNS_DIR": str(root / "runs"), "RESULTS_DIR": str(root / "results"), "STORAGE_BACKEND": "local",
           "DATA_URL": BUNDLED_CSV.as_uri(), "ENV_FILE": str(root / "none.env")}
    settings = load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                             results_dir=root / "results", storage_backend="local")
    run_all(open_run(settings, "old"), settings)
    new = open_run(settings, "new")
    for step in STEPS[:-1]:
        (execute_for_candidates if step.per_candidate else execute_step)(step, new, settings)
    assert read_json(new.file(catalog.COMPARISON))["decision"] == "promote"
    return root, env


def copy_of(ready: tuple[Path, dict[str, str]], target: Path) -> dict[str, str]:
    """A copy of the prepared folders at `target`; the environment naming it."""
    root, env = ready
    shutil.copytree(root, target, symlinks=True)
    return {**env, **{key: env[key].replace(str(root), str(target)) for key in ("RUNS_DIR", "RESULTS_DIR",
                                                                               "ENV_FILE")}}


def test_a_retried_promotion_keeps_one_history_row_per_run(challenger_ready, tmp_path):
    env = copy_of(challenger_ready, tmp_path / "copy")
    settings = load_settings(env_file=Path(env["ENV_FILE"]), runs_dir=env["RUNS_DIR"], results_dir=env["RESULTS_DIR"],
                             data_url=env["DATA_URL"], storage_backend="local")
    for _ in range(2):
        execute_step(STEP["promote"], open_run(settings, "new"), settings)
    history = champion.read_history(settings.results_dir)
    assert [row["run_id"] for row in history] == ["old", "new"] and history[-1]["promoted"] == "true"
    assert champion.read_pointer(settings.results_dir)["run_id"] == "new"


def test_a_champion_whose_model_changed_is_refused_before_loading(challenger_ready, tmp_path):
    env = copy_of(challenger_ready, tmp_path / "copy")
    settings = load_settings(env_file=Path(env["ENV_FILE"]), runs_dir=env["RUNS_DIR"], results_dir=env["RESULTS_DIR"],
                             data_url=env["DATA_URL"], storage_backend="local")
    pointer = champion.read_pointer(settings.results_dir)
    (settings.results_dir / pointer["name"] / catalog.MODEL).write_bytes(b"not the champion")
    with pytest.raises(ArtifactError, match="changed after publication; restore it, or remove .*champion.json"):
        execute_step(STEP["compare"], open_run(settings, "new"), settings)


def test_a_published_model_that_changed_before_promote_is_not_made_the_champion(challenger_ready, tmp_path):
    env = copy_of(challenger_ready, tmp_path / "copy")
    settings = load_settings(env_file=Path(env["ENV_FILE"]), runs_dir=env["RUNS_DIR"], results_dir=env["RESULTS_DIR"],
                             data_url=env["DATA_URL"], storage_backend="local")
    before = champion.read_pointer(settings.results_dir)
    published = settings.results_dir / read_json(open_run(settings, "new").file(catalog.UPLOAD_INFO))["name"]
    (published / catalog.MODEL).write_bytes(b"not what upload published")
    with pytest.raises(ArtifactError, match="changed after publication; rerun upload before promoting"):
        execute_step(STEP["promote"], open_run(settings, "new"), settings)
    assert champion.read_pointer(settings.results_dir) == before


KILLED_PROMOTE = r'''
import os, sys, time
from etl.pipeline import cli_main

kill_at, calls = sys.argv[1], {}

def watched(name, function):
    def wrapper(*args, **kwargs):
        calls[name] = number = calls.get(name, 0) + 1
        for moment in ("before", "after"):
            print(f"{moment} {name} {number}", flush=True)
            if f"{moment} {name} {number}" == kill_at:
                time.sleep(600)  # the test kills this process here
            if moment == "before":
                result = function(*args, **kwargs)
        return result
    return wrapper

for name in ("replace", "rename", "unlink"):
    setattr(os, name, watched(name, getattr(os, name)))
sys.exit(cli_main(["promote", "--run-id", "new"]))
'''


def promote_in_child(script: Path, env: dict[str, str], kill_at: str) -> list[str]:
    """`promote` in a child process, SIGKILLed when it announces `kill_at` ("" = let it finish); its events."""
    lines, returncode, errors = killed_at([sys.executable, str(script), kill_at], kill_at, {**os.environ, **env})
    assert returncode == (-signal.SIGKILL if kill_at else 0), errors[-2000:]
    return [line for line in lines if line.startswith(("before ", "after "))]  # not the summary it prints last


def test_a_promotion_killed_at_any_file_operation_leaves_a_whole_champion(challenger_ready, tmp_path):
    script = tmp_path / "killed_promote.py"
    script.write_text(KILLED_PROMOTE, encoding="utf-8")
    rehearsal = copy_of(challenger_ready, tmp_path / "rehearsal")
    events = promote_in_child(script, rehearsal, "")
    assert champion.read_pointer(Path(rehearsal["RESULTS_DIR"]))["run_id"] == "new"
    assert any(event.startswith("before replace") for event in events)
    old = champion.pointer_path(challenger_ready[0] / "results").read_bytes()
    for number, event in enumerate(events):
        env = copy_of(challenger_ready, tmp_path / f"killed-{number}")
        results = Path(env["RESULTS_DIR"])
        promote_in_child(script, env, event)
        pointer = champion.pointer_path(results).read_bytes()
        moved = champion.read_pointer(results)["run_id"] == "new"
        assert pointer == old or moved, f"killed at {event}: the pointer is neither the old one nor the new one"
        assert [row["run_id"] for row in champion.read_history(results)][:1] == ["old"], f"killed at {event}"
        promote_in_child(script, env, "")  # the retry finishes the promotion
        assert champion.read_pointer(results)["run_id"] == "new", f"after a kill at {event}"
        assert [row["run_id"] for row in champion.read_history(results)] == ["old", "new"], f"killed at {event}"
        assert not list(results.glob(".*.tmp")), f"the retry after a kill at {event} left temporaries"
