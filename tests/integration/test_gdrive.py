"""The Google Drive publisher and `gdrive-check`, against the fake Drive API in tests/fake_drive.py.

No test reaches Google: an autouse guard fails any test that looks up a host other than 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httplib2
import pytest
from google.oauth2 import service_account
from googleapiclient.http import HttpRequest

from etl import champion, gdrive_check
from etl.champion import record_failed_run
from etl.pipeline import execute_for_candidates, execute_step, run_all
from etl.publishers import remote_publishers
from etl.publishers.base import RunBundle
from etl.publishers.gdrive.client import FOLDER_MIME, connect, folder_url
from etl.publishers.gdrive.compat import ChunkBytesUpload, ServiceAccountCredentials
from etl.publishers.gdrive.credentials import identity_from_settings
from etl.publishers.gdrive.publisher import RUN_ID_PROPERTY, UPLOAD_GRANULARITY, GDrivePublisher, run_property
from etl.run_folder import RunFolder, short_run_id
from etl.steps import STEP, STEPS
from tests.support.data import open_run
from tests.support.drive_fake import DROP, FakeDrive, FakeFile, Fault
from tests.support.servers import free_port
from utils.config import Settings
from utils.errors import ArtifactError, ConfigError, PublishError
from utils.files import file_digest, read_json, sha256_file

RUN_ID = "manual__2025-11-23T09:30:00+00:00"
STARTED = datetime(2025, 11, 23, 9, 30, tzinfo=UTC)
STAMP = "20251123_093000"
FOLDER_NAME = f"{STAMP}_{short_run_id(RUN_ID)}"
SA_EMAIL = "pipeline@test-project.iam.gserviceaccount.com"
CHUNK = 4 * UPLOAD_GRANULARITY  # 1 MiB: small enough to split test files into several chunks
ARTIFACTS = {"model.joblib": 1_500_000, "metrics.json": 600, "roc_curve.png": 40_000, "confusion_matrix.png": 30_000,
             "report.md": 2_000, "manifest.json": 900}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def outside_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if anything (google-auth's background threads included) resolves a non-loopback host."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in LOOPBACK:
            attempts.append(str(host))
            raise socket.gaierror(f"the test blocked a name lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield attempts
    for thread in threading.enumerate():
        if type(thread).__module__.startswith("google."):
            thread.join(timeout=10)
    assert attempts == [], f"the test tried to reach {attempts}"


@pytest.fixture
def fake() -> Iterator[FakeDrive]:
    with FakeDrive() as drive:
        yield drive


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays the publisher asked for (instead of sleeping them)."""
    return []


@pytest.fixture
def drive_settings(fake: FakeDrive, tmp_path: Path, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings for the fake: a service-account key and a folder on a Shared Drive, unless overridden."""

    def factory(**overrides: object) -> Settings:
        values: dict[str, object] = {"storage_backend": "gdrive", "gdrive_api_root": fake.root_url}
        values.update(overrides)
        if "google_credentials" not in values:
            values["google_credentials"] = fake.write_service_account_key(tmp_path / "secrets" / "drive_sa.json")
        if "gdrive_folder_id" not in values:
            values["gdrive_folder_id"] = fake.create_folder("pipeline runs", shared_drive=True)
        return make_settings(**values)

    return factory


def published_name(folder: Path, run_id: str, started: datetime = STARTED) -> str:
    """The name upload gives the run `run_id` started at `started`: RunFolder.published_name of a run whose first
    step has begun (a run folder beside `folder`)."""
    run = RunFolder.open(folder.parent / f".runs-of-{folder.name}", run_id, declared_start=started)
    run.begin(STEPS[0])
    return run.published_name()


def write_bundle(folder: Path, sizes: dict[str, int], run_id: str = RUN_ID, seed: int = 0) -> RunBundle:
    """Artifacts of the given sizes with reproducible contents, their recorded sha256, and the run's published
    name as upload builds it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, size) in enumerate(sizes.items()):
        path = folder / name
        path.write_bytes(reproducible_bytes(size, seed * 1000 + index))
        paths.append(path)
    return RunBundle(run_id, published_name(folder, run_id), tuple(paths), {p.name: sha256_file(p) for p in paths})


