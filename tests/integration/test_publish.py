"""The local publisher against kills and leftovers, and `results/latest` against a backend that fails.

The kill tests run a real publish in a child process that announces each filesystem call it is about to make
and has made (rename, replace, unlink, rmdir, symlink, rmtree, the folder exchange), and SIGKILL it at each of
those points in turn; the hooks live in the child's script below, not in the product code. Between two such
calls nothing on disk changes, so what a reader finds at each kill point is all a reader can ever find.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from etl.pipeline import run_all
from etl.publishers import LocalPublisher, local
from etl.publishers.base import RunBundle
from tests.support.data import open_run
from tests.support.drive_fake import FakeDrive
from tests.support.processes import killed_at
from utils.config import Settings
from utils.errors import PublishError
from utils.files import sha256_file

STAMP = "20250101_000000"
RUN_ID = "run"
TARGET = f"{STAMP}_{RUN_ID}"
PREVIOUS = "20241231_000000_previous"
OLD = {"model.joblib": b"old model", "metrics.json": b'{"recall": 0.91}', "report.md": b"# old\n"}
NEW = {"model.joblib": b"new model, longer", "metrics.json": b'{"recall": 0.97}', "report.md": b"# new\n"}
CHILD = r'''
import os, shutil, sys, time
from pathlib import Path
from etl.publishers import local
from etl.publishers.base import RunBundle

results, source, kill_at, published_name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = {}

def announce(event):
    print(event, flush=True)
    if event == kill_at:
        time.sleep(600)  # the test kills this process here

def watched(name, function):
    def wrapper(*args, **kwargs):
        calls[name] = number = calls.get(name, 0) + 1
        announce(f"before {name} {number}")
        result = function(*args, **kwargs)
        announce(f"after {name} {number}")
        return result
    return wrapper

for module, name in ((os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (os, "symlink"),
                     (shutil, "rmtree"), (local, "exchange")):
    setattr(module, name, watched(name, getattr(module, name)))
bundle = RunBundle("run", published_name, tuple(sorted(source.iterdir())))
publisher = local.LocalPublisher(results)
publisher.publish(bundle)
publisher.point_latest_at(bundle)
print("done", flush=True)
'''


def write_files(folder: Path, contents: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder


def contents_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def new_bundle(tmp_path: Path) -> RunBundle:
    source = write_files(tmp_path / "source", NEW)
    files = tuple(sorted(source.iterdir()))
    return RunBundle(RUN_ID, TARGET, files, {path.name: sha256_file(path) for path in files})


def prepare(results: Path, republish: bool) -> None:
    """A results folder where run PREVIOUS is latest, a killed earlier publish left a staging copy of the run,
    and (for a republish) the run is already published with the OLD files."""
    write_files(results / PREVIOUS, OLD)
    (results / "latest").symlink_to(PREVIOUS)
    write_files(results / f".{TARGET}.k1ll3d00", {"model.joblib": b"half"})
    if republish:
        write_files(results / TARGET, OLD)


def run_child(script: Path, results: Path, source: Path, kill_at: str) -> list[str]:
    """Run the child's publish; SIGKILL it when it announces `kill_at`; the events it announced."""
    events, returncode, errors = killed_at([sys.executable, str(script), str(results), str(source), kill_at, TARGET],
                                           kill_at, timeout=30)
    if kill_at:
        assert events[-1:] == [kill_at] and returncode == -signal.SIGKILL, f"{kill_at} never came: {errors}"
    else:
        assert returncode == 0 and events[-1] == "done", errors
    return events


