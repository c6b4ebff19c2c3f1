"""GDrivePublisher: one subfolder per run inside GDRIVE_FOLDER_ID, every file checked by md5.

The run's folder is named `<YYYYMMDD_HHMMSS>_<run id>` like the local one, so two runs with the same start
second never share a name. A repeated publish of the same run finds its folder and files again (same name and
the same `pipeline_run_id` app property), skips files whose md5 already matches and replaces the others, so it
never makes duplicates. A publish that fails while the run's folder holds nothing moves that folder to the
trash, so Drive shows no empty run folder; the next attempt creates a fresh one.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from etl.publishers.base import PublishResult, RunBundle
from etl.publishers.gdrive.client import (
    CALL_ERRORS,
    DEFAULT_RETRIES,
    FOLDER_MIME,
    DriveClient,
    FolderInfo,
    backoff_delays,
    children_query,
    connect,
    folder_url,
)
from etl.publishers.gdrive.compat import Sleep
from etl.publishers.gdrive.credentials import identity_from_settings
from utils.config import Settings
from utils.errors import ConfigError, PublishError
from utils.files import file_digest, verify_checksum
from utils.logger import get_logger

RUN_ID_PROPERTY = "pipeline_run_id"
APP_PROPERTY_MAX_BYTES = 124  # Drive's limit for one app property, key and value together
UPLOAD_GRANULARITY = 256 * 1024  # resumable chunks other than the last must be multiples of this
DEFAULT_CHUNK_SIZE = 32 * UPLOAD_GRANULARITY  # 8 MiB
log = get_logger("gdrive")


def run_property(run_id: str) -> dict[str, str]:
    """The app property marking a run's folder and files; a run id too long for Drive is replaced by its hash."""
    value = run_id
    if len((RUN_ID_PROPERTY + value).encode()) > APP_PROPERTY_MAX_BYTES:
        value = "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()
    return {RUN_ID_PROPERTY: value}


def run_items_query(parent_id: str, run_id: str, name: str | None = None, mime_type: str | None = None) -> str:
    """The files.list query for a run's items directly inside `parent_id`."""
    return children_query(parent_id, name, run_property(run_id), mime_type)


def require_folder_id(settings: Settings) -> str:
    """GDRIVE_FOLDER_ID, or ConfigError when it is not set."""
    folder_id = settings.gdrive_folder_id.strip()
    if not folder_id:
        raise ConfigError("GDRIVE_FOLDER_ID is not set: give the id of the Drive folder that receives one subfolder "
                          "per run (the last part of its URL .../folders/<id>)")
    return folder_id