def reproducible_bytes(size: int, seed: int) -> bytes:
    block = hashlib.sha512(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def publisher(settings: Settings, sleeps: list[float], chunk_size: int = CHUNK) -> GDrivePublisher:
    return GDrivePublisher(settings, chunk_size=chunk_size, sleep=sleeps.append)


def run_folders(fake: FakeDrive, parent_id: str) -> list[FakeFile]:
    return [f for f in fake.files_in(parent_id) if f.mime_type == FOLDER_MIME]


def only_run_folder(fake: FakeDrive, settings: Settings) -> FakeFile:
    folders = run_folders(fake, settings.gdrive_folder_id)
    assert [f.name for f in folders] == [FOLDER_NAME]
    return folders[0]


def assert_intact(fake: FakeDrive, folder: FakeFile, bundle: RunBundle) -> None:
    """The run folder holds exactly the bundle's files, one each, byte for byte, marked with the run id."""
    stored = fake.files_in(folder.id)
    assert sorted(f.name for f in stored) == sorted(p.name for p in bundle.files)
    for item in stored:
        local = next(p for p in bundle.files if p.name == item.name)
        assert item.content == local.read_bytes()
        assert item.md5 == file_digest(local, "md5")
        assert item.app_properties == run_property(bundle.run_id)


def test_full_upload_creates_one_timestamped_folder_with_every_file(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", ARTIFACTS)

    result = publisher(settings, sleeps).publish(bundle)

    folder = only_run_folder(fake, settings)
    assert folder.app_properties == {RUN_ID_PROPERTY: RUN_ID}
    assert_intact(fake, folder, bundle)
    assert result.backend == "gdrive"
    assert result.location == folder_url(folder.id)
    assert result.files == {name: "uploaded" for name in ARTIFACTS}
    assert sleeps == []


def test_same_run_twice_makes_no_duplicates(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", ARTIFACTS)
    publisher(settings, sleeps).publish(bundle)
    uploads_before = len(fake.requests_for("upload.start"))

    again = publisher(settings, sleeps).publish(bundle)

    assert again.files == {name: "skipped" for name in ARTIFACTS}
    assert len(fake.requests_for("upload.start")) == uploads_before
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_a_run_with_more_files_adds_only_the_new_ones_and_replaces_changed_ones(fake, drive_settings, tmp_path,
                                                                                  sleeps):
    settings = drive_settings()
    first = write_bundle(tmp_path / "run", {"model.joblib": 300_000, "metrics.json": 500})
    publisher(settings, sleeps).publish(first)
    folder = only_run_folder(fake, settings)
    ids_before = {f.name: f.id for f in fake.files_in(folder.id)}

    (tmp_path / "run" / "metrics.json").write_text('{"recall": 0.97}')
    (tmp_path / "run" / "report.md").write_text("# Report\n")
    paths = tuple(tmp_path / "run" / name for name in ("model.joblib", "metrics.json", "report.md"))
    second = RunBundle(RUN_ID, first.name, paths, {p.name: sha256_file(p) for p in paths})
    result = publisher(settings, sleeps).publish(second)

    assert result.files == {"model.joblib": "skipped", "metrics.json": "replaced", "report.md": "uploaded"}
    assert_intact(fake, only_run_folder(fake, settings), second)
    ids_after = {f.name: f.id for f in fake.files_in(folder.id)}
    assert {k: ids_after[k] for k in ids_before} == ids_before  # replaced in place, not re-created


def test_runs_with_the_same_stamp_get_folders_of_different_names(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    publisher(settings, sleeps).publish(write_bundle(tmp_path / "a", {"metrics.json": 100}, run_id="run-a"))
    publisher(settings, sleeps).publish(write_bundle(tmp_path / "b", {"metrics.json": 100}, run_id="run-b", seed=1))

    folders = run_folders(fake, settings.gdrive_folder_id)
    assert {f.name: f.app_properties[RUN_ID_PROPERTY] for f in folders} == {f"{STAMP}_run-a": "run-a",
                                                                            f"{STAMP}_run-b": "run-b"}


def test_run_ids_with_quotes_or_too_long_for_an_app_property_are_found_again(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    for run_id in ("it's \\ a run", "manual__" + "x" * 200):
        bundle = write_bundle(tmp_path / run_id[:20], {"metrics.json": 100}, run_id=run_id)
        publisher(settings, sleeps).publish(bundle)
        assert publisher(settings, sleeps).publish(bundle).files == {"metrics.json": "skipped"}
    assert len(run_folders(fake, settings.gdrive_folder_id)) == 2


def test_a_trashed_run_folder_is_not_reused(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"metrics.json": 100})
    publisher(settings, sleeps).publish(bundle)
    fake.trash(only_run_folder(fake, settings).id)

    assert publisher(settings, sleeps).publish(bundle).files == {"metrics.json": "uploaded"}
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_listing_follows_every_page(fake, drive_settings, tmp_path, sleeps):
    fake.page_size = 2
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {name: 100 for name in ARTIFACTS})
    publisher(settings, sleeps).publish(bundle)

    assert publisher(settings, sleeps).publish(bundle).files == {name: "skipped" for name in ARTIFACTS}
    assert any("pageToken" in r.query for r in fake.requests_for("files.list"))


def test_a_chunk_answered_500_then_429_is_retried_and_uploaded_once(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 3 * CHUNK + 10, "metrics.json": 100})
    fake.fail_next("upload.chunk", 500, 429)

    result = publisher(settings, sleeps).publish(bundle)

    assert result.files == {"model.joblib": "uploaded", "metrics.json": "uploaded"}
    assert [r.status for r in fake.requests_for("upload.chunk")][:3] == [500, 429, 308]
    assert len(sleeps) == 2
    assert len(fake.requests_for("upload.start")) == 2
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_rate_limit_403_and_dropped_connections_are_retried(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 3 * CHUNK, "metrics.json": 100})
    fake.fail_next("files.list", Fault(403, "userRateLimitExceeded"), DROP, DROP)
    fake.fail_next("upload.chunk", DROP, DROP)  # httplib2 resends once by itself; the second drop surfaces

    publisher(settings, sleeps).publish(bundle)

    assert_intact(fake, only_run_folder(fake, settings), bundle)
    status_queries = [r for r in fake.requests_for("upload.chunk") if r.body_size == 0]
    assert status_queries, "after a broken chunk the upload asks Drive how much arrived, then resumes"
    assert len(sleeps) >= 3


def test_answers_lost_after_the_work_was_done_make_no_duplicates(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 2 * CHUNK, "metrics.json": 100})
    fake.fail_next("files.create", Fault(503, after_commit=True))
    fake.fail_next("upload.chunk", Fault(503, after_commit=True), Fault(503, after_commit=True))

    publisher(settings, sleeps).publish(bundle)

    assert_intact(fake, only_run_folder(fake, settings), bundle)
    assert len(fake.requests_for("files.create")) == 1


