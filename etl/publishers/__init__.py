"""Where `upload` publishes a run: the local results folder always, Google Drive when configured."""

from __future__ import annotations

from etl.publishers.base import Publisher, PublishResult, RunBundle
from etl.publishers.local import LocalPublisher
from utils.config import Settings

__all__ = ["LocalPublisher", "PublishResult", "Publisher", "RunBundle", "remote_publishers"]


def remote_publishers(settings: Settings) -> list[Publisher]:
    """The publishers besides the local one that STORAGE_BACKEND asks for.

    `gdrive` always uses Drive (GDrivePublisher reports a missing setting); `auto` uses Drive only when
    GDRIVE_FOLDER_ID is set and the credentials file exists; `local` uses none.
    """
    wants_drive = settings.storage_backend == "gdrive" or (
        settings.storage_backend == "auto" and bool(settings.gdrive_folder_id)
        and settings.google_credentials.is_file())
    if not wants_drive:
        return []
    from etl.publishers.gdrive import GDrivePublisher  # imported only when used: the Google client is heavy

    return [GDrivePublisher(settings)]
