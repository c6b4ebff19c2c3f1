"""A run folder belongs to one run at a time, and only files that belong together are published: the run lock
(two real processes), the checksum chain from raw data to metrics, the removal of stale downstream outputs when a
step starts, and the cleaning of temporaries left by a killed writer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl import catalog, select, train
from etl.pipeline import execute_for_candidates, execute_step, run_all
from etl.steps import STEP, STEPS
from tests.support.data import BAD_INPUTS, BUNDLED_CSV, few_malignant_csv, open_run
from tests.support.servers import Answer, scripted_server
from utils.config import PROJECT_ROOT
from utils.errors import ArtifactError, PipelineError, RunLockedError

SLOW_ANSWER_SECONDS = 4.0  # long enough for the test to start a second process while the first one loads


def run_steps(run, settings, *names: str) -> None:
    """Run the named steps the way the CLI and the DAG do (lock, clean-up, chain check, the step, its record)."""
    for name in names:
        if STEP[name].per_candidate:
            execute_for_candidates(STEP[name], run, settings)
        else:
            execute_step(STEP[name], run, settings)


def evaluated_run(make_settings, run_id: str):
    """A run of `run_id` that went through evaluate, and its settings."""
    settings = make_settings()
    run = open_run(settings, run_id)
    run_steps(run, settings, "load", "preprocess", "train", "select", "evaluate")
    return run, settings


def published_runs(settings) -> list[Path]:
    if not settings.results_dir.exists():
        return []
    return [p for p in settings.results_dir.iterdir() if p.is_dir() and not p.is_symlink()]  # not latest, history


def pipeline_process(tmp_path: Path, run_id: str, seed: int, data_url: str) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], "ENV_FILE": str(tmp_path / "none.env"),
           "RUNS_DIR": str(tmp_path / "runs"), "RESULTS_DIR": str(tmp_path / "results"), "RUN_ID": run_id,
           "SEED": str(seed), "DATA_URL": data_url, "DATA_FALLBACK": "false", "STORAGE_BACKEND": "local"}
    return subprocess.Popen([sys.executable, "-m", "etl.pipeline"], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@contextlib.contextmanager
def holding_process(run, activity: str, candidate: str | None = None) -> Iterator[subprocess.Popen]:
    """Another process holding `run` (for `candidate`, its folder) for `activity` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from etl.run_folder import RunFolder\n"
        "with RunFolder.open(Path(sys.argv[1]), sys.argv[2]).hold(sys.argv[3], sys.argv[4] or None):\n"
        "    print('held', flush=True); time.sleep(60)\n"), str(run.path.parent), run.run_id, activity,
        candidate or ""], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def wait_for_holder(lock_file: Path, timeout: float = 30.0) -> str:
    """The lock file's holder line, once a process has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_file.is_file() and lock_file.read_text().strip():
            return lock_file.read_text()
        time.sleep(0.05)
    raise AssertionError(f"no process took {lock_file} within {timeout} s")


def test_a_second_process_with_the_same_run_id_is_refused_and_the_first_is_untouched(tmp_path, make_settings):
    with scripted_server(Answer(body=BUNDLED_CSV.read_bytes(), delay=SLOW_ANSWER_SECONDS),
                         Answer(body=BUNDLED_CSV.read_bytes())) as server:
        first = pipeline_process(tmp_path, "x", seed=1, data_url=server.url)
        holder = wait_for_holder(tmp_path / "runs" / "x" / catalog.LOCK)
        second = pipeline_process(tmp_path, "x", seed=2, data_url=server.url)
        second_out, second_err = second.communicate(timeout=120)
        first_out, first_err = first.communicate(timeout=300)
    assert f"pid {first.pid}" in holder
    assert second.returncode == 1 and second_out == ""
    assert "run 'x' is in use" in second_err and f"pid {first.pid}" in second_err, second_err
    assert first.returncode == 0, first_err
    assert len(server.requests) == 1  # the refused process never started loading

    published = json.loads(first_out)
    results = sorted(p.name for p in (tmp_path / "results").iterdir() if not p.name.startswith("."))
    assert results == sorted([published["upload"]["name"], "latest", "champion.json", "history.csv"])
    alone = make_settings(seed=1, results_dir=tmp_path / "reference")
    reference = run_all(open_run(alone, "seed-1-alone"), alone)
    assert published["evaluate"]["accuracy"] == reference["evaluate"]["accuracy"]
    assert published["select"]["model_sha256"] == reference["select"]["model_sha256"]


def test_a_killed_holder_releases_the_run(tmp_path):
    with scripted_server(Answer(body=BUNDLED_CSV.read_bytes(), delay=60.0),
                         Answer(body=BUNDLED_CSV.read_bytes())) as server:
        killed = pipeline_process(tmp_path, "x", seed=1, data_url=server.url)
        wait_for_holder(tmp_path / "runs" / "x" / catalog.LOCK)
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
        rerun = pipeline_process(tmp_path, "x", seed=1, data_url=server.url)
        out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert json.loads(out)["upload"]["destinations"]["local"]


def test_a_step_is_refused_while_another_process_holds_the_run(make_settings):
    settings = make_settings()
    run = open_run(settings, "held")
    with holding_process(run, "a test holder") as holder:
        with pytest.raises(RunLockedError, match=rf"run 'held' is in use: .* held by pid {holder.pid} on .*"
                                                 r"running a test holder since"):
            run_steps(run, settings, "load")
        assert not run.file(catalog.RAW).exists()
    run_steps(run, settings, "load")
    with run.hold("outer"), run.hold("inner"):
        pass  # one process may nest holds (the in-process pipeline holds the run around each step)


def test_candidates_train_side_by_side_but_each_one_and_the_whole_run_only_once(make_settings):
    """A process training candidate logreg holds the run shared: another candidate may train at the same time,
    but not logreg again, and no other step (which holds the run exclusively)."""
    settings = make_settings()
    run = open_run(settings, "side-by-side")
    with holding_process(run, "step train[logreg]", "logreg") as holder:
        with run.hold("step train[random_forest]", "random_forest"):
            pass
        with pytest.raises(RunLockedError, match=rf"run 'side-by-side, candidate logreg' is in use: .* held by "
                                                 rf"pid {holder.pid} on .* running step train\[logreg\]"):
            execute_step(STEP["train"], run, settings, "logreg")
        with pytest.raises(RunLockedError, match="run 'side-by-side' is in use: .* candidates being trained"):
            run_steps(run, settings, "load")
    run_steps(run, settings, "load")


def test_retraining_after_evaluate_cannot_publish_the_old_metrics(make_settings):
    run, settings = evaluated_run(make_settings, "retrained")
    run_steps(run, make_settings(candidates="hist_gradient_boosting"), "train")
    with pytest.raises(ArtifactError, match="select.json is missing"):
        run_steps(run, settings, "upload")
    assert published_runs(settings) == []


def test_the_chain_refuses_a_model_that_is_not_the_one_evaluated(make_settings):
    """Even when a step's outputs are replaced behind the runner's back (here train's code called directly, with
    no clean-up of downstream files), upload refuses the mix and names the file and the step to rerun."""
    run, settings = evaluated_run(make_settings, "swapped")
    reselected = select.run(run, make_settings(target_recall=0.5, target_confidence=0.0))
    run.write_record(STEP["select"], reselected.record, consumed=reselected.consumed)
    with pytest.raises(ArtifactError, match=r"model\.joblib: step evaluate consumed a version .* not the one "
                                            r"select recorded.*rerun from select"):
        run_steps(run, settings, "upload")
    assert published_runs(settings) == []


def test_the_chain_refuses_a_candidate_that_is_not_the_one_selected(make_settings):
    """A candidate retrained behind the runner's back (another seed) no longer matches what select consumed."""
    run, settings = evaluated_run(make_settings, "swapped-candidate")
    run.write_record(STEP["train"], train.run(run, make_settings(seed=7), "logreg").record, "logreg")
    with pytest.raises(ArtifactError, match=r"candidates/logreg/\S+: step select consumed a version .* "
                                            r"not the one train recorded.*rerun from train"):
        run_steps(run, settings, "upload")
    assert published_runs(settings) == []