@pytest.mark.parametrize("republish", [True, False], ids=["republish", "first-publish"])
def test_a_publish_killed_at_any_point_leaves_a_complete_folder_and_the_next_one_cleans_up(tmp_path, republish):
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    bundle = new_bundle(tmp_path)
    source = bundle.files[0].parent
    prepare(tmp_path / "dry-run", republish)
    events = run_child(script, tmp_path / "dry-run", source, "")[:-1]
    swap = "exchange" if republish else "rename"
    assert {f"before {swap} 1", f"after {swap} 1", "before rmtree 1", "before unlink 1", "before symlink 1",
            "before replace 1"} <= set(events), events

    killed = {event: tmp_path / f"killed-{number}" for number, event in enumerate(events)}
    for event, results in killed.items():
        prepare(results, republish)
        run_child(script, results, source, event)
        if republish or (results / TARGET).exists():
            assert contents_of(results / TARGET) in (OLD, NEW), f"killed at {event}"
        assert (results / "latest").resolve().name in (PREVIOUS, TARGET), f"killed at {event}"
        assert contents_of(results / "latest") in (OLD, NEW), f"killed at {event}"

    for event, results in killed.items():
        publisher = LocalPublisher(results)
        publisher.publish(bundle)
        publisher.point_latest_at(bundle)
        assert sorted(os.listdir(results)) == sorted([PREVIOUS, TARGET, "latest"]), f"killed at {event}"
        assert contents_of(results / "latest") == NEW


def test_a_publish_removes_the_leftovers_of_its_own_run_only(tmp_path):
    results = tmp_path / "results"
    own = [write_files(results / f".{TARGET}.k1ll3d00", {"model.joblib": b"half"}),
           write_files(results / f".{TARGET}.old", OLD)]
    (results / f".{TARGET}.latest").symlink_to(TARGET)
    others = [write_files(results / f".{TARGET}.b.a1b2c3d4", {"model.joblib": b"run 'run.b' is copying"}),
              write_files(results / f".{STAMP}_other.a1b2c3d4", {"model.joblib": b"run 'other' is copying"})]

    LocalPublisher(results).publish(new_bundle(tmp_path))

    assert [path for path in own if os.path.lexists(path)] == []
    assert not os.path.lexists(results / f".{TARGET}.latest")
    assert [contents_of(path) for path in others] == [{"model.joblib": b"run 'run.b' is copying"},
                                                      {"model.joblib": b"run 'other' is copying"}]
    assert contents_of(results / TARGET) == NEW


def test_without_an_atomic_exchange_a_retry_is_skipped_and_a_change_is_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "_renameat2", None)  # as on macOS, or with glibc older than 2.28
    results = tmp_path / "results"
    bundle = new_bundle(tmp_path)
    publisher = LocalPublisher(results)
    assert publisher.publish(bundle).files == dict.fromkeys(NEW, "copied")  # a first publish is one rename
    assert publisher.publish(bundle).files == dict.fromkeys(NEW, "skipped")

    write_files(results / TARGET, OLD)
    with pytest.raises(PublishError, match=rf"{TARGET}: .*renameat2.*RESULTS_DIR={results} must be on a Linux "
                                           "file system that can swap two folders atomically"):
        publisher.publish(bundle)
    assert contents_of(results / TARGET) == OLD
    assert os.listdir(results) == [TARGET]


def test_latest_moves_only_when_every_backend_published_the_run(make_settings: Callable[..., Settings], tmp_path):
    settings = make_settings()
    run_all(open_run(settings, "good"), settings)
    latest = tmp_path / "results" / "latest"
    good = latest.resolve()
    with FakeDrive() as drive:
        key = drive.write_service_account_key(tmp_path / "secrets" / "drive_sa.json")
        my_drive_folder = drive.create_folder("My Drive folder")  # a service account cannot store files there
        settings = make_settings(storage_backend="gdrive", gdrive_folder_id=my_drive_folder,
                                 google_credentials=key, gdrive_api_root=drive.root_url)
        with pytest.raises(PublishError, match="storageQuotaExceeded"):
            run_all(open_run(settings, "refused"), settings)

    assert latest.resolve() == good
    assert [path.name for path in (tmp_path / "results").glob("*_refused")], "the local copy is still made"
