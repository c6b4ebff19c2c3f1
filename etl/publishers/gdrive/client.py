"""The Drive calls the pipeline makes (sign in, inspect, list, create, trash, upload), retried and explained."""

from __future__ import annotations

import json
import mimetypes
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from etl.publishers.gdrive.compat import ChunkBytesUpload, Sleep
from etl.publishers.gdrive.credentials import SCOPES, DriveIdentity
from etl.publishers.gdrive.service import build_service
from utils.config import scrubbed, shown
from utils.errors import ConfigError, PublishError
from utils.files import file_digest
from utils.logger import get_logger

FOLDER_MIME = "application/vnd.google-apps.folder"
DEFAULT_RETRIES = 5
RATE_LIMIT_REASONS = ("rateLimitExceeded", "userRateLimitExceeded")
FILE_FIELDS = "id,name,md5Checksum,size"
TRANSPORT_ERRORS = (OSError, httplib2.HttpLib2Error, auth_exceptions.TransportError)
CALL_ERRORS = (HttpError, auth_exceptions.GoogleAuthError, *TRANSPORT_ERRORS)  # what one Drive call can raise
QUOTA_WAYS_OUT = (
    "service accounts own no Drive storage (new ones since April 2025), so they cannot upload into a folder of "
    "a personal 'My Drive'. Ways out: (1) use a folder on a Shared Drive and add the service account to that "
    "Shared Drive as Content manager; (2) use an OAuth user token of the folder's owner instead of the key "
    "(GOOGLE_APPLICATION_CREDENTIALS pointing at an 'authorized_user' file); (3) on Google Workspace, set "
    "GDRIVE_IMPERSONATE=user@your-domain with domain-wide delegation. See docs/google-drive.md")
log = get_logger("gdrive")