@pytest.mark.parametrize("changed", [catalog.RAW, catalog.TEST, catalog.METRICS, catalog.REPORT])
def test_a_file_changed_on_disk_stops_publication(make_settings, changed):
    run, settings = evaluated_run(make_settings, "edited")
    path = run.file(changed)
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(ArtifactError, match=rf"{changed} has sha256 .* recorded .* when it wrote it"):
        run_steps(run, settings, "upload")
    assert published_runs(settings) == []


def test_bad_data_into_a_run_that_had_a_good_model_publishes_nothing(make_settings):
    run, settings = evaluated_run(make_settings, "reused")
    bad = make_settings(data_url=(BAD_INPUTS / "score_zero.csv").as_uri(), data_fallback=False)
    run_steps(run, bad, "load")
    with pytest.raises(PipelineError, match="fails in_range"):
        run_steps(run, bad, "preprocess")
    assert not run.file(catalog.MODEL).exists() and not run.file(catalog.METRICS).exists()
    with pytest.raises(ArtifactError, match="preprocess.json is missing"):
        run_steps(run, bad, "upload")
    assert published_runs(settings) == []


def test_a_failed_train_leaves_no_model_behind(make_settings, tmp_path):
    few = few_malignant_csv(tmp_path / "few.csv", malignant_ids=12)  # about 9 malignant Ids left to train on
    settings = make_settings(data_url=few.as_uri(), data_allowed_dirs=(tmp_path,), min_recall=0, min_roc_auc=0)
    run = open_run(settings, "train-fails")
    run_steps(run, settings, "load", "preprocess", "train", "select", "evaluate")
    assert run.file(catalog.MODEL).exists()
    run_steps(run, make_settings(cv_folds=20, data_url=few.as_uri(), data_allowed_dirs=(tmp_path,)), "train")
    assert run.trained_candidates() == [] and not run.file(catalog.MODEL).exists()  # every one: more folds than Ids
    assert "cannot make 20 grouped stratified folds" in run.candidate_failure("logreg")["error"]
    with pytest.raises(PipelineError, match="no candidate could be trained.*logreg: DataValidationError"):
        run_steps(run, settings, "select")
    for later in ("evaluate", "upload"):
        with pytest.raises(ArtifactError, match="select.json is missing"):
            run_steps(run, settings, later)
    assert published_runs(settings) == []