@pytest.mark.parametrize("size", [100, 2 * CHUNK + 10], ids=["one-chunk", "last-of-three-chunks"])
def test_a_lost_reply_to_a_finished_upload_counts_as_done_when_the_file_landed(fake, drive_settings, tmp_path, sleeps,
                                                                             caplog, size):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": size, "metrics.json": 100})
    fake.lose_reply_to_next_finished_upload()

    result = publisher(settings, sleeps).publish(bundle)

    assert result.files == {"model.joblib": "uploaded", "metrics.json": "uploaded"}
    assert 404 in [r.status for r in fake.requests_for("upload.chunk")], "the session was unknown after the reply"
    assert_intact(fake, only_run_folder(fake, settings), bundle)  # one model.joblib, not two
    assert "the reply to the last chunk was lost; not uploaded again" in caplog.text
    assert publisher(settings, sleeps).publish(bundle).files == {name: "skipped" for name in result.files}
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_a_lost_reply_to_a_replaced_file_counts_as_done_when_its_content_landed(fake, drive_settings, tmp_path,
                                                                              sleeps):
    settings = drive_settings()
    pointer = tmp_path / "champion.json"
    pointer.write_text('{"name": "first"}')
    publisher(settings, sleeps).publish_pointer(pointer)
    pointer.write_text('{"name": "second"}')
    fake.lose_reply_to_next_finished_upload()

    location = publisher(settings, sleeps).publish_pointer(pointer)

    (stored,) = fake.files_in(settings.gdrive_folder_id)
    assert stored.content == pointer.read_bytes() and stored.id in location
    assert 404 in [r.status for r in fake.requests_for("upload.chunk")]


def test_an_unknown_upload_session_without_the_file_behind_it_is_still_an_error(fake, drive_settings, tmp_path,
                                                                               sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"metrics.json": 100})
    fake.fail_next("upload.chunk", Fault(404, "notFound"))

    expected = ("uploading metrics.json .*HTTP 404 notFound.*Drive no longer knows the upload session and holds no "
                "metrics.json with the local file's md5")
    with pytest.raises(PublishError, match=expected) as error:
        publisher(settings, sleeps).publish(bundle)
    assert error.value.transient, "a new upload session may succeed: Airflow retries the step"
    assert run_folders(fake, settings.gdrive_folder_id) == []  # nothing landed: the empty run folder went

    assert publisher(settings, sleeps).publish(bundle).files == {"metrics.json": "uploaded"}
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_a_failure_that_persists_stops_after_the_retries_with_a_clear_error(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    fake.fail_next("files.get", 500, 503, 500)

    with pytest.raises(PublishError, match=r"GDRIVE_FOLDER_ID=.*HTTP 500.*still failing after 2 retries") as error:
        GDrivePublisher(settings, num_retries=2, sleep=sleeps.append).publish(
            write_bundle(tmp_path / "run", {"metrics.json": 10}))
    assert [r.status for r in fake.requests_for("files.get")] == [500, 503, 500]
    assert len(sleeps) == 2
    assert error.value.transient is True  # Drive may be back by the task's next try


def test_an_unreachable_api_is_reported_without_the_secrets_of_its_url(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_api_root=f"http://127.0.0.1:{free_port()}/?key=api-key-77")

    with pytest.raises(PublishError, match=r"the Drive API at http://127\.0\.0\.1:\d+/ could not be reached") as error:
        GDrivePublisher(settings, num_retries=1, sleep=sleeps.append).publish(
            write_bundle(tmp_path / "run", {"metrics.json": 10}))
    assert "api-key-77" not in str(error.value)


def test_storage_quota_error_says_what_to_do_and_is_not_retried(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_folder_id=fake.create_folder("My Drive folder"))
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 1000})

    with pytest.raises(PublishError) as caught:
        publisher(settings, sleeps).publish(bundle)

    message = str(caught.value)
    for expected in ("storageQuotaExceeded", SA_EMAIL, "Shared Drive", "authorized_user", "GDRIVE_IMPERSONATE",
                     "docs/google-drive.md"):
        assert expected in message
    assert [r.status for r in fake.requests_for("upload.start")] == [403]
    assert sleeps == []
    assert caught.value.transient is False  # Airflow fails the task at once: a retry would meet the same quota