def error_reason(exc: HttpError) -> str:
    """The machine-readable reason of a Drive error ("storageQuotaExceeded", "notFound"...), or ""."""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        details = error.get("errors") or error.get("details") or []
        return next((d["reason"] for d in details if isinstance(d, dict) and d.get("reason")), error.get("status", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def is_transient(exc: Exception) -> bool:
    """Whether trying again may help: 5xx, 429, rate-limit 403s and connection failures."""
    if isinstance(exc, HttpError):
        status = exc.status_code
        return status >= 500 or status == 429 or (status == 403 and error_reason(exc) in RATE_LIMIT_REASONS)
    return isinstance(exc, TRANSPORT_ERRORS)


class DriveApiError(PublishError):
    """A Drive call that failed for good; `status` lets callers explain particular cases, `transient` says whether
    a later attempt (an Airflow retry) may succeed: not after a refused sign-in, a 4xx or a full quota."""

    def __init__(self, message: str, status: int = 0, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class FolderInfo:
    """The GDRIVE_FOLDER_ID folder as Drive describes it."""

    id: str
    name: str
    drive_id: str | None


def folder_url(folder_id: str) -> str:
    """The address of a Drive folder in the browser."""
    return f"https://drive.google.com/drive/folders/{folder_id}"


def quote(value: str) -> str:
    """A string literal of Drive's query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def children_query(parent_id: str, name: str | None = None, properties: dict[str, str] | None = None,
                   mime_type: str | None = None) -> str:
    """The files.list query for the items directly inside `parent_id`, not trashed, with this name, these app
    properties and this type when given."""
    clauses = [f"{quote(parent_id)} in parents", "trashed = false"]
    clauses += [f"appProperties has {{ key={quote(key)} and value={quote(value)} }}"
                for key, value in (properties or {}).items()]
    if name is not None:
        clauses.append(f"name = {quote(name)}")
    if mime_type is not None:
        clauses.append(f"mimeType = {quote(mime_type)}")
    return " and ".join(clauses)


def lost_session(exc: Exception, request: HttpRequest) -> bool:
    """Whether Drive no longer knows an upload session it had started (404): after a lost reply to the last
    chunk, the upload may have finished."""
    return isinstance(exc, HttpError) and exc.status_code == 404 and request.resumable_uri is not None


def backoff_delays(retries: int) -> Iterator[float]:
    """Randomized exponential delays (up to 1, 2, 4... s) like googleapiclient's, one per retry."""
    for attempt in range(retries):
        yield random.random() * 2 ** attempt


class DriveClient:
    """The Drive calls the pipeline makes, each retried on transient failures and failing with a clear message."""

    def __init__(self, service: Resource, identity: DriveIdentity, api_root: str, num_retries: int = DEFAULT_RETRIES,
                 sleep: Sleep = time.sleep) -> None:
        self.service = service
        self.identity = identity
        self.api_root = api_root
        self.num_retries = num_retries
        self.sleep = sleep
        self.account_email = ""

    def explain(self, exc: Exception, action: str) -> PublishError:
        """A PublishError for a failed call, saying what to do about the common causes."""
        if isinstance(exc, auth_exceptions.RefreshError):
            detail = (str(exc.args[0]) if exc.args else repr(exc)).rstrip(".")  # args[1] is the raw response
            return DriveApiError(f"{action}: Google refused to sign in {self.identity.who} with "
                                 f"{self.identity.source}: {detail}. {self._sign_in_hint(detail)}")
        if isinstance(exc, auth_exceptions.TransportError):
            return PublishError(f"{action}: Google's sign-in (token) endpoint could not be reached for "
                                f"{self.identity.who}: {exc}")
        if isinstance(exc, HttpError):
            reason = error_reason(exc)
            if reason == "storageQuotaExceeded":
                return DriveApiError(f"{action}: Drive refused the upload for {self.who()} (403 storageQuotaExceeded"
                                     f"): {QUOTA_WAYS_OUT}", exc.status_code)
            if exc.status_code == 401:
                return DriveApiError(f"{action}: Drive did not accept the credentials of {self.who()} from "
                                     f"{self.identity.source} (401 {exc.reason})", 401)
            transient = is_transient(exc)
            retried = f" (still failing after {self.num_retries} retries)" if transient else ""
            return DriveApiError(f"{action}: Drive answered HTTP {exc.status_code} {reason}: {exc.reason}{retried}",
                                 exc.status_code, transient)
        api = shown("GDRIVE_API_ROOT", self.api_root)
        detail = scrubbed(repr(exc), "GDRIVE_API_ROOT", self.api_root)
        return PublishError(f"{action}: the Drive API at {api} could not be reached (after {self.num_retries} "
                            f"retries): {detail}")

    def _sign_in_hint(self, detail: str) -> str:
        """What to do about a refused sign-in, for this kind of credentials."""
        if self.identity.kind == "authorized_user":
            return ("The token was revoked or has expired (tokens of OAuth apps in 'Testing' status last 7 days): "
                    "create a new one as docs/google-drive.md shows")
        if self.identity.kind == "delegated" and "unauthorized_client" in detail:
            return (f"Domain-wide delegation is not set up: in the Admin console authorize the service account's "
                    f"client id (client_id in {self.identity.source.name}) for the scope {SCOPES[0]}")
        return ("Check in the Google Cloud console (IAM > Service accounts) that the account is enabled and that "
                "this key still exists; if it was deleted, create a new JSON key")

    def who(self) -> str:
        """The account's email address once signed in, else the description of the credentials."""
        return self.account_email or self.identity.who

    def execute(self, request: HttpRequest, action: str) -> dict[str, Any]:
        """Run one call; googleapiclient retries 5xx, 429, rate-limit 403s and connection errors itself."""
        try:
            return request.execute(num_retries=self.num_retries)
        except CALL_ERRORS as exc:
            raise self.explain(exc, action) from None

    def sign_in(self) -> None:
        """Authenticate and learn the account's email address (about.get)."""
        about = self.execute(self.service.about().get(fields="user(emailAddress)"), "signing in to Google Drive")
        self.account_email = about["user"]["emailAddress"]

    def inspect_folder(self, folder_id: str) -> FolderInfo:
        """GDRIVE_FOLDER_ID as Drive sees it; an error when it is missing, not a folder, trashed or read-only."""
        request = self.service.files().get(fileId=folder_id, supportsAllDrives=True,
                                           fields="id,name,mimeType,driveId,trashed,capabilities(canAddChildren)")
        try:
            item = self.execute(request, f"looking up GDRIVE_FOLDER_ID={folder_id}")
        except DriveApiError as exc:
            if exc.status == 404:
                raise PublishError(
                    f"GDRIVE_FOLDER_ID={folder_id}: Drive has no folder with this id that {self.who()} can see. "
                    f"Check the id (the last part of the folder's URL .../folders/<id>), then share the folder with "
                    f"{self.who()} as Editor (on a Shared Drive: add it as a member, Content manager)") from None
            raise
        name = item.get("name", "")
        if item.get("mimeType") != FOLDER_MIME:
            raise ConfigError(f"GDRIVE_FOLDER_ID={folder_id} is {name!r}, a file of type {item.get('mimeType')}, not "
                              "a folder: use the id of a folder (the last part of its URL .../folders/<id>)")
        if item.get("trashed"):
            raise PublishError(f"GDRIVE_FOLDER_ID={folder_id} ({name!r}) is in the Drive trash: restore it or use "
                               "another folder")
        if not item.get("capabilities", {}).get("canAddChildren"):
            raise PublishError(f"{self.who()} can only view the folder {name!r} ({folder_id}): share it with that "
                               "account as Editor (on a Shared Drive: Content manager)")
        return FolderInfo(folder_id, name, item.get("driveId"))

    def list_items(self, query: str, folder: FolderInfo, action: str) -> list[dict[str, Any]]:
        """Every item matching `query`, page by page, searching the folder's Shared Drive when it is on one."""
        corpus = {"corpora": "drive", "driveId": folder.drive_id} if folder.drive_id else {}
        items: list[dict[str, Any]] = []
        page_token = None
        while True:
            request = self.service.files().list(q=query, fields=f"nextPageToken,files({FILE_FIELDS})", pageSize=1000,
                                                pageToken=page_token, supportsAllDrives=True,
                                                includeItemsFromAllDrives=True, **corpus)
            page = self.execute(request, action)
            items.extend(page.get("files", []))
            page_token = page.get("nextPageToken")
            if not page_token:
                return items

    def create_folder(self, name: str, parent_id: str, properties: dict[str, str]) -> dict[str, Any]:
        """Create a folder, once: the request is not retried, because a lost answer may hide a created folder."""
        body = {"name": name, "mimeType": FOLDER_MIME, "parents": [parent_id], "appProperties": properties}
        request = self.service.files().create(body=body, fields="id,name", supportsAllDrives=True)
        try:
            return request.execute(num_retries=0)
        except CALL_ERRORS as exc:
            if is_transient(exc):
                raise
            raise self.explain(exc, f"creating the folder {name!r}") from None

    def trash(self, file_id: str, action: str) -> None:
        """Move a file or folder to the trash (retried like any call: trashing twice is harmless)."""
        self.execute(self.service.files().update(fileId=file_id, body={"trashed": True}, fields="id",
                                                 supportsAllDrives=True), action)

    def upload(self, path: Path, action: str, chunk_size: int, *, file_id: str | None = None,
               parent_id: str | None = None, properties: dict[str, str] | None = None) -> dict[str, Any]:
        """Upload `path` as a new file in `parent_id`, or as the new content of `file_id`, in resumable chunks.

        A resumable upload creates the file only when its last chunk arrives, so retrying any of its requests is
        safe. googleapiclient retries each request on 5xx/429; a broken connection, or a chunk still failing
        after those retries, is resumed here: the next call asks Drive how much arrived and sends the rest.
        """
        request = self._upload_request(path, chunk_size, file_id, parent_id, properties)
        delays = backoff_delays(self.num_retries)
        while True:
            try:
                _, item = request.next_chunk(num_retries=self.num_retries)
            except CALL_ERRORS as exc:
                delay = next(delays, None) if is_transient(exc) else None
                if delay is None:
                    if not lost_session(exc, request):
                        raise self.explain(exc, action) from None
                    landed = self._landed(path, action, file_id, parent_id, properties)
                    if landed is None:
                        raise DriveApiError(f"{self.explain(exc, action)}; Drive no longer knows the upload session "
                                            f"and holds no {path.name} with the local file's md5 there: the upload "
                                            "did not finish; run the step again", 404, transient=True) from None
                    log.warning("%s: Drive answered %s to the upload session, but the file is there (file id %s, "
                                "md5 %s as the local file's): the reply to the last chunk was lost; not uploaded "
                                "again", action, exc.status_code, landed["id"], landed["md5Checksum"])
                    return landed
                log.warning("%s: %r; resuming in %.1f s", action, exc, delay)
                self.sleep(delay)
                continue
            if item is not None:
                return item

    def _landed(self, path: Path, action: str, file_id: str | None, parent_id: str | None,
                properties: dict[str, str] | None) -> dict[str, Any] | None:
        """The file an upload of `path` stored in Drive after all (the same md5), or None: for an update, the file
        `file_id` itself; for a new file, one of that name and those app properties in `parent_id`."""
        md5 = file_digest(path, "md5")
        looking = f"{action}: looking whether the upload finished"
        if parent_id is None:
            found = [self.execute(self.service.files().get(fileId=file_id, fields=FILE_FIELDS, supportsAllDrives=True),
                                  looking)]
        else:
            parent = self.execute(self.service.files().get(fileId=parent_id, fields="id,name,driveId",
                                                           supportsAllDrives=True), looking)
            found = self.list_items(children_query(parent_id, path.name, properties),
                                    FolderInfo(parent_id, parent.get("name", ""), parent.get("driveId")), looking)
        return next((item for item in found if item.get("md5Checksum") == md5), None)

    def _upload_request(self, path: Path, chunk_size: int, file_id: str | None, parent_id: str | None,
                        properties: dict[str, str] | None) -> HttpRequest:
        """The files.update (when `file_id` is given) or files.create request carrying `path` as resumable media."""
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        media = ChunkBytesUpload(str(path), mimetype=mime_type, chunksize=chunk_size, resumable=True)
        files = self.service.files()
        if file_id is not None:
            return files.update(fileId=file_id, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True)
        body = {"name": path.name, "parents": [parent_id], "appProperties": properties or {}}
        return files.create(body=body, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True)


def connect(identity: DriveIdentity, api_root: str, num_retries: int = DEFAULT_RETRIES,
            sleep: Sleep = time.sleep) -> DriveClient:
    """Build the client and sign in (about.get): a bad key or token fails here, before anything is uploaded."""
    client = DriveClient(build_service(identity.credentials, api_root, sleep), identity, api_root, num_retries, sleep)
    client.sign_in()
    return client
