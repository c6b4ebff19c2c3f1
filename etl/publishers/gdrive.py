"""Publish a run to Google Drive: one subfolder per run inside GDRIVE_FOLDER_ID, every file checked by md5.

The credentials file (GOOGLE_APPLICATION_CREDENTIALS) is one of three kinds, told apart by its JSON "type":
- "service_account": a service-account key. Service accounts created since April 2025 own no Drive storage, so
  GDRIVE_FOLDER_ID must be on a Shared Drive where the account is a member (Content manager);
- "service_account" with GDRIVE_IMPERSONATE=user@domain: domain-wide delegation (Google Workspace); the files
  belong to that user;
- "authorized_user": an OAuth refresh token of a person's account (the way for personal Gmail accounts).
docs/google-drive.md walks through setting up each one.

The run's folder is named `<YYYYMMDD_HHMMSS>_<run id>` like the local one, so two runs with the same start
second never share a name. A repeated publish of the same run finds its folder and files again (same name and
the same `pipeline_run_id` app property), skips files whose md5 already matches and replaces the others, so it
never makes duplicates. A publish that fails while the run's folder holds nothing moves that folder to the
trash, so Drive shows no empty run folder; the next attempt creates a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaFileUpload, build_http

from etl.publishers.base import PublishResult, RunBundle
from utils.config import Settings
from utils.errors import ConfigError, PublishError
from utils.files import file_digest, verify_checksum
from utils.logger import get_logger

# The full `drive` scope, not `drive.file`: drive.file only reaches files this app created, or that a person
# opened with it through the Google Picker. GDRIVE_FOLDER_ID is a folder a person made in the Drive UI and
# shared with the account, so under drive.file files.get on it answers 404 notFound. The pipeline still only
# writes inside that folder; domain-wide delegation must authorize this same scope in the Admin console.
SCOPES = ("https://www.googleapis.com/auth/drive",)
FOLDER_MIME = "application/vnd.google-apps.folder"
RUN_ID_PROPERTY = "pipeline_run_id"
APP_PROPERTY_MAX_BYTES = 124  # Drive's limit for one app property, key and value together
UPLOAD_GRANULARITY = 256 * 1024  # resumable chunks other than the last must be multiples of this
DEFAULT_CHUNK_SIZE = 32 * UPLOAD_GRANULARITY  # 8 MiB
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
Sleep = Callable[[float], None]


class _ServiceAccountCredentials(service_account.Credentials):
    """A service-account credential without google-auth's Regional Access Boundary lookup.

    google-auth >= 2.55 starts a background thread after each token refresh that asks
    iamcredentials.googleapis.com for the account's allowed locations (up to 6 attempts, failing open). There is
    no public switch (googleapis/google-cloud-python#17653); this is the hook google-auth's own user credentials
    use to opt out. The pipeline only calls the global Drive endpoint, so the lookup would be an unrelated extra
    request to Google from every task, and it would leave 127.0.0.1 when GDRIVE_API_ROOT points at a test fake.
    """

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        return False


class _ChunkBytesUpload(MediaFileUpload):
    """A resumable file upload whose chunks are sent as bytes.

    As a stream, each chunk goes out as a slice of the open file; when googleapiclient retries a chunk after a
    5xx or 429, that slice has already been read to its end, so the retry announces the chunk's length and sends
    nothing (the request then hangs until a timeout). Bytes read with `getbytes` are sent again whole.
    """

    def has_stream(self) -> bool:
        return False


@dataclass(frozen=True)
class DriveIdentity:
    """Credentials ready for Drive, and words for error messages: who they act as and which file they came from."""

    credentials: Credentials
    kind: str
    who: str
    source: Path


def read_credentials_info(path: Path) -> dict[str, Any]:
    """The JSON of the credentials file, or ConfigError saying what is wrong with it."""
    if not path.is_file():
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} does not exist: put the service-account key or "
                          "the OAuth token file there (docs/google-drive.md), or set STORAGE_BACKEND=local")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} is not a JSON credentials file: {exc}") from None
    if not isinstance(info, dict):
        raise ConfigError(f"GOOGLE_APPLICATION_CREDENTIALS={path} holds JSON but not a credentials object")
    return info


def credentials_kind(info: dict[str, Any], path: Path) -> str:
    """"service_account" or "authorized_user"; a token saved by google-auth-oauthlib has no "type" of its own."""
    kind = info.get("type") or ("authorized_user" if "refresh_token" in info else "")
    if kind in ("service_account", "authorized_user"):
        return kind
    if "installed" in info or "web" in info:
        raise ConfigError(f"{path} is an OAuth client secret, not a token: use it once to create an "
                          "'authorized_user' token file (docs/google-drive.md, 'OAuth user token')")
    raise ConfigError(f"{path} has credentials type {kind or '(none)'!r}; expected 'service_account' (a key) or "
                      "'authorized_user' (an OAuth token)")


def load_identity(path: Path, impersonate: str = "") -> DriveIdentity:
    """Credentials for Drive from the file at `path`, acting as `impersonate` when set (domain-wide delegation)."""
    info = read_credentials_info(path)
    kind = credentials_kind(info, path)
    try:
        if kind == "service_account":
            credentials = _ServiceAccountCredentials.from_service_account_info(info, scopes=SCOPES)
            if not impersonate:
                return DriveIdentity(credentials, kind, f"service account {credentials.service_account_email}", path)
            return DriveIdentity(credentials.with_subject(impersonate), "delegated",
                                 f"{impersonate} (through service account {credentials.service_account_email})",
                                 path)
        if impersonate:
            raise ConfigError(f"GDRIVE_IMPERSONATE={impersonate} needs a service-account key, but {path} is an "
                              "OAuth user token: unset GDRIVE_IMPERSONATE or use a key with domain-wide delegation")
        credentials = user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
        if info.get("token_uri"):
            # google-auth always uses Google's token endpoint for user tokens; the file's own token_uri wins here,
            # as it does for service-account keys (tests point it at a fake).
            credentials = credentials.with_token_uri(info["token_uri"])
        who = f"the Google account of the OAuth token {path.name}" + (f" ({info['account']})"
                                                                       if info.get("account") else "")
        return DriveIdentity(credentials, kind, who, path)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a usable {kind} file: {exc}") from None


def discovery_document(api_root: str) -> dict[str, Any]:
    """The Drive v3 discovery document shipped with google-api-python-client, with every root URL set to `api_root`.

    `client_options.api_endpoint` would not do: googleapiclient builds upload URLs as rootUrl + "upload/" +
    servicePath and only swaps their host for the endpoint's, keeping https.
    """
    if not api_root.startswith(("https://", "http://")):
        raise ConfigError(f"GDRIVE_API_ROOT={api_root!r} is invalid: expected an http(s):// URL such as "
                          "https://www.googleapis.com/")
    document = json.loads(get_static_doc("drive", "v3"))
    root = api_root if api_root.endswith("/") else api_root + "/"
    document.update(rootUrl=root, mtlsRootUrl=root, baseUrl=root + document["servicePath"])
    return document


def _request_builder(sleep: Sleep) -> Callable[..., HttpRequest]:
    """Requests whose retry backoff waits with `sleep` (googleapiclient keeps that function in `_sleep`)."""

    def build(*args: Any, **kwargs: Any) -> HttpRequest:
        request = HttpRequest(*args, **kwargs)
        request._sleep = sleep
        return request

    return build


def build_service(credentials: Credentials, api_root: str, sleep: Sleep) -> Resource:
    """A Drive v3 client sending its requests to `api_root`."""
    # build_http() stops httplib2 from following 308, the status of an unfinished resumable upload.
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=build_http())
    return build_from_document(discovery_document(api_root), http=http, requestBuilder=_request_builder(sleep))


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
    """A Drive call that failed for good; `status` lets callers explain particular cases."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FolderInfo:
    """The GDRIVE_FOLDER_ID folder as Drive describes it."""

    id: str
    name: str
    drive_id: str | None


def folder_url(folder_id: str) -> str:
    return f"https://drive.google.com/drive/folders/{folder_id}"


def quote(value: str) -> str:
    """A string literal of Drive's query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_property(run_id: str) -> dict[str, str]:
    """The app property marking a run's folder and files; a run id too long for Drive is replaced by its hash."""
    value = run_id
    if len((RUN_ID_PROPERTY + value).encode()) > APP_PROPERTY_MAX_BYTES:
        value = "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()
    return {RUN_ID_PROPERTY: value}


def run_items_query(parent_id: str, run_id: str, name: str | None = None, mime_type: str | None = None) -> str:
    """The files.list query for a run's items directly inside `parent_id`."""
    value = run_property(run_id)[RUN_ID_PROPERTY]
    clauses = [f"{quote(parent_id)} in parents", "trashed = false",
               f"appProperties has {{ key={quote(RUN_ID_PROPERTY)} and value={quote(value)} }}"]
    if name is not None:
        clauses.append(f"name = {quote(name)}")
    if mime_type is not None:
        clauses.append(f"mimeType = {quote(mime_type)}")
    return " and ".join(clauses)


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
            return PublishError(f"{action}: Google refused to sign in {self.identity.who} with "
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
            retried = f" (still failing after {self.num_retries} retries)" if is_transient(exc) else ""
            return DriveApiError(f"{action}: Drive answered HTTP {exc.status_code} {reason}: {exc.reason}{retried}",
                                 exc.status_code)
        return PublishError(f"{action}: the Drive API at {self.api_root} could not be reached "
                            f"(after {self.num_retries} retries): {exc!r}")

    def _sign_in_hint(self, detail: str) -> str:
        if self.identity.kind == "authorized_user":
            return ("The token was revoked or has expired (tokens of OAuth apps in 'Testing' status last 7 days): "
                    "create a new one as docs/google-drive.md shows")
        if self.identity.kind == "delegated" and "unauthorized_client" in detail:
            return (f"Domain-wide delegation is not set up: in the Admin console authorize the service account's "
                    f"client id (client_id in {self.identity.source.name}) for the scope {SCOPES[0]}")
        return ("Check in the Google Cloud console (IAM > Service accounts) that the account is enabled and that "
                "this key still exists; if it was deleted, create a new JSON key")

    def who(self) -> str:
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
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        media = _ChunkBytesUpload(str(path), mimetype=mime_type, chunksize=chunk_size, resumable=True)
        files = self.service.files()
        if file_id is not None:
            request = files.update(fileId=file_id, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True)
        else:
            body = {"name": path.name, "parents": [parent_id], "appProperties": properties or {}}
            request = files.create(body=body, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True)
        delays = backoff_delays(self.num_retries)
        while True:
            try:
                _, item = request.next_chunk(num_retries=self.num_retries)
            except CALL_ERRORS as exc:
                delay = next(delays, None) if is_transient(exc) else None
                if delay is None:
                    raise self.explain(exc, action) from None
                log.warning("%s: %r; resuming in %.1f s", action, exc, delay)
                self.sleep(delay)
                continue
            if item is not None:
                return item


def identity_from_settings(settings: Settings) -> DriveIdentity:
    """The credentials GOOGLE_APPLICATION_CREDENTIALS and GDRIVE_IMPERSONATE describe (read locally, no request)."""
    return load_identity(settings.google_credentials, settings.gdrive_impersonate.strip())


def connect(identity: DriveIdentity, api_root: str, num_retries: int = DEFAULT_RETRIES,
            sleep: Sleep = time.sleep) -> DriveClient:
    """Build the client and sign in (about.get): a bad key or token fails here, before anything is uploaded."""
    client = DriveClient(build_service(identity.credentials, api_root, sleep), identity, api_root, num_retries, sleep)
    client.sign_in()
    return client


def require_folder_id(settings: Settings) -> str:
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
        local_md5 = {path.name: self._checked_md5(path, bundle) for path in bundle.files}
        client = connect(self.identity, self.settings.gdrive_api_root, self.num_retries, self.sleep)
        parent = client.inspect_folder(self.folder_id)
        run_folder = self._run_folder(client, parent, bundle)
        try:
            existing = {item["name"]: item for item in client.list_items(
                run_items_query(run_folder, bundle.run_id), parent,
                f"listing the files of run folder {bundle.folder_name}")}
            outcome = {path.name: self._put(client, path, local_md5[path.name], existing.get(path.name),
                                            run_folder, bundle.run_id) for path in bundle.files}
        except Exception:
            self._trash_if_empty(client, parent, run_folder, bundle.folder_name)
            raise
        log.info("run %s published to Drive folder %s/%s (%s) as %s: %s", bundle.run_id, parent.name,
                 bundle.folder_name, folder_url(run_folder), client.who(), outcome)
        return PublishResult(self.name, folder_url(run_folder), outcome)

    @staticmethod
    def _trash_if_empty(client: DriveClient, parent: FolderInfo, folder_id: str, name: str) -> None:
        """After a failed publish, trash the run's folder if nothing is in it; a failure to do so is logged.

        Any empty run folder goes, not only one made by this attempt: under the run's lock only this run writes
        there, so an empty one is also what a killed earlier attempt left. A folder holding anything (a file
        uploaded by an earlier attempt, or put there by a person) stays for the next attempt to complete.
        """
        try:
            if client.list_items(f"{quote(folder_id)} in parents and trashed = false", parent,
                                 f"looking into run folder {name}"):
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
        name = bundle.folder_name
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