def test_a_refused_upload_leaves_no_empty_run_folder_and_a_retry_makes_one(fake, drive_settings, tmp_path,
                                                                            sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 1000, "metrics.json": 100})
    fake.fail_next("upload.start", Fault(403, "forbidden"))

    with pytest.raises(PublishError, match="uploading model.joblib .*HTTP 403 forbidden"):
        publisher(settings, sleeps).publish(bundle)
    assert run_folders(fake, settings.gdrive_folder_id) == []
    assert [r.query.get("supportsAllDrives") for r in fake.requests_for("files.update")] == ["true"]

    assert publisher(settings, sleeps).publish(bundle).files == {"model.joblib": "uploaded",
                                                                 "metrics.json": "uploaded"}
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_a_storage_quota_failure_leaves_no_empty_run_folder(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_folder_id=fake.create_folder("My Drive folder"))

    with pytest.raises(PublishError, match="storageQuotaExceeded"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"model.joblib": 1000}))
    assert run_folders(fake, settings.gdrive_folder_id) == []


def test_an_empty_run_folder_that_cannot_be_removed_is_reported_and_the_upload_error_raised(
        fake, drive_settings, tmp_path, sleeps, caplog):
    settings = drive_settings(gdrive_folder_id=fake.create_folder("My Drive folder"))
    fake.fail_next("files.update", Fault(403, "insufficientFilePermissions"))

    with pytest.raises(PublishError, match="storageQuotaExceeded"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"model.joblib": 1000}))

    [left] = run_folders(fake, settings.gdrive_folder_id)
    [warning] = [r for r in caplog.records if r.name == "pipeline.gdrive" and r.levelname == "WARNING"]
    for expected in (FOLDER_NAME, folder_url(left.id), "insufficientFilePermissions", "delete it"):
        assert expected in warning.getMessage()


def test_missing_folder_says_which_id_and_whom_to_share_it_with(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_folder_id="1NoSuchFolderId")

    with pytest.raises(PublishError, match=r"GDRIVE_FOLDER_ID=1NoSuchFolderId.*share the folder with "
                                           + SA_EMAIL.replace(".", r"\.")):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))
    assert [r.status for r in fake.requests_for("files.get")] == [404]
    assert fake.requests_for("upload.start") == []


def test_refused_token_names_the_key_file_and_the_account(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    fake.fail_next("token", Fault(400, "invalid_grant"))

    with pytest.raises(PublishError) as caught:
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))

    message = str(caught.value)
    assert str(settings.google_credentials) in message
    assert SA_EMAIL in message
    assert "invalid_grant" in message
    assert [r.operation for r in fake.requests] == ["token"]
    assert caught.value.transient is False


