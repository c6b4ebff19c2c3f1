"""Where `upload` publishes a run: the local results folder always, Google Drive when configured."""

from __future__ import annotations

from etl.publishers.base import Publisher, PublishResult, RunBundle
from etl.publishers.local import LocalPublisher
from utils.config import Settings
from utils.errors import ConfigError

__all__ = ["LocalPublisher", "PublishResult", "Publisher", "RunBundle", "remote_publishers"]


def remote_publishers(settings: Settings) -> list[Publisher]:
    """The publishers besides the local one that STORAGE_BACKEND asks for.

    `gdrive` always uses Drive (a missing setting is an error); `auto` uses Drive only when GDRIVE_FOLDER_ID is
    set and the credentials file exists; `local` uses none.
    """
    wants_drive = settings.storage_backend == "gdrive" or (
        settings.storage_backend == "auto" and bool(settings.gdrive_folder_id)
        and settings.google_credentials.is_file())
    if not wants_drive:
        return []
    if not settings.gdrive_folder_id:
        raise ConfigError("STORAGE_BACKEND=gdrive needs GDRIVE_FOLDER_ID: the id of the Drive folder "
                          "(the last part of its URL) that receives one subfolder per run")
    from etl.publishers.gdrive import GDrivePublisher  # imported only when used: the Google client is heavy

    return [GDrivePublisher(settings)]