def test_each_step_records_the_checksums_it_consumed_and_wrote(make_settings):
    settings = make_settings()
    run = open_run(settings, "recorded")
    run_all(run, settings)
    run.verify_chain(before=None)
    consumed = {step.name: set(run.record(step.name)["inputs"]) for step in STEPS if not step.per_candidate}
    candidates = {catalog.candidate_file(name, file) for name in settings.candidates
                  for file in (catalog.CANDIDATE_MODEL, catalog.OUT_OF_FOLD)}
    assert consumed == {"load": set(), "preprocess": {catalog.RAW}, "select": {catalog.TRAIN, *candidates},
                        "evaluate": {catalog.MODEL, catalog.REPEATED_OUT_OF_FOLD, catalog.TEST},
                        "compare": {catalog.MODEL, catalog.TEST, catalog.METRICS, catalog.TRAIN,
                                    catalog.VALIDATION_REPORT, *catalog.CHARTS}, "upload": set(catalog.PUBLISHED),
                        "promote": {catalog.COMPARISON, catalog.MANIFEST}}
    assert all(set(run.record("train", name)["inputs"]) == {catalog.TRAIN} for name in settings.candidates)
    assert run.record("load")["outputs"][catalog.RAW] == run.record("preprocess")["inputs"][catalog.RAW]


def test_temporaries_of_a_killed_writer_are_removed_when_the_next_step_starts(make_settings):
    settings = make_settings()
    run = open_run(settings, "killed-writer")
    run_steps(run, settings, "load", "preprocess")
    writer = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from pathlib import Path; from utils.files import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half a model')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(run.file(catalog.MODEL))],
        cwd=PROJECT_ROOT, timeout=60, check=False)
    assert writer.returncode == -signal.SIGKILL
    (leftover,) = run.path.glob(".model.joblib.*.tmp")
    run_steps(run, settings, "train", "select")
    assert not leftover.exists() and not list(run.path.glob(".*.tmp"))
    assert run.file(catalog.MODEL).is_file()