def test_a_large_file_goes_up_in_several_chunks_and_arrives_intact(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    size = 20 * 1024 * 1024 + 12_345
    bundle = write_bundle(tmp_path / "run", {"model.joblib": size})

    publisher(settings, sleeps, chunk_size=16 * UPLOAD_GRANULARITY).publish(bundle)

    ranges = [r.headers["content-range"] for r in fake.requests_for("upload.chunk")]
    assert len(ranges) == 6
    assert ranges[0] == f"bytes 0-4194303/{size}"
    assert ranges[-1] == f"bytes 20971520-{size - 1}/{size}"
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_shared_drive_flags_are_sent_on_every_request(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", ARTIFACTS))

    drive_requests = [r for r in fake.requests if r.operation.startswith(("files.", "upload."))]
    assert {r.operation for r in drive_requests} == {"files.get", "files.list", "files.create", "upload.start",
                                                     "upload.chunk"}
    assert all(r.query.get("supportsAllDrives") == "true" for r in drive_requests)
    for listing in fake.requests_for("files.list"):
        assert listing.query["includeItemsFromAllDrives"] == "true"
        assert listing.query["corpora"] == "drive"


def test_an_oauth_user_token_uploads_into_my_drive(fake, drive_settings, tmp_path, sleeps):
    token = fake.write_user_token(tmp_path / "secrets" / "token.json", email="someone@gmail.com")
    settings = drive_settings(google_credentials=token, gdrive_folder_id=fake.create_folder("My Drive folder"))
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 2 * CHUNK + 1, "metrics.json": 100})

    publisher(settings, sleeps).publish(bundle)

    assert_intact(fake, only_run_folder(fake, settings), bundle)
    assert all("corpora" not in r.query for r in fake.requests_for("files.list"))  # a My Drive: no driveId


def test_domain_wide_delegation_acts_as_the_user(fake, drive_settings, tmp_path, sleeps):
    key = fake.write_service_account_key(tmp_path / "sa.json", domain_wide_delegation=True)
    settings = drive_settings(google_credentials=key, gdrive_impersonate="ana@example.com",
                              gdrive_folder_id=fake.create_folder("My Drive folder"))
    bundle = write_bundle(tmp_path / "run", {"metrics.json": 100})

    publisher(settings, sleeps).publish(bundle)

    assert_intact(fake, only_run_folder(fake, settings), bundle)


def test_delegation_not_authorized_in_the_admin_console_is_explained(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_impersonate="ana@example.com")

    with pytest.raises(PublishError, match="Domain-wide delegation is not set up.*Admin console"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))


def test_a_corrupted_upload_is_caught_by_md5_and_replaced_on_retry(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings()
    bundle = write_bundle(tmp_path / "run", {"model.joblib": 5000})
    fake.corrupt_next_upload()

    with pytest.raises(PublishError, match="model.joblib arrived in Drive .* with md5 .* local file has md5"):
        publisher(settings, sleeps).publish(bundle)
    assert publisher(settings, sleeps).publish(bundle).files == {"model.joblib": "replaced"}
    assert_intact(fake, only_run_folder(fake, settings), bundle)


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("make_file, expected", [
    (lambda d: d / "absent.json", "does not exist"),
    (lambda d: write_json(d / "broken.json", "{not json"), "is not a JSON credentials file"),
    (lambda d: write_json(d / "list.json", "[]"), "not a credentials object"),
    (lambda d: write_json(d / "client.json", '{"installed": {"client_id": "x"}}'), "OAuth client secret, not a token"),
    (lambda d: write_json(d / "other.json", '{"type": "external_account"}'), "'external_account'"),
    (lambda d: write_json(d / "bad_key.json", '{"type": "service_account", "client_email": "a@b"}'),
     "not a usable service_account file"),
], ids=["missing", "not-json", "not-an-object", "client-secret", "unsupported-type", "incomplete-key"])
def test_unusable_credentials_are_a_config_error_before_any_request(fake, drive_settings, tmp_path, sleeps,
                                                                     make_file, expected):
    path = make_file(tmp_path)
    settings = drive_settings(google_credentials=path)

    with pytest.raises(ConfigError, match=expected) as caught:
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))
    assert str(path) in str(caught.value)
    assert fake.requests == []


def test_impersonation_with_a_user_token_is_a_config_error(fake, drive_settings, tmp_path, sleeps):
    token = fake.write_user_token(tmp_path / "token.json")
    settings = drive_settings(google_credentials=token, gdrive_impersonate="ana@example.com")

    with pytest.raises(ConfigError, match="GDRIVE_IMPERSONATE=ana@example.com needs a service-account key"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))


def test_missing_folder_id_is_a_config_error(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_folder_id="")

    with pytest.raises(ConfigError, match="GDRIVE_FOLDER_ID is not set"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))
    with pytest.raises(ConfigError, match="GDRIVE_FOLDER_ID"):
        remote_publishers(settings)
    assert fake.requests == []


def test_a_folder_id_that_is_a_file_is_a_config_error(fake, drive_settings, tmp_path, sleeps):
    parent = fake.create_folder("runs", shared_drive=True)
    file_id = fake.create_file("notes.txt", parent, b"hello", "text/plain")
    settings = drive_settings(gdrive_folder_id=file_id)

    with pytest.raises(ConfigError, match=f"GDRIVE_FOLDER_ID={file_id} is 'notes.txt', a file of type text/plain"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))
    assert fake.requests_for("upload.start") == [] and fake.requests_for("files.create") == []


