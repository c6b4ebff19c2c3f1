"""Issue 19, classes 2 and 3 on real folders and a real published model: what someone else drops into
INCOMING_DIR (links to secrets, a FIFO, folders, names that cannot be claimed), a writer still appending, two
scorer processes at once, and a scorer killed holding its claim."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from etl import catalog, scoring
from tests.support.scoring import batch, pipeline_env, point_champion_at, publish_run, write_batch
from utils.config import PROJECT_ROOT, Settings, load_settings
from utils.errors import DataValidationError
from utils.files import read_json, sha256_file

SECRET = "SECRET-TOKEN-7f3a"
HANG_SECONDS = 120


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RESULTS_DIR with one published run (logreg) as the champion."""
    root = tmp_path_factory.mktemp("scoring")
    folder = publish_run(pipeline_env(root), "scorer", CANDIDATES="logreg")
    point_champion_at(folder)
    return root / "results"


@pytest.fixture
def env(published: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a scorer with its own copy of the results and its own folders."""
    shutil.copytree(published, tmp_path / "results", symlinks=True)
    (tmp_path / "incoming").mkdir()
    return pipeline_env(tmp_path)


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env_file=Path(env["ENV_FILE"]), results_dir=Path(env["RESULTS_DIR"]),
                         runs_dir=Path(env["RUNS_DIR"]), incoming_dir=Path(env["INCOMING_DIR"]),
                         processed_dir=Path(env["PROCESSED_DIR"]))


def score_within(settings: Settings, seconds: float = HANG_SECONDS) -> tuple[dict | None, Exception | None]:
    """score_pending in a thread that must end within `seconds` (a FIFO opened for reading would block it)."""
    result: dict = {}

    def target() -> None:
        try:
            result["outcome"] = scoring.score_pending(settings)
        except Exception as exc:  # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"scoring hung for {seconds} s"
    return result.get("outcome"), result.get("error")


def everything_written(root: Path, pattern: str = "*") -> str:
    """The text of every regular file under `root` matching `pattern` (links not followed), to look for leaks."""
    return "\n".join(path.read_bytes().decode("utf-8", "replace") for path in root.rglob(pattern)
                     if path.is_file() and not path.is_symlink())


def score_processes(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "etl.scoring"], env=env, cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]


def test_entries_that_are_not_batches_are_set_aside_unread_and_every_batch_is_scored(env, tmp_path, caplog):
    settings = settings_of(env)
    incoming = settings.incoming_dir
    secret = tmp_path / "secrets" / "drive_sa.json"
    secret.parent.mkdir()
    secret.write_text(f"Id,Cl.thickness\n{SECRET},1\n")  # looks enough like a batch to be quoted if read
    write_batch(incoming, "first", batch(40, seed=1))
    write_batch(incoming, "zz_last", batch(40, seed=2))
    hostile = {"to_secret.csv": "symbolic link", "to_environ.csv": "symbolic link", "pipe.csv": "FIFO",
               "folder.csv": "directory", "hard.csv": "hard links", "..csv": "not a batch name",
               ".hidden.csv": "not a batch name", "with space.csv": "not a batch name",
               "a~b.csv": "not a batch name", "x" * 246 + ".csv": "not a batch name",
               os.fsdecode(b"odd\xff\xfe.csv"): "not a batch name"}
    os.symlink(secret, incoming / "to_secret.csv")
    os.symlink("/proc/self/environ", incoming / "to_environ.csv")
    os.mkfifo(incoming / "pipe.csv")
    (incoming / "folder.csv").mkdir()
    os.link(secret, incoming / "hard.csv")
    unclaimable = [name for name, words in hostile.items() if words == "not a batch name"]
    for name in unclaimable:
        shutil.copy(incoming / "first.csv", incoming / name)  # good content under a name that cannot be claimed
    (incoming / "notes.txt").write_text("left alone")
    (incoming / "late.csv.part").write_text("a writer's file in progress")

    outcome, error = score_within(settings)
    assert outcome is None and isinstance(error, DataValidationError)
    assert f"{len(hostile)} batch(es) rejected or set aside" in str(error)
    scored = settings.results_dir / scoring.SCORING_RESULTS
    assert sorted(path.name for path in scored.iterdir()) == ["first", "zz_last"]
    assert sorted(path.name for path in settings.processed_dir.iterdir()) == ["first.csv", "zz_last.csv"]
    assert sorted(entry for entry in os.listdir(incoming)) == [".claimed", "late.csv.part", "notes.txt", "rejected"]
    reasons = [read_json(path) for path in (incoming / scoring.REJECTED).glob(f"*{scoring.REASON_SUFFIX}")]
    assert len(reasons) == len(hostile)
    for name, words in hostile.items():
        (reason,) = [item for item in reasons if item["entry"] == scoring.excerpt(name, 300)]
        assert words in reason["reason"], (name, reason)
    rejected = {path.name.split("_", 2)[2]: path for path in (incoming / scoring.REJECTED).iterdir()
                if not path.name.endswith(scoring.REASON_SUFFIX)}
    assert rejected["to_secret.csv"].is_symlink() and rejected["pipe.csv"].is_fifo()
    assert rejected["folder.csv"].is_dir() and secret.read_text().startswith("Id,")
    for text in (str(error), caplog.text, everything_written(incoming, "*.json"),  # the hard link moved as it is
                 everything_written(settings.results_dir), everything_written(settings.processed_dir)):
        assert SECRET not in text and "PATH=" not in text

    again, error = score_within(settings)  # set aside once: the next run has nothing to complain about
    assert error is None and again["scored"] == again["rescored"] == []


def test_a_regular_file_that_is_not_a_batch_is_reported_without_quoting_it(env):
    settings = settings_of(env)
    (settings.incoming_dir / "credentials.csv").write_text(f"GDRIVE_TOKEN={SECRET}\nAWS_KEY={SECRET}\n")
    write_batch(settings.incoming_dir, "good", batch(20, seed=3))
    _, error = score_within(settings)
    assert isinstance(error, DataValidationError) and "names none of the expected columns" in str(error)
    report = (settings.incoming_dir / f"credentials{scoring.REPORT_SUFFIX}").read_text()
    assert SECRET not in str(error) + report and "GDRIVE" not in report
    assert (settings.results_dir / scoring.SCORING_RESULTS / "good" / catalog.PREDICTIONS).is_file()


WRITER = """
import sys, time
rows = open(sys.argv[2]).read().splitlines()
with open(sys.argv[1], "w") as out:
    out.write(rows[0] + "\\n" + "\\n".join(rows[1:21]) + "\\n")
    out.flush()
    for row in rows[21:]:
        time.sleep(0.02)
        out.write(row + "\\n")
        out.flush()
"""


def test_a_batch_written_in_place_while_it_is_scored_is_not_published_and_kept_whole(env, tmp_path):
    settings = settings_of(env)
    source = tmp_path / "rows.csv"
    batch(400, seed=4).to_csv(source, index=False)  # 400 rows at 50 a second: 8 s of writing
    target = settings.incoming_dir / "slow.csv"  # written in place: the hand-off is not followed
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(source)])
    try:
        while not target.exists() or target.stat().st_size == 0:
            time.sleep(0.01)
        _, error = score_within(settings)
        assert writer.poll() is None, "the writer finished before the scorer was done: nothing was tested"
    finally:
        writer.wait(timeout=60)
    assert isinstance(error, DataValidationError) and "changed while it was scored" in str(error)
    assert not (settings.results_dir / scoring.SCORING_RESULTS).exists() and not settings.processed_dir.exists()
    (kept,) = [path for path in (settings.incoming_dir / scoring.REJECTED).iterdir()
               if path.name.endswith("_slow.csv")]
    assert kept.read_bytes() == source.read_bytes()  # every row is there, none scored


def test_bytes_arriving_after_publication_are_kept_and_processed_is_what_was_scored(env, monkeypatch):
    settings = settings_of(env)
    path = write_batch(settings.incoming_dir, "racy", batch(60, seed=5))
    scored_bytes = path.read_bytes()
    late_row = scored_bytes.splitlines()[-1].decode() + "\n"
    publish = scoring.publish_batch

    def publish_then_append(name: str, folder: Path, settings: Settings) -> dict[str, str]:
        result = publish(name, folder, settings)
        (claimed,) = (settings.incoming_dir / scoring.CLAIMED).iterdir()
        with open(claimed, "a") as handle:  # a writer appending at the worst moment
            handle.write(late_row)
        return result

    monkeypatch.setattr(scoring, "publish_batch", publish_then_append)
    outcome, error = score_within(settings)
    assert error is None and [item["batch"] for item in outcome["scored"]] == ["racy"]
    processed = settings.processed_dir / "racy.csv"
    summary = read_json(settings.results_dir / scoring.SCORING_RESULTS / "racy" / catalog.SCORING_SUMMARY)
    predictions = pd.read_csv(settings.results_dir / scoring.SCORING_RESULTS / "racy" / catalog.PREDICTIONS)
    assert processed.read_bytes() == scored_bytes and summary["input_sha256"] == sha256_file(processed)
    assert summary["rows"] == len(predictions) == 60
    (kept,) = [path for path in (settings.incoming_dir / scoring.REJECTED).iterdir()
               if not path.name.endswith(scoring.REASON_SUFFIX)]
    assert kept.read_bytes() == scored_bytes + late_row.encode()


def test_two_scorer_processes_at_once_score_every_batch_exactly_once(env):
    settings = settings_of(env)
    names = [f"batch_{index:02d}" for index in range(12)]
    for index, name in enumerate(names):
        write_batch(settings.incoming_dir, name, batch(3000, seed=100 + index))
    outcomes = []
    for process in score_processes(env, 3):
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        outcomes.append(json.loads(out))
    scored = [item["batch"] for outcome in outcomes for item in outcome["scored"]]
    assert sorted(scored) == names, "a batch was scored twice, or not at all"
    assert sorted(path.stem for path in settings.processed_dir.iterdir()) == names
    assert sorted(path.name for path in (settings.results_dir / scoring.SCORING_RESULTS).iterdir()) == names
    assert list((settings.incoming_dir / scoring.CLAIMED).iterdir()) == []


def test_a_claim_left_by_a_killed_scorer_is_taken_over_by_the_next_run(env, tmp_path):
    settings = settings_of(env)
    path = write_batch(settings.incoming_dir, "big", batch(300_000, seed=6))
    original = path.read_bytes()
    claims = settings.incoming_dir / scoring.CLAIMED
    (process,) = score_processes(env, 1)
    while process.poll() is None and not (claims.is_dir() and any(claims.iterdir())):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the scorer finished before it could be killed"
    assert len(list(claims.iterdir())) == 1 and not path.exists()

    outcome = scoring.score_pending(settings)
    assert [item["batch"] for item in outcome["scored"]] == ["big"] and list(claims.iterdir()) == []
    assert (settings.processed_dir / "big.csv").read_bytes() == original
    predictions = pd.read_csv(settings.results_dir / scoring.SCORING_RESULTS / "big" / catalog.PREDICTIONS)
    assert len(predictions) == 300_000 and predictions["Id"].is_unique
