"""Runs that promote at the same time: four real `python -m etl.pipeline` processes with different run ids and one
results folder. Each child is held at two barriers (the hooks live in the child's script below, not in the product
code): every run has compared itself with the champion before any promotes, so all but the first to take the
champion lock find another champion in place; and the runs point `latest` from the newest to the oldest, so the last
to finish is the oldest. Then, in one process: a run approved by a reviewer against another champion is not
promoted, one without a review is compared again, and retried promotions change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl import catalog, champion
from etl.pipeline import execute_for_candidates, execute_step, run_all
from etl.steps import STEP, STEPS
from tests.support.data import BUNDLED_CSV, open_run
from utils.config import Settings, load_settings
from utils.files import read_json

pytestmark = pytest.mark.slow

RUNS = 4
CHANGED = "the champion changed during the run ("
NEVER_GOOD_ENOUGH = "-1"  # PROMOTION_TOLERANCE: the challenger must beat the champion by 1, impossible
BARRIER_SECONDS = 240
CHILD = r'''
import os, sys, time
from datetime import UTC, datetime
from pathlib import Path

from etl import compare, promote, run_folder
from etl.pipeline import cli_main
from etl.publishers import local

barrier, index, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
started = datetime(2031, 2, 1 + index, 6, 0, tzinfo=UTC)  # run i started on day i: the last run is the newest
run_folder._now = lambda: started


def wait_for(names):
    deadline = time.monotonic() + float(sys.argv[4])
    while not all((barrier / name).exists() for name in names) and time.monotonic() < deadline:
        time.sleep(0.05)


def after(function, mark):
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        (barrier / mark).touch()
        return result
    return wrapper


def waiting(function, names):
    def wrapper(*args, **kwargs):
        wait_for(names)
        return function(*args, **kwargs)
    return wrapper


compare.run = after(compare.run, f"compared-{index}")
newer_first = waiting(local.LocalPublisher.point_latest_at, [f"pointed-{j}" for j in range(index + 1, count)])
local.LocalPublisher.point_latest_at = after(newer_first, f"pointed-{index}")
promote.run = waiting(promote.run, [f"compared-{j}" for j in range(count)] + [f"pointed-{j}" for j in range(count)])
sys.exit(cli_main([], all_steps=True))
'''


def race(root: Path) -> list[subprocess.CompletedProcess[str]]:
    """RUNS pipelines at once in `root`; runs 1 and 3 accept no challenger but the first champion."""
    script, barrier = root / "child.py", root / "barrier"
    script.write_text(CHILD, encoding="utf-8")
    barrier.mkdir()
    children = []
    for index in range(RUNS):
        env = {**os.environ, "RUNS_DIR": str(root / "runs"), "RESULTS_DIR": str(root / "results"),
               "STORAGE_BACKEND": "local", "DATA_URL": BUNDLED_CSV.as_uri(), "ENV_FILE": str(root / "none.env"),
               "CANDIDATES": "logreg", "RUN_ID": f"race-{index}",
               "PROMOTION_TOLERANCE": NEVER_GOOD_ENOUGH if index % 2 else "0"}
        children.append(subprocess.Popen([sys.executable, str(script), str(barrier), str(index), str(RUNS),
                                          str(BARRIER_SECONDS)], env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=2 * BARRIER_SECONDS)
        results.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess[str]]]:
    root = tmp_path_factory.mktemp("race")
    return root, race(root)


def test_every_run_that_lost_the_race_ends_well_with_its_outcome_recorded(raced):
    root, children = raced
    for index, child in enumerate(children):
        assert child.returncode == 0, f"race-{index} exited {child.returncode}: {child.stderr[-3000:]}"
        assert "rerun compare" not in child.stderr
    history = champion.read_history(root / "results")
    assert sorted(row["run_id"] for row in history) == [f"race-{index}" for index in range(RUNS)]
    first, *later = history  # in the order the runs took the champion lock
    assert first["reason"] == "first champion: no model was promoted before" and first["promoted"] == "true"
    current = first["name"]
    for row in later:
        assert row["reason"].startswith(f"{CHANGED}{current}; compare saw none): compared again with it: "), row
        assert row["champion"] == current and int(row["rows_compared"]) > 0
        never = row["run_id"] in ("race-1", "race-3")
        assert row["promoted"] == ("false" if never else "true"), row
        assert ("margin -1" in row["reason"]) == never
        current = row["name"] if row["promoted"] == "true" else current
    assert champion.read_pointer(root / "results")["name"] == current


def test_each_run_records_what_the_history_says(raced):
    root, _ = raced
    for row in champion.read_history(root / "results"):
        record = read_json(root / "runs" / row["run_id"] / catalog.PROMOTE_INFO)
        assert (str(record["promoted"]).lower(), record["reason"]) == (row["promoted"], row["reason"])
        assert record["compared_again"] == row["reason"].startswith(CHANGED)
        assert record["champion"] == (row["name"] if row["promoted"] == "true" else row["champion"])


def test_latest_is_the_newest_run_not_the_last_to_finish(raced):
    root, _ = raced
    published = sorted(path.name for path in (root / "results").iterdir() if path.name.startswith("2031"))
    assert [name[:8] for name in published] == ["20310201", "20310202", "20310203", "20310204"]
    assert os.readlink(root / "results" / "latest") == published[-1] == f"20310204_060000_race-{RUNS - 1}"


# --- in one process -----------------------------------------------------------------------------------------------


def settings_in(root: Path, **overrides: object) -> Settings:
    return load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                         results_dir=root / "results", storage_backend="local", candidates="logreg", **overrides)


def compared_up_to_promote(settings: Settings, run_id: str) -> None:
    """Every step of the run `run_id` but promote."""
    run = open_run(settings, run_id)
    for step in STEPS[:-1]:
        (execute_for_candidates if step.per_candidate else execute_step)(step, run, settings)


@pytest.fixture
def rival_promoted(tmp_path: Path) -> Settings:
    """A champion "old"; runs "new" and "rival" both compared with it; then "rival" promoted."""
    settings = settings_in(tmp_path)
    run_all(open_run(settings, "old"), settings)
    for run_id in ("new", "rival"):
        compared_up_to_promote(settings, run_id)
    execute_step(STEP["promote"], open_run(settings, "rival"), settings)
    assert champion.read_pointer(settings.results_dir)["run_id"] == "rival"
    return settings


def test_an_approval_given_against_another_champion_does_not_promote(rival_promoted):
    settings = rival_promoted
    approval = {"approved": True, "by": "dr. house", "reason": "approved by dr. house"}
    before = champion.pointer_path(settings.results_dir).read_bytes()
    summary = execute_step(STEP["promote"], open_run(settings, "new"), settings, approval=approval)
    assert summary["promoted"] is False and summary["champion"].endswith("_rival")
    assert summary["reason"].startswith(CHANGED) and "approved by dr. house, but the review was against" in (
        summary["reason"]) and "not promoted without a review against" in summary["reason"]
    assert champion.pointer_path(settings.results_dir).read_bytes() == before
    assert champion.read_history(settings.results_dir)[-1]["promoted"] == "false"


def test_a_run_compared_again_and_retried_gives_the_same_result(rival_promoted):
    settings = rival_promoted
    rival = champion.read_pointer(settings.results_dir)["name"]
    first = execute_step(STEP["promote"], open_run(settings, "new"), settings)
    assert first["promoted"] is True and first["reason"].startswith(f"{CHANGED}{rival}; compare saw ")
    pointer, history = champion.pointer_path(settings.results_dir).read_bytes(), champion.read_history(
        settings.results_dir)
    assert json.loads(pointer)["run_id"] == "new" and [row["run_id"] for row in history] == ["old", "rival", "new"]
    for _ in range(2):
        assert execute_step(STEP["promote"], open_run(settings, "new"), settings) == first
        assert champion.pointer_path(settings.results_dir).read_bytes() == pointer  # not even a new promoted_at
        assert champion.read_history(settings.results_dir) == history
    assert not list(settings.results_dir.glob(".champion.pending*"))