def test_a_read_only_folder_is_explained(fake, drive_settings, tmp_path, sleeps):
    settings = drive_settings(gdrive_folder_id=fake.create_folder("view only", shared_drive=True, writable=False))

    with pytest.raises(PublishError, match=f"{SA_EMAIL} can only view the folder 'view only'.*Editor"):
        publisher(settings, sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))


def test_a_local_file_changed_since_it_was_recorded_is_not_uploaded(fake, drive_settings, tmp_path, sleeps):
    bundle = write_bundle(tmp_path / "run", {"metrics.json": 10})
    bundle.files[0].write_text("changed")

    with pytest.raises(ArtifactError, match="metrics.json has sha256"):
        publisher(drive_settings(), sleeps).publish(bundle)
    assert fake.requests == []


def test_remote_publishers_builds_the_drive_publisher(drive_settings):
    assert [p.name for p in remote_publishers(drive_settings())] == ["gdrive"]


@pytest.mark.parametrize("folder_id, key_exists, level, expected", [
    ("1FolderId", False, "WARNING", "Drive skipped: STORAGE_BACKEND=auto and GDRIVE_FOLDER_ID is set, but the "
                                    "credentials file GOOGLE_APPLICATION_CREDENTIALS={key} does not exist"),
    ("", True, "INFO", "Drive skipped: STORAGE_BACKEND=auto and GDRIVE_FOLDER_ID is not set"),
    ("1FolderId", True, "INFO", "Drive used: STORAGE_BACKEND=auto, GDRIVE_FOLDER_ID is set and the credentials "
                                "file {key} exists"),
], ids=["folder-without-key", "no-folder", "folder-and-key"])
def test_auto_says_whether_it_uses_drive_and_why(fake, make_settings, tmp_path, caplog, folder_id, key_exists,
                                                 level, expected):
    key = tmp_path / "secrets" / "drive_sa.json"
    if key_exists:
        fake.write_service_account_key(key)
    settings = make_settings(storage_backend="auto", gdrive_folder_id=folder_id, google_credentials=key)

    with caplog.at_level("INFO", logger="pipeline"):
        chosen = remote_publishers(settings)

    assert [p.name for p in chosen] == (["gdrive"] if folder_id and key_exists else [])
    assert [(r.levelname, r.getMessage()[:len(expected.format(key=key))]) for r in caplog.records] == [
        (level, expected.format(key=key))]


def test_chunk_size_must_suit_resumable_uploads(drive_settings):
    with pytest.raises(ValueError, match="multiple of 262144"):
        GDrivePublisher(drive_settings(), chunk_size=1_000_000)


def set_drive_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for name, value in (("GOOGLE_APPLICATION_CREDENTIALS", str(settings.google_credentials)),
                        ("GDRIVE_FOLDER_ID", settings.gdrive_folder_id),
                        ("GDRIVE_API_ROOT", settings.gdrive_api_root)):
        monkeypatch.setenv(name, value)


def test_gdrive_check_reports_account_and_shared_drive_without_uploading(fake, drive_settings, monkeypatch, capsys):
    settings = drive_settings()
    set_drive_env(monkeypatch, settings)

    assert gdrive_check.main([]) == 0

    output = capsys.readouterr().out
    assert f"account:     {SA_EMAIL}" in output
    assert "'pipeline runs'" in output and "on Shared Drive 0ASharedDrive" in output
    assert "gdrive-check: OK" in output
    assert not [r for r in fake.requests if r.operation in ("files.create", "upload.start", "upload.chunk")]


def test_gdrive_check_fails_on_a_folder_id_that_is_not_a_folder(fake, drive_settings, monkeypatch, capsys):
    parent = fake.create_folder("runs", shared_drive=True)
    set_drive_env(monkeypatch, drive_settings(gdrive_folder_id=fake.create_file("model.joblib", parent, b"x")))

    assert gdrive_check.main([]) == 1

    assert "gdrive-check: FAILED: GDRIVE_FOLDER_ID=" in capsys.readouterr().err


def test_gdrive_check_warns_that_a_service_account_cannot_fill_a_my_drive(fake, drive_settings, monkeypatch, capsys):
    set_drive_env(monkeypatch, drive_settings(gdrive_folder_id=fake.create_folder("My Drive folder")))

    assert gdrive_check.main([]) == 1
    assert "service accounts own no Drive storage" in capsys.readouterr().err
    assert gdrive_check.main(["--allow-my-drive"]) == 0
    assert "in a 'My Drive'" in capsys.readouterr().out


def test_gdrive_check_with_a_user_token_names_the_user(fake, drive_settings, tmp_path, monkeypatch, capsys):
    token = fake.write_user_token(tmp_path / "token.json", email="someone@gmail.com")
    set_drive_env(monkeypatch, drive_settings(google_credentials=token, gdrive_folder_id=fake.create_folder("mine")))

    assert gdrive_check.main([]) == 0
    assert "account:     someone@gmail.com" in capsys.readouterr().out