class GDrivePublisher:
    """Uploads a run into `<GDRIVE_FOLDER_ID>/<stamp>_<run id>/`, idempotently, checking every file's md5."""

    name = "gdrive"

    def __init__(self, settings: Settings, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 num_retries: int = DEFAULT_RETRIES, sleep: Sleep = time.sleep) -> None:
        """Check the settings and read the credentials now, so that their errors come before any copying."""
        if chunk_size <= 0 or chunk_size % UPLOAD_GRANULARITY:
            raise ValueError(f"chunk_size={chunk_size} must be a positive multiple of {UPLOAD_GRANULARITY} bytes")
        self.settings = settings
        self.folder_id = require_folder_id(settings)
        self.identity = identity_from_settings(settings)
        self.chunk_size = chunk_size
        self.num_retries = num_retries
        self.sleep = sleep

    def publish(self, bundle: RunBundle) -> PublishResult:
        """Upload the bundle's files into the run's folder, creating it if needed, and verify each md5."""
        local_md5 = {path.name: self._checked_md5(path, bundle) for path in bundle.files}
        client = connect(self.identity, self.settings.gdrive_api_root, self.num_retries, self.sleep)
        parent = client.inspect_folder(self.folder_id)
        run_folder = self._run_folder(client, parent, bundle)
        try:
            existing = {item["name"]: item for item in client.list_items(
                run_items_query(run_folder, bundle.run_id), parent,
                f"listing the files of run folder {bundle.name}")}
            outcome = {path.name: self._put(client, path, local_md5[path.name], existing.get(path.name),
                                            run_folder, bundle.run_id) for path in bundle.files}
        except Exception:
            self._trash_if_empty(client, parent, run_folder, bundle.name)
            raise
        log.info("run %s published to Drive folder %s/%s (%s) as %s: %s", bundle.run_id, parent.name,
                 bundle.name, folder_url(run_folder), client.who(), outcome)
        return PublishResult(self.name, folder_url(run_folder), outcome)

    def publish_pointer(self, path: Path) -> str:
        """Put `path` directly in GDRIVE_FOLDER_ID under its name, as the new content of the file already there."""
        md5 = file_digest(path, "md5")
        client = connect(self.identity, self.settings.gdrive_api_root, self.num_retries, self.sleep)
        parent = client.inspect_folder(self.folder_id)
        existing = client.list_items(children_query(parent.id, path.name), parent,
                                     f"looking for {path.name} in the Drive folder {parent.name}")
        item = existing[0] if existing else None
        action = f"uploading {path.name}"
        if item is None or item.get("md5Checksum") != md5:
            item = (client.upload(path, action, self.chunk_size, file_id=item["id"]) if item else
                    client.upload(path, action, self.chunk_size, parent_id=parent.id))
        if item.get("md5Checksum") != md5:
            raise PublishError(f"{path.name} arrived in Drive (file id {item.get('id')}) with md5 "
                               f"{item.get('md5Checksum')}, not {md5}: run the promote step again")
        return f"{folder_url(parent.id)} ({path.name}, file id {item['id']})"

    @staticmethod
    def _trash_if_empty(client: DriveClient, parent: FolderInfo, folder_id: str, name: str) -> None:
        """After a failed publish, trash the run's folder if nothing is in it; a failure to do so is logged.

        Any empty run folder goes, not only one made by this attempt: under the run's lock only this run writes
        there, so an empty one is also what a killed earlier attempt left. A folder holding anything (a file
        uploaded by an earlier attempt, or put there by a person) stays for the next attempt to complete.
        """
        try:
            if client.list_items(children_query(folder_id), parent, f"looking into run folder {name}"):
                return
            client.trash(folder_id, f"moving the empty run folder {name} to the trash")
        except PublishError as exc:
            log.warning("the failed upload left the run folder %s (%s) in Drive, maybe empty, and it could not be "
                        "removed (%s): delete it in Drive if it stays empty", name, folder_url(folder_id), exc)
            return
        log.info("moved the empty run folder %s (%s) to the Drive trash after the failed upload", name,
                 folder_url(folder_id))

    @staticmethod
    def _checked_md5(path: Path, bundle: RunBundle) -> str:
        """The file's md5, after checking it exists and still has the sha256 the run recorded."""
        if not path.is_file():
            raise PublishError(f"cannot publish run {bundle.run_id} to Drive: {path} is missing")
        if path.name in bundle.checksums:
            verify_checksum(path, bundle.checksums[path.name])
        return file_digest(path, "md5")  # what Drive reports as md5Checksum

    def _run_folder(self, client: DriveClient, parent: FolderInfo, bundle: RunBundle) -> str:
        """The id of the run's folder: found again by name and run id, else created.

        A folder create that fails transiently may still have happened, so each retry looks again first.
        """
        name = bundle.name
        query = run_items_query(parent.id, bundle.run_id, name=name, mime_type=FOLDER_MIME)
        delays = backoff_delays(self.num_retries)
        while True:
            found = client.list_items(query, parent, f"looking for run folder {name}")
            if found:
                return found[0]["id"]
            try:
                return client.create_folder(name, parent.id, run_property(bundle.run_id))["id"]
            except CALL_ERRORS as exc:
                delay = next(delays, None)
                if delay is None:
                    raise client.explain(exc, f"creating run folder {name}") from None
                log.warning("creating run folder %s: %r; looking again in %.1f s", name, exc, delay)
                self.sleep(delay)

    def _put(self, client: DriveClient, path: Path, md5: str, existing: dict[str, Any] | None, folder_id: str,
             run_id: str) -> str:
        """Upload one file unless Drive already has it; "uploaded", "replaced" or "skipped"."""
        if existing is not None and existing.get("md5Checksum") == md5:
            log.info("%s: already in Drive with md5 %s, skipped", path.name, md5)
            return "skipped"
        action = f"uploading {path.name} ({path.stat().st_size} bytes)"
        outcome = "replaced" if existing is not None else "uploaded"
        if existing is not None:
            item = client.upload(path, action, self.chunk_size, file_id=existing["id"])
        else:
            item = client.upload(path, action, self.chunk_size, parent_id=folder_id, properties=run_property(run_id))
        if item.get("md5Checksum") != md5:
            raise PublishError(f"{path.name} arrived in Drive (file id {item.get('id')}) with md5 "
                               f"{item.get('md5Checksum')}, but the local file has md5 {md5}: the upload was "
                               "corrupted on the way; run the upload step again to replace it")
        log.info("%s: %s, md5 %s verified", path.name, outcome, md5)
        return outcome
