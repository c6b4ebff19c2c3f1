"""Where `upload` publishes a run: the local results folder always, Google Drive when configured."""

from __future__ import annotations

import logging

from etl.publishers.base import Publisher, PublishResult, RunBundle
from etl.publishers.local import LocalPublisher
from utils.config import Settings
from utils.logger import get_logger

__all__ = ["LocalPublisher", "PublishResult", "Publisher", "RunBundle", "remote_publishers"]
log = get_logger("publish")


def drive_choice(settings: Settings) -> tuple[bool, int, str]:
    """Whether STORAGE_BACKEND asks for Drive, how loudly to log that, and why, in words for the log.

    `gdrive` always uses Drive (GDrivePublisher reports a missing setting); `auto` uses Drive only when
    GDRIVE_FOLDER_ID is set and the credentials file exists, and warns when only the folder is set; `local` uses
    none.
    """
    backend = settings.storage_backend
    if backend != "auto":
        return backend == "gdrive", logging.INFO, f"STORAGE_BACKEND={backend}"
    if not settings.gdrive_folder_id.strip():
        return False, logging.INFO, "STORAGE_BACKEND=auto and GDRIVE_FOLDER_ID is not set"
    credentials = settings.google_credentials
    if not credentials.is_file():
        return False, logging.WARNING, (
            f"STORAGE_BACKEND=auto and GDRIVE_FOLDER_ID is set, but the credentials file "
            f"GOOGLE_APPLICATION_CREDENTIALS={credentials} does not exist: put the key or token there "
            "(docs/google-drive.md), or set STORAGE_BACKEND=gdrive to make this an error")
    return True, logging.INFO, (f"STORAGE_BACKEND=auto, GDRIVE_FOLDER_ID is set and the credentials file "
                                f"{credentials} exists")


def remote_publishers(settings: Settings) -> list[Publisher]:
    """The publishers besides the local one that STORAGE_BACKEND asks for; the choice and its reason are logged."""
    wants_drive, level, reason = drive_choice(settings)
    log.log(level, "Drive %s: %s", "used" if wants_drive else "skipped", reason)
    if not wants_drive:
        return []
    from etl.publishers.gdrive import GDrivePublisher  # imported only when used: the Google client is heavy

    return [GDrivePublisher(settings)]
