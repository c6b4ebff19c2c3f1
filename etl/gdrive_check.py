"""`make gdrive-check`: sign in to Google Drive and check GDRIVE_FOLDER_ID, without uploading anything.

Prints the account, the folder and whether it is on a Shared Drive; exits 1 with the reason on any problem.
"""

from __future__ import annotations

import argparse
import sys

from etl.publishers.gdrive.client import QUOTA_WAYS_OUT, DriveClient, FolderInfo, connect, folder_url
from etl.publishers.gdrive.credentials import identity_from_settings
from etl.publishers.gdrive.publisher import require_folder_id
from utils.config import Settings, load_settings
from utils.errors import PipelineError, PublishError
from utils.logger import configure_cli_logging


def check(settings: Settings, allow_my_drive: bool = False) -> list[str]:
    """The report lines for a usable set-up; PipelineError saying what to fix otherwise."""
    folder_id = require_folder_id(settings)
    client = connect(identity_from_settings(settings), settings.gdrive_api_root)
    folder = client.inspect_folder(folder_id)
    if client.identity.kind == "service_account" and not folder.drive_id and not allow_my_drive:
        raise PublishError(f"the folder {folder.name!r} ({folder.id}) is in a 'My Drive', and {client.who()} is a "
                           f"service account: {QUOTA_WAYS_OUT}. (A service account made before April 2025 may still "
                           "own storage: then run with --allow-my-drive.)")
    return report(settings, client, folder)


def report(settings: Settings, client: DriveClient, folder: FolderInfo) -> list[str]:
    """What a successful check found, one line per fact."""
    location = f"on Shared Drive {folder.drive_id}" if folder.drive_id else "in a 'My Drive'"
    return [f"credentials: {settings.google_credentials} ({client.identity.kind}: {client.identity.who})",
            f"account:     {client.who()}",
            f"folder:      {folder.name!r} ({folder.id}) {location}",
            "writable:    yes (capabilities.canAddChildren)",
            f"gdrive-check: OK - each run will get a subfolder in {folder_url(folder.id)}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.gdrive_check", description=__doc__)
    parser.add_argument("--allow-my-drive", action="store_true",
                        help="accept a service account writing into a 'My Drive' folder (accounts made before "
                             "April 2025 may own storage)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_cli_logging(settings.log_level)
        lines = check(settings, args.allow_my_drive)
    except PipelineError as exc:
        print(f"gdrive-check: FAILED: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
