"""A full results disk, for real: RESULTS_DIR is a 1 MiB tmpfs, filled with one file. Mounting it needs root (the
suite runs as root; without root these tests fail and say so, they never skip). Against it: the atomic writers, the
local publisher and failure_end's history row and alert, with a real webhook server. Each must fail with the disk
named and its free space, leave nothing half-written, leave `latest`, the champion and the history as they were,
and alert once per failure over failure_end's tries.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from etl import champion, notify
from etl.airflow_tasks import end_with_failure
from etl.publishers import LocalPublisher
from etl.publishers.base import RunBundle
from etl.run_folder import RunFolder
from etl.steps import DAG_ID
from tests.support.servers import Answer, scripted_server
from utils.errors import DiskFullError, PipelineError, PublishError
from utils.files import (
    no_space_note,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_model_atomic,
    write_text_atomic,
)

DISK = "1m"  # tmpfs size=
LEFT = 100 * 1024  # what a test leaves free: a small file fits, a 256 KiB one is cut short
BIG = 256 * 1024
START = datetime(2025, 1, 1, tzinfo=UTC)
RUN_ID = "manual__2025-01-01T00:00:00+00:00"
PREVIOUS = "20241231_000000_previous"
NEW = "20250101_000000_run"
OLD = {"model.joblib": b"old model", "metrics.json": b'{"recall": 0.91}', "report.md": b"# old\n"}


def full_note(results: Path, free: str) -> str:
    return (f"no space left on the file system holding {results} ({free} free of 1 MiB; ENOSPC): free space there, "
            "then retry the task")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs mounted at tmp_path/results for the test, unmounted after it."""
    folder = tmp_path / "results"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.fail("these tests mount a 1 MiB tmpfs as RESULTS_DIR (mount -t tmpfs), which needs root: run them as "
                    "root, as make test does in CI")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.fail(f"mount -t tmpfs at {folder} failed (the container needs CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, text=True, check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill `folder`'s file system with one file, then give back `leave` bytes (whole pages) of it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    os.truncate(filler, filler.stat().st_size - leave)
    stats = os.statvfs(folder)
    assert stats.f_bavail * stats.f_frsize == leave
    return filler


def write_files(folder: Path, contents: dict[str, bytes]) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return tuple(sorted(folder.iterdir()))


def bundle_of(run_id: str, name: str, files: tuple[Path, ...]) -> RunBundle:
    return RunBundle(run_id, name, files, {path.name: sha256_file(path) for path in files})


def published_state(results: Path) -> dict[str, Any]:
    """What readers of RESULTS_DIR see: every name in it (but the champion's lock file, which failure_end's
    history write creates empty), where `latest` points, and the champion's and the history's bytes."""
    return {"names": sorted(set(os.listdir(results)) - {champion.LOCK}), "latest": os.readlink(results / "latest"),
            "champion": (results / champion.POINTER).read_bytes(),
            "history": (results / champion.HISTORY).read_bytes()}


def publish_previous(results: Path, tmp_path: Path) -> None:
    """RESULTS_DIR before the disk fills: run PREVIOUS published, `latest` and the champion naming it, its history
    row."""
    bundle = bundle_of("previous", PREVIOUS, write_files(tmp_path / "previous", OLD))
    publisher = LocalPublisher(results)
    publisher.publish(bundle)
    publisher.point_latest_at(bundle)
    champion.write_pointer(results, {"name": PREVIOUS, "run_id": "previous",
                                     "model_sha256": bundle.checksums["model.joblib"]})
    champion.record_in_history(results, {"run_id": "previous", "name": PREVIOUS, "promoted": "true"})


# --- the atomic writers -----------------------------------------------------------------------------------------

WRITERS = {
    "bytes": lambda target: write_bytes_atomic(target, os.urandom(BIG)),
    "text": lambda target: write_text_atomic(target, "x" * BIG),
    "json": lambda target: write_json_atomic(target, {"rows": ["x" * 64] * (BIG // 64)}),
    "model": lambda target: write_model_atomic(np.random.default_rng(0).random(BIG // 8), target),
    "champion pointer": lambda target: champion.write_pointer(target.parent, {"name": "x" * BIG}),
    "history": lambda target: champion.record_in_history(target.parent, {"run_id": "r", "reason": "x" * BIG}),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_an_atomic_write_on_a_full_disk_names_the_disk_and_leaves_the_file_and_no_temporary(small_disk, writer):
    target = small_disk / {"champion pointer": champion.POINTER, "history": champion.HISTORY}.get(writer, "file")
    target.write_bytes(b"the old version\n")
    fill(small_disk, leave=LEFT)  # the new version starts to fit, then the disk is full

    with pytest.raises(DiskFullError) as failure:
        WRITERS[writer](target)

    # the free space is measured once the temporary file is gone: the 100 KiB left before the write
    assert str(failure.value) == f"could not write {target}: {full_note(small_disk, '100 KiB')}"
    assert failure.value.errno == errno.ENOSPC and isinstance(failure.value, OSError)
    assert isinstance(failure.value, PipelineError) and not failure.value.transient
    assert target.read_bytes() == b"the old version\n"
    assert sorted(os.listdir(small_disk)) == sorted([target.name, "filler"])


def test_the_note_names_a_used_up_quota_and_is_empty_for_other_errors(small_disk):
    fill(small_disk, leave=LEFT)
    assert no_space_note(OSError(errno.EDQUOT, "Disk quota exceeded"), small_disk / "sub") == (
        f"the disk quota is used up on the file system holding {small_disk / 'sub'} (100 KiB free of 1 MiB; EDQUOT): "
        "free space there or raise the quota, then retry the task")
    assert no_space_note(OSError(errno.EACCES, "Permission denied"), small_disk) == ""
    assert no_space_note(ValueError("no"), small_disk) == ""


# --- the local publisher ----------------------------------------------------------------------------------------

def test_a_publish_on_a_full_disk_names_the_disk_and_changes_nothing_published(small_disk, tmp_path):
    publish_previous(small_disk, tmp_path)
    fill(small_disk, leave=LEFT)
    before = published_state(small_disk)
    # manifest.json and metrics.json fit, model.joblib does not: the staging copy holds part of the run
    bundle = bundle_of(RUN_ID, NEW, write_files(tmp_path / "new", {
        "manifest.json": b"{}", "metrics.json": b'{"recall": 0.97}', "model.joblib": os.urandom(BIG),
        "report.md": b"# new\n"}))

    with pytest.raises(PublishError) as failure:
        LocalPublisher(small_disk).publish(bundle)

    assert str(failure.value) == (f"could not publish run {RUN_ID} to {small_disk / bundle.name}: "
                                  f"{full_note(small_disk, '100 KiB')}")
    assert not failure.value.transient  # Airflow does not retry it: the disk stays full until someone frees space
    assert published_state(small_disk) == before  # no staging folder, no partial run, latest and champion as they were


# --- failure_end: the history cannot be written, the alert goes once -------------------------------------------

def failure_end_context(run_id: str, failed: list[str]) -> dict[str, Any]:
    """The part of Airflow's task context that failure_end reads."""
    def task_states(dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {run_id: dict.fromkeys(failed, "failed")}

    return {"dag": SimpleNamespace(dag_id=DAG_ID, params={}), "params": {}, "run_id": run_id,
            "dag_run": SimpleNamespace(logical_date=START, run_after=START),
            "ti": SimpleNamespace(dag_id=DAG_ID, run_id=run_id, get_task_states=task_states)}


@pytest.fixture
def failed_upload(small_disk, tmp_path, monkeypatch) -> RunFolder:
    """The run whose upload failed on the full disk, as upload's failure callback records it; the settings
    failure_end reads point at it (RUNS_DIR is not on the full disk)."""
    publish_previous(small_disk, tmp_path)
    fill(small_disk)
    run = RunFolder.open(tmp_path / "runs", RUN_ID, START)
    bundle = bundle_of(RUN_ID, NEW, write_files(tmp_path / "new", {"model.joblib": os.urandom(BIG)}))
    with pytest.raises(PublishError) as failure:
        LocalPublisher(small_disk).publish(bundle)
    notify.record_failure(run.path, notify.StepFailure("upload", "PublishError", str(failure.value), 1,
                                                       "http://airflow/upload?try_number=1"))
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RESULTS_DIR", str(small_disk))
    return run


def history_failure(results: Path) -> str:
    return f"could not write {results / champion.HISTORY}: {full_note(results, '0 B')}"


def alerts(hook) -> list[dict[str, Any]]:
    return [json.loads(request["body"]) for request in hook.requests]


def test_failure_end_on_a_full_disk_alerts_once_over_its_tries_then_records_the_run_once_space_is_freed(
        failed_upload, small_disk, monkeypatch):
    context = failure_end_context(RUN_ID, ["upload"])
    before = published_state(small_disk)
    with scripted_server(Answer(200, b"ok", "text/plain")) as hook:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
        for _ in range(2):  # the first try and a retry: the history cannot be written either time
            with pytest.raises(DiskFullError) as failure:
                end_with_failure(**context)
            assert str(failure.value) == history_failure(small_disk)
            assert published_state(small_disk) == before

        [alert] = alerts(hook)  # delivered by the first try; the retry did not send it again
        assert alert["task_id"] == "upload" and full_note(small_disk, "0 B") in alert["error"]
        assert alert["text"].endswith(f"\nNot recorded in the history: DiskFullError: {history_failure(small_disk)}")
        marker = json.loads((failed_upload.path / notify.FAILED_MARKER).read_text())
        assert marker["text"] == alert["text"] and marker[notify.DELIVERED_AT]

        (small_disk / "filler").unlink()  # someone freed space; the last retry records the run
        returned = end_with_failure(**context)

        assert len(hook.requests) == 1
    assert "Not recorded" not in returned["text"]
    [row] = [row for row in champion.read_history(small_disk) if row["run_id"] == RUN_ID]
    assert row["promoted"] == "false" and row["reason"].startswith("failed at upload: PublishError: could not publish")
    assert (small_disk / champion.POINTER).read_bytes() == before["champion"]
    assert os.readlink(small_disk / "latest") == PREVIOUS


def test_failure_end_sends_an_undelivered_alert_again_on_its_retry(failed_upload, small_disk, monkeypatch):
    context = failure_end_context(RUN_ID, ["upload"])
    with scripted_server(Answer(500, b"busy", "text/plain"), Answer(200, b"ok", "text/plain")) as hook:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
        with pytest.raises(notify.AlertDeliveryError) as undelivered:
            end_with_failure(**context)
        assert undelivered.value.__notes__ == [  # the history's error goes on beside it
            f"The run is not in the history either: DiskFullError: {history_failure(small_disk)}"]
        assert notify.DELIVERED_AT not in json.loads((failed_upload.path / notify.FAILED_MARKER).read_text())

        with pytest.raises(DiskFullError):  # the retry delivers the alert; the history still cannot be written
            end_with_failure(**context)
        (small_disk / "filler").unlink()
        end_with_failure(**context)  # the last retry writes the history and sends nothing more

        first, second = alerts(hook)
    assert first == second and "Not recorded in the history: DiskFullError" in first["text"]
    assert [row["run_id"] for row in champion.read_history(small_disk)] == ["previous", RUN_ID]