def test_service_account_sign_in_starts_no_request_outside_the_fake(fake, drive_settings, tmp_path, sleeps,
                                                                     outside_lookups):
    publisher(drive_settings(), sleeps).publish(write_bundle(tmp_path / "run", {"metrics.json": 10}))

    for thread in threading.enumerate():
        if type(thread).__module__.startswith("google."):
            thread.join(timeout=10)
    assert outside_lookups == []


# What etl/publishers/gdrive/compat.py relies on in google-auth and googleapiclient: each test fails naming the
# installed version and the compat item to revisit when an upgrade removes, renames or stops calling it.

def library(distribution: str) -> str:
    """The installed version of a distribution, for failure messages."""
    return f"{distribution} {importlib.metadata.version(distribution)}"


def spy_on(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[tuple[object, ...]]:
    """Record the arguments of each call of the method `owner.name`, which still runs; fail if it is gone."""
    original = getattr(owner, name, None)
    assert callable(original), f"{owner.__module__}.{owner.__qualname__}.{name} no longer exists"
    calls: list[tuple[object, ...]] = []

    def recording(self: object, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def test_compat_google_auth_asks_our_hook_before_a_regional_access_boundary_lookup(fake, drive_settings, sleeps,
                                                                                    monkeypatch):
    hook = "_is_regional_access_boundary_lookup_required"
    assert hook in vars(ServiceAccountCredentials), "ServiceAccountCredentials must override the hook itself"
    assert hasattr(service_account.Credentials, hook), (
        f"{library('google-auth')}: service_account.Credentials has no {hook} any more; find the new way to turn "
        "off the Regional Access Boundary lookup and update compat.ServiceAccountCredentials")
    calls = spy_on(monkeypatch, ServiceAccountCredentials, hook)

    connect(identity_from_settings(drive_settings()), fake.root_url, sleep=sleeps.append)

    assert calls, (f"{library('google-auth')} refreshed a service-account token without calling {hook}: "
                   "compat.ServiceAccountCredentials no longer stops the lookup of iamcredentials.googleapis.com")


def test_compat_googleapiclient_waits_between_retries_with_the_request_sleep(fake, drive_settings, sleeps):
    bare = HttpRequest(httplib2.Http(), None, fake.root_url)
    assert "_sleep" in vars(bare), (f"{library('google-api-python-client')}: HttpRequest has no _sleep attribute "
                                    "any more; update compat.request_builder")
    fake.fail_next("about.get", 500)

    connect(identity_from_settings(drive_settings()), fake.root_url, num_retries=1, sleep=sleeps.append)

    assert len(sleeps) == 1, (f"{library('google-api-python-client')} retried a request without calling "
                              "HttpRequest._sleep: compat.request_builder's seam is ignored (and tests sleep)")


def test_compat_googleapiclient_reads_chunks_with_getbytes_when_there_is_no_stream(fake, drive_settings, tmp_path,
                                                                                   sleeps, monkeypatch):
    asked = spy_on(monkeypatch, ChunkBytesUpload, "has_stream")
    reads = spy_on(monkeypatch, ChunkBytesUpload, "getbytes")
    streams = spy_on(monkeypatch, ChunkBytesUpload, "stream")
    path = tmp_path / "model.joblib"
    path.write_bytes(reproducible_bytes(2 * CHUNK + 10, 0))
    fake.fail_next("upload.chunk", 500)
    client = connect(identity_from_settings(drive_settings()), fake.root_url, sleep=sleeps.append)

    client.upload(path, "uploading", CHUNK, parent_id=fake.create_folder("runs", shared_drive=True))

    message = f"{library('google-api-python-client')}: HttpRequest.next_chunk"
    assert asked and not streams, f"{message} no longer asks has_stream(); update compat.ChunkBytesUpload"
    assert [begin for begin, _ in reads] == [0, CHUNK, 2 * CHUNK], f"{message} reads chunks another way: {reads}"
    assert [r.body_size for r in fake.requests_for("upload.chunk")][:2] == [CHUNK, CHUNK], (
        f"{message} resent a failed chunk incomplete")


def test_the_champion_pointer_is_one_file_in_the_drive_folder_replaced_in_place(fake, drive_settings, sleeps):
    settings = drive_settings()
    run_all(open_run(settings, "first"), settings)
    (pointer,) = [f for f in fake.files_in(settings.gdrive_folder_id) if f.name == "champion.json"]
    assert json.loads(pointer.content) == json.loads((settings.results_dir / "champion.json").read_text())
    second = open_run(settings, "second")
    run_all(second, settings)
    (replaced,) = [f for f in fake.files_in(settings.gdrive_folder_id) if f.name == "champion.json"]
    assert replaced.id == pointer.id and json.loads(replaced.content)["run_id"] == "second"
    assert replaced.content == (settings.results_dir / "champion.json").read_bytes()
    execute_step(STEP["promote"], second, settings)  # a retried promotion: the same file, the same bytes
    assert [f.id for f in fake.files_in(settings.gdrive_folder_id) if f.name == "champion.json"] == [pointer.id]


def drive_pointer(fake: FakeDrive, settings: Settings) -> FakeFile:
    """The one champion.json in the Drive folder."""
    (pointer,) = [f for f in fake.files_in(settings.gdrive_folder_id) if f.name == "champion.json"]
    return pointer


def interrupted_promotion(fake: FakeDrive, settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """Run "first" is the champion on both sides; run "second" chose itself, and its promote failed: after Drive's
    pointer was replaced ("local write": champion.json could not be written), or before ("drive write")."""
    run_all(open_run(settings, "first"), settings)
    second = open_run(settings, "second")
    for step in STEPS[:-1]:
        (execute_for_candidates if step.per_candidate else execute_step)(step, second, settings)
    if failure == "drive write":
        fake.fail_next("upload.start", Fault(403, "forbidden"))
        expected = "uploading champion.json: Drive answered HTTP 403"
    else:
        def read_only(results_dir: Path, pointer: dict[str, Any]) -> Path:
            raise PermissionError(13, "Permission denied", str(results_dir / "champion.json"))

        monkeypatch.setattr(champion, "write_pointer", read_only)
        expected = "writing champion.json or history.csv in .* failed .* after every remote pointer was written; .*next"
    with pytest.raises(PublishError, match=expected) as error:
        execute_step(STEP["promote"], second, settings)
    monkeypatch.undo()
    record_failed_run(second, settings, "promote", f"PublishError: {error.value}")  # as failure_end does
    local = json.loads((settings.results_dir / "champion.json").read_text())["run_id"]
    remote = json.loads(drive_pointer(fake, settings).content)["run_id"]
    assert (local, remote) == ("first", "first" if failure == "drive write" else "second")
    assert champion.read_history(settings.results_dir)[-1]["reason"].startswith("failed at promote: PublishError")


FAILURES = ["local write", "drive write"]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_retried_promotion_finishes_the_interrupted_one_on_both_sides(fake, drive_settings, sleeps, monkeypatch,
                                                                        caplog, failure):
    settings = drive_settings()
    interrupted_promotion(fake, settings, monkeypatch, failure)

    summary = execute_step(STEP["promote"], open_run(settings, "second"), settings)

    local = (settings.results_dir / "champion.json").read_bytes()
    assert json.loads(local)["run_id"] == "second" and drive_pointer(fake, settings).content == local
    assert summary["promoted"] is True
    record = read_json(open_run(settings, "second").file("promote.json"))
    assert record["repaired"].startswith("finished the interrupted promotion of run second: the local champion.json "
                                         "named 2") and "_first; it and every remote pointer now name 2" in (
        record["repaired"])
    assert "finished the interrupted promotion of run second" in caplog.text
    row = champion.read_history(settings.results_dir)[-1]
    assert (row["run_id"], row["promoted"]) == ("second", "true")
    assert row["reason"].endswith("; finished after an interruption by run second's promote")
    uploads = len(fake.requests_for("upload.start"))
    execute_step(STEP["promote"], open_run(settings, "second"), settings)  # once more: nothing new anywhere
    assert len(fake.requests_for("upload.start")) == uploads
    assert (settings.results_dir / "champion.json").read_bytes() == local == drive_pointer(fake, settings).content
    assert not (settings.results_dir / ".champion.pending.json").exists()


def test_the_next_run_finishes_an_interrupted_promotion_before_deciding(fake, drive_settings, sleeps, monkeypatch):
    settings = drive_settings()
    interrupted_promotion(fake, settings, monkeypatch, "local write")

    run_all(open_run(settings, "third"), settings)

    local = (settings.results_dir / "champion.json").read_bytes()
    assert drive_pointer(fake, settings).content == local
    history = {row["run_id"]: row for row in champion.read_history(settings.results_dir)}
    assert history["second"]["promoted"] == "true" and history["second"]["reason"].endswith(
        "; finished after an interruption by run third's promote")
    third = read_json(open_run(settings, "third").file("promote.json"))
    assert third["repaired"].startswith("finished the interrupted promotion of run second")
    assert third["compared_with"] == history["second"]["name"] and third["compared_again"] is True
    assert json.loads(local)["run_id"] == ("third" if third["promoted"] else "second")
