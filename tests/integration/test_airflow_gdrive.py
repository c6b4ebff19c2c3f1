"""End to end with the real Airflow 3 and STORAGE_BACKEND=gdrive: `airflow dags test` publishes a run to the
local results folder and to the Drive fake of tests/fake_drive.py (a Shared Drive folder, a service-account key).

The fake listens on 127.0.0.1 in this process; the Airflow tasks reach it through GDRIVE_API_ROOT and the key's
token_uri while its thread serves, i.e. inside the `with FakeDrive()` block.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl import catalog
from etl.publishers.gdrive.client import FOLDER_MIME, folder_url
from etl.run_folder import short_run_id
from tests.support.airflow_runs import SUCCESSFUL_RUN, Folders, clone_home, dags_test
from tests.support.drive_fake import FakeDrive
from utils.files import file_digest

pytestmark = pytest.mark.slow

LOGICAL_DATE = datetime(2030, 2, 1, 6, 0, tzinfo=UTC)
PUBLISHED_NAMES = {*catalog.PUBLISHED, catalog.MANIFEST}  # what upload publishes, and its manifest


def test_dag_run_publishes_every_artifact_to_a_shared_drive_folder_and_locally(tmp_path: Path,
                                                                               migrated_airflow_home: Path):
    home = clone_home(migrated_airflow_home, tmp_path / "airflow_home")
    folders = Folders(tmp_path / "runs", tmp_path / "results")
    with FakeDrive() as drive:
        parent_id = drive.create_folder("pipeline runs", shared_drive=True)
        key = drive.write_service_account_key(tmp_path / "secrets" / "drive_sa.json")
        outcome = dags_test(home, LOGICAL_DATE, folders.settings(
            STORAGE_BACKEND="gdrive", GDRIVE_FOLDER_ID=parent_id, GOOGLE_APPLICATION_CREDENTIALS=str(key),
            GDRIVE_API_ROOT=drive.root_url))

    assert outcome.returncode == 0, outcome.output[-3000:]
    assert outcome.state == "success"
    assert outcome.task_states == SUCCESSFUL_RUN

    created = drive.files_in(parent_id)
    folders_made = [f for f in created if f.mime_type == FOLDER_MIME]
    assert len(folders_made) == 1, f"expected one run folder in the Drive folder, found {[f.name for f in created]}"
    [run_folder] = folders_made
    [pointer] = [f for f in created if f.mime_type != FOLDER_MIME]  # the first run became the champion
    assert pointer.name == "champion.json" and pointer.content == (folders.results / "champion.json").read_bytes()
    assert run_folder.mime_type == FOLDER_MIME
    assert run_folder.name == f"{LOGICAL_DATE:%Y%m%d_%H%M%S}_{short_run_id(outcome.run_id)}"
    assert json.loads(outcome.xcom_values["upload"]) == {
        "name": run_folder.name, "destinations": {"local": str(folders.results / run_folder.name),
                                                  "gdrive": folder_url(run_folder.id)}}

    local = folders.results / run_folder.name
    assert local.is_dir(), (f"no local copy {local.name}; {folders.results} holds "
                            f"{sorted(p.name for p in folders.results.glob('*'))}")
    assert {path.name for path in local.iterdir()} == PUBLISHED_NAMES
    in_drive = {item.name: item.md5 for item in drive.files_in(run_folder.id)}
    assert in_drive == {name: file_digest(local / name, "md5") for name in PUBLISHED_NAMES}

    drive_requests = [r for r in drive.requests if r.operation.startswith(("files.", "upload."))]
    assert {"files.get", "files.list", "files.create", "upload.start", "upload.chunk"} <= {
        r.operation for r in drive_requests}
    assert [r.path for r in drive_requests if r.query.get("supportsAllDrives") != "true"] == []
    assert [(r.operation, r.status) for r in drive.requests if not 200 <= r.status < 400] == []
