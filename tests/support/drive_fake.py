"""A small Google Drive v3 served over HTTP on 127.0.0.1, for tests (a fixture, not product code).

It speaks the part of the API the pipeline uses, with Drive's own rules where they matter to the pipeline:
- the OAuth token endpoint: service-account JWT grants (RS256 signature checked against the key written by
  `write_service_account_key`, domain-wide delegation only for accounts allowed it) and refresh-token grants;
- about.get, files.get, files.list (a subset of the query language, `fields` masks, pagination), files.create
  for folders, files.update of metadata (only `trashed`), resumable uploads for files.create and files.update
  (session URI, chunks with Content-Range, 308 + Range, status queries), md5Checksum;
- Shared Drive rules: items on a Shared Drive are invisible without supportsAllDrives=true (and, for lists,
  includeItemsFromAllDrives=true); a service account (not impersonating anyone) owns no storage, so creating a
  file outside a Shared Drive answers 403 storageQuotaExceeded; the `drive.file` scope only reaches files the
  app created; a read-only folder answers 403 insufficientFilePermissions.

Every request is recorded (`requests`); `fail_next` queues faults (a status, a `Fault`, or DROP) for the next
requests of one operation, `corrupt_next_upload` damages the bytes of the next completed upload, and
`lose_reply_to_next_finished_upload` stores the next completed upload but closes the connection instead of
answering and forgets the session (it then answers 404, as Drive does for an unknown upload session).
Operations: token, about.get, files.get, files.list, files.create, files.update, upload.start, upload.chunk.
Multipart and simple uploads are not implemented (the pipeline only makes resumable ones): they answer 400.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.servers import serving

FOLDER_MIME = "application/vnd.google-apps.folder"
FULL_SCOPE = "https://www.googleapis.com/auth/drive"
FILE_SCOPE = "https://www.googleapis.com/auth/drive.file"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # what Google requires as a JWT grant's "aud"
UPLOAD_GRANULARITY = 256 * 1024
DROP = "drop"  # a fault that closes the connection without answering
DEFAULT_REASONS = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 429: "rateLimitExceeded",
                   500: "backendError", 502: "backendError", 503: "backendError"}


@dataclass(frozen=True)
class Fault:
    """An error answer; with `after_commit` the request takes effect first (a response lost on the way back)."""

    status: int
    reason: str = ""
    after_commit: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it, and the status it answered (0 = connection dropped)."""

    operation: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_size: int
    status: int


@dataclass
class FakeFile:
    """A file or folder in the fake Drive."""

    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None = None
    content: bytes | None = None
    app_properties: dict[str, str] = field(default_factory=dict)
    created_by_app: bool = False
    writable: bool = True
    trashed: bool = False

    @property
    def md5(self) -> str | None:
        return None if self.content is None else hashlib.md5(self.content).hexdigest()

    def resource(self) -> dict[str, Any]:
        """The file as Drive v3 describes it (before a `fields` mask is applied)."""
        item: dict[str, Any] = {"kind": "drive#file", "id": self.id, "name": self.name, "mimeType": self.mime_type,
                                "parents": list(self.parents), "trashed": self.trashed,
                                "capabilities": {"canAddChildren": self.writable and self.mime_type == FOLDER_MIME}}
        if self.app_properties:
            item["appProperties"] = dict(self.app_properties)
        if self.drive_id:
            item["driveId"] = self.drive_id
        if self.content is not None:
            item["md5Checksum"] = self.md5
            item["size"] = str(len(self.content))
        return item


@dataclass(frozen=True)
class Identity:
    """Who an access token belongs to."""

    email: str
    is_bare_service_account: bool
    scopes: frozenset[str]


@dataclass
class UploadSession:
    """A resumable upload in progress."""

    query: dict[str, str]
    metadata: dict[str, Any]
    identity: Identity
    file_id: str | None
    total: int | None
    received: bytearray = field(default_factory=bytearray)
    result_id: str | None = None


class DriveApiError(Exception):
    """An error answer in Drive's JSON shape."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason or DEFAULT_REASONS.get(status, "error")

    def body(self) -> dict[str, Any]:
        detail = {"domain": "global", "reason": self.reason, "message": str(self)}
        return {"error": {"code": self.status, "message": str(self), "errors": [detail]}}


class ReplyLost(Exception):
    """The request took effect, but its answer never reaches the client: the connection is closed instead."""


class OAuthError(Exception):
    """An error answer of the token endpoint (`{"error": ..., "error_description": ...}`)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_fields(mask: str) -> dict[str, Any]:
    """`"nextPageToken,files(id,capabilities(canAddChildren))"` -> {"nextPageToken": None, "files": {...}}."""
    spec: dict[str, Any] = {}
    stack = [spec]
    name = ""
    for char in mask + ",":
        if char in ",()":
            if name.strip():
                stack[-1][name.strip()] = {} if char == "(" else None
            if char == "(":
                stack.append(stack[-1][name.strip()])
            elif char == ")":
                stack.pop()
            name = ""
        else:
            name += char
    return spec


def select(value: Any, spec: dict[str, Any] | None) -> Any:
    """Apply a parsed `fields` mask to a resource (lists are masked item by item)."""
    if spec is None:
        return value
    if isinstance(value, list):
        return [select(item, spec) for item in value]
    return {key: select(value[key], sub) for key, sub in spec.items() if key in value}


_QUOTED = r"'((?:[^'\\]|\\.)*)'"
_CLAUSES = [
    ("name", re.compile(rf"name\s*=\s*{_QUOTED}")),
    ("parent", re.compile(rf"{_QUOTED}\s+in\s+parents")),
    ("mime", re.compile(rf"mimeType\s*(=|!=)\s*{_QUOTED}")),
    ("trashed", re.compile(r"trashed\s*=\s*(true|false)")),
    ("property", re.compile(rf"appProperties\s+has\s*\{{\s*key\s*=\s*{_QUOTED}\s+and\s+value\s*=\s*{_QUOTED}\s*\}}")),
]


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_query(q: str) -> list[tuple[str, tuple[str, ...]]]:
    """Split a Drive query (clauses joined by `and`) into (kind, arguments); anything else is a 400."""
    clauses, position, text = [], 0, q.strip()
    while text:
        for kind, pattern in _CLAUSES:
            match = pattern.match(text, position)
            if match:
                clauses.append((kind, tuple(_unquote(group) for group in match.groups())))
                position = match.end()
                break
        else:
            raise DriveApiError(400, f"Invalid Value: the fake cannot parse q at {text[position:]!r}", "invalid")
        connector = re.compile(r"\s+and\s+").match(text, position)
        if position == len(text):
            return clauses
        if not connector:
            raise DriveApiError(400, f"Invalid Value: expected 'and' at {text[position:]!r}", "invalid")
        position = connector.end()
    return clauses


def matches(item: FakeFile, clauses: list[tuple[str, tuple[str, ...]]]) -> bool:
    """Whether `item` satisfies every clause of a parsed query."""
    for kind, args in clauses:
        if kind == "name" and item.name != args[0]:
            return False
        if kind == "parent" and args[0] not in item.parents:
            return False
        if kind == "mime" and (item.mime_type == args[1]) != (args[0] == "="):
            return False
        if kind == "trashed" and item.trashed != (args[0] == "true"):
            return False
        if kind == "property" and item.app_properties.get(args[0]) != args[1]:
            return False
    return True


class FakeDrive:
    """The fake Drive API; use it as a context manager: `with FakeDrive() as drive: ...`.

    `page_size` caps every files.list page (Drive may always return fewer items than asked for). It listens on
    `host` (loopback by default; the stack test gives the Docker bridge's address) and its URLs name it as its
    clients reach it: `reached_as`, by default `host` (the containers say host.docker.internal).
    """

    def __init__(self, page_size: int = 100, host: str = "127.0.0.1", reached_as: str = "") -> None:
        self.page_size = page_size
        self.host = host
        self.reached_as = reached_as or host
        self._lock = threading.Lock()
        self._files: dict[str, FakeFile] = {}
        self._sessions: dict[str, UploadSession] = {}
        self._tokens: dict[str, Identity] = {}
        self._service_accounts: dict[str, tuple[rsa.RSAPublicKey, bool]] = {}
        self._users: dict[str, tuple[str, str, str]] = {}  # refresh token -> (email, client id, secret)
        self._faults: dict[str, list[Fault | str]] = {}
        self._uploads_to_corrupt = 0
        self._replies_to_lose = 0
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._lifetime = contextlib.ExitStack()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeDrive:
        self._server = self._lifetime.enter_context(serving(_make_handler(self), host=self.host))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lifetime.close()

    @property
    def root_url(self) -> str:
        """What GDRIVE_API_ROOT must be set to."""
        assert self._server is not None, "use FakeDrive as a context manager"
        return f"http://{self.reached_as}:{self._server.server_port}/"

    @property
    def token_uri(self) -> str:
        return self.root_url + "token"

    # -- set-up helpers for tests ------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def create_folder(self, name: str, parent_id: str | None = None, shared_drive: bool = False,
                      writable: bool = True) -> str:
        """A folder made by a person in the Drive UI (so not visible with the drive.file scope); its id."""
        with self._lock:
            drive_id = self._files[parent_id].drive_id if parent_id else None
            if shared_drive and not parent_id:
                drive_id = self._new_id("0ASharedDrive")
            folder = FakeFile(self._new_id("folder"), name, FOLDER_MIME, [parent_id or "root"], drive_id,
                              writable=writable)
            self._files[folder.id] = folder
            return folder.id

    def create_file(self, name: str, parent_id: str, content: bytes = b"",
                    mime_type: str = "application/octet-stream") -> str:
        """A file made by a person; its id."""
        with self._lock:
            item = FakeFile(self._new_id("file"), name, mime_type, [parent_id], self._files[parent_id].drive_id,
                            content=content)
            self._files[item.id] = item
            return item.id

    def trash(self, file_id: str) -> None:
        with self._lock:
            self._files[file_id].trashed = True

    def files_in(self, folder_id: str) -> list[FakeFile]:
        """The items directly inside a folder (not trashed), in creation order."""
        with self._lock:
            return [f for f in self._files.values() if folder_id in f.parents and not f.trashed]

    def write_service_account_key(self, path: Path, email: str = "pipeline@test-project.iam.gserviceaccount.com",
                                  domain_wide_delegation: bool = False) -> Path:
        """Write a service-account key file (a fresh RSA key, token_uri = this fake) and register its account."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        with self._lock:
            self._service_accounts[email] = (key.public_key(), domain_wide_delegation)
        info = {"type": "service_account", "project_id": "test-project", "private_key_id": "test-key-1",
                "private_key": pem, "client_email": email, "client_id": "100000000000000000001",
                "token_uri": self.token_uri, "universe_domain": "googleapis.com"}
        return _write_secret(path, info)

    def write_user_token(self, path: Path, email: str = "someone@gmail.com") -> Path:
        """Write an `authorized_user` token file (as an OAuth consent produces) and register its user."""
        refresh_token = f"1//refresh-{email}"
        with self._lock:
            self._users[refresh_token] = (email, "test-client.apps.googleusercontent.com", "test-secret")
        info = {"type": "authorized_user", "client_id": "test-client.apps.googleusercontent.com",
                "client_secret": "test-secret", "refresh_token": refresh_token, "token_uri": self.token_uri}
        return _write_secret(path, info)

    def fail_next(self, operation: str, *faults: int | Fault | str) -> None:
        """Answer the next requests of `operation` with these faults, in order: a status code, a Fault, or DROP."""
        with self._lock:
            queue = self._faults.setdefault(operation, [])
            queue.extend(Fault(f) if isinstance(f, int) else f for f in faults)

    def corrupt_next_upload(self) -> None:
        """Store the next completed upload with its first byte flipped (bytes damaged on the way)."""
        with self._lock:
            self._uploads_to_corrupt += 1

    def lose_reply_to_next_finished_upload(self) -> None:
        """Store the next completed upload, then drop the connection without the final answer and forget its
        session, so that asking the session how much arrived answers 404 (a reply lost on the way back)."""
        with self._lock:
            self._replies_to_lose += 1

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation == operation]

    # -- request handling (called by the HTTP handler) ---------------------------------------------------------

    def take_fault(self, operation: str) -> Fault | str | None:
        with self._lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def issue_token(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint: a JWT-bearer grant (service accounts) or a refresh-token grant (users)."""
        grant = form.get("grant_type", "")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            identity = self._identity_from_assertion(form.get("assertion", ""))
        elif grant == "refresh_token":
            user = self._users.get(form.get("refresh_token", ""))
            if user is None or (form.get("client_id"), form.get("client_secret")) != user[1:]:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            scopes = frozenset(form.get("scope", FULL_SCOPE).split())
            identity = Identity(user[0], False, scopes)
        else:
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
        token = f"ya29.fake-{next(self._ids)}"
        with self._lock:
            self._tokens[token] = identity
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                "scope": " ".join(sorted(identity.scopes))}

    def _identity_from_assertion(self, assertion: str) -> Identity:
        try:
            header, payload, signature = assertion.split(".")
            claims = json.loads(_b64url_decode(payload))
        except ValueError:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: not a JWT") from None
        account = self._service_accounts.get(claims.get("iss", ""))
        if account is None:
            raise OAuthError(400, "invalid_grant", "Invalid grant: account not found")
        public_key, delegation_allowed = account
        try:
            public_key.verify(_b64url_decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(),
                              hashes.SHA256())
        except InvalidSignature:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE or claims.get("exp", 0) < time.time():
            raise OAuthError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a "
                                                   "reasonable timeframe; check the audience and clock")
        scopes = frozenset(claims.get("scope", "").split())
        subject = claims.get("sub")
        if subject and subject != claims["iss"]:
            if not delegation_allowed:
                raise OAuthError(401, "unauthorized_client", "Client is unauthorized to retrieve access tokens "
                                 "using this method, or client not authorized for any of the scopes requested.")
            return Identity(subject, False, scopes)
        return Identity(claims["iss"], True, scopes)

    def identity_for(self, authorization: str) -> Identity:
        with self._lock:
            identity = self._tokens.get(authorization.removeprefix("Bearer "))
        if identity is None:
            raise DriveApiError(401, "Request had invalid authentication credentials.", "authError")
        if not identity.scopes & {FULL_SCOPE, FILE_SCOPE}:
            raise DriveApiError(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
        return identity

    def _visible(self, item: FakeFile, identity: Identity, query: dict[str, str]) -> bool:
        if item.drive_id and query.get("supportsAllDrives") != "true":
            return False
        return FULL_SCOPE in identity.scopes or item.created_by_app

    def _lookup(self, file_id: str, identity: Identity, query: dict[str, str]) -> FakeFile:
        item = self._files.get(file_id)
        if item is None or not self._visible(item, identity, query):
            raise DriveApiError(404, f"File not found: {file_id}.", "notFound")
        return item

    def about(self, identity: Identity, query: dict[str, str]) -> dict[str, Any]:
        if "fields" not in query:
            raise DriveApiError(400, "The 'fields' parameter is required for this method.", "required")
        about = {"kind": "drive#about", "user": {"kind": "drive#user", "emailAddress": identity.email,
                                                 "displayName": identity.email.split("@")[0], "me": True}}
        return select(about, parse_fields(query["fields"]))

    def get(self, file_id: str, identity: Identity, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            item = self._lookup(file_id, identity, query)
            return _masked(item.resource(), query, "kind,id,name,mimeType")

    def list(self, identity: Identity, query: dict[str, str]) -> dict[str, Any]:
        clauses = parse_query(query.get("q", ""))
        all_drives = query.get("includeItemsFromAllDrives") == "true"
        if all_drives and query.get("supportsAllDrives") != "true":
            raise DriveApiError(403, "includeItemsFromAllDrives needs supportsAllDrives=true", "teamDrivesParameter")
        if query.get("corpora") == "drive" and not (all_drives and query.get("driveId")):
            raise DriveApiError(403, "corpora=drive needs driveId and includeItemsFromAllDrives", "teamDrivesParameter")
        with self._lock:
            found = [f for f in self._files.values() if self._visible(f, identity, query) and matches(f, clauses)
                     and (all_drives or not f.drive_id)
                     and (query.get("corpora") != "drive" or f.drive_id == query.get("driveId"))]
        start = int(query.get("pageToken", "0"))
        size = min(int(query.get("pageSize", "100")), self.page_size)
        page: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                "files": [f.resource() for f in found[start:start + size]]}
        if start + size < len(found):
            page["nextPageToken"] = str(start + size)
        if "fields" in query:
            return select(page, parse_fields(query["fields"]))
        page["files"] = select(page["files"], parse_fields("kind,id,name,mimeType"))
        return page

    def create_metadata(self, body: dict[str, Any], identity: Identity, query: dict[str, str]) -> dict[str, Any]:
        """files.create without media: the pipeline only creates folders this way."""
        with self._lock:
            item = self._new_item(body, body.get("mimeType", "application/octet-stream"), identity, query, None)
            return _masked(item.resource(), query, "kind,id,name,mimeType")

    def update_metadata(self, file_id: str, body: dict[str, Any], identity: Identity,
                        query: dict[str, str]) -> dict[str, Any]:
        """files.update without media: the pipeline only moves its empty run folders to the trash this way."""
        if set(body) != {"trashed"}:
            raise DriveApiError(400, f"this fake only updates 'trashed', got {sorted(body)}", "invalid")
        with self._lock:
            item = self._lookup(file_id, identity, query)
            parent = self._files.get(item.parents[0])
            if parent is not None and not parent.writable:
                raise DriveApiError(403, "The user does not have sufficient permissions for this file.",
                                    "insufficientFilePermissions")
            item.trashed = bool(body["trashed"])
            return _masked(item.resource(), query, "kind,id,name,mimeType")

    def _new_item(self, metadata: dict[str, Any], mime_type: str, identity: Identity, query: dict[str, str],
                  content: bytes | None) -> FakeFile:
        parents = metadata.get("parents") or ["root"]
        parent = self._lookup(parents[0], identity, query) if parents[0] != "root" else None
        if parent is not None and not (parent.writable and parent.mime_type == FOLDER_MIME):
            raise DriveApiError(403, "The user does not have sufficient permissions for this file.",
                                "insufficientFilePermissions")
        prefix = "folder" if mime_type == FOLDER_MIME else "file"
        item = FakeFile(self._new_id(prefix), metadata.get("name", "Untitled"), mime_type, list(parents),
                        parent.drive_id if parent else None, content, dict(metadata.get("appProperties", {})),
                        created_by_app=True)
        self._files[item.id] = item
        return item

    def start_upload(self, file_id: str | None, metadata: dict[str, Any], headers: dict[str, str],
                     identity: Identity, query: dict[str, str]) -> str:
        """Open a resumable session (files.create or files.update); its id."""
        if query.get("uploadType") != "resumable":
            raise DriveApiError(400, "this fake only implements uploadType=resumable", "invalid")
        with self._lock:
            if file_id is not None:
                self._lookup(file_id, identity, query)
            else:
                parents = metadata.get("parents") or ["root"]
                parent = self._lookup(parents[0], identity, query) if parents[0] != "root" else None
                if identity.is_bare_service_account and (parent is None or not parent.drive_id):
                    raise DriveApiError(403, "Service Accounts do not have storage quota. Use a shared drive or "
                                             "OAuth delegation instead.", "storageQuotaExceeded")
            if "x-upload-content-type" in headers:
                metadata.setdefault("mimeType", headers["x-upload-content-type"])
            total = headers.get("x-upload-content-length")
            session_id = self._new_id("session")
            self._sessions[session_id] = UploadSession(dict(query), metadata, identity, file_id,
                                                       int(total) if total else None)
            return session_id

    def receive_chunk(self, session_id: str, content_range: str | None, data: bytes) -> tuple[int, Any]:
        """One PUT to a session URI: (308, received byte count) while incomplete, (200, file) when done."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise DriveApiError(404, "upload session not found", "notFound")
            if session.result_id is None:
                self._append_chunk(session, content_range, data)
                if session.result_id is not None and self._replies_to_lose:
                    self._replies_to_lose -= 1
                    del self._sessions[session_id]
                    raise ReplyLost(session_id)
            if session.result_id is None:
                return 308, len(session.received)
            return 200, _masked(self._files[session.result_id].resource(), session.query, "kind,id,name,mimeType")

    def _append_chunk(self, session: UploadSession, content_range: str | None, data: bytes) -> None:
        match = re.fullmatch(r"bytes (\*|(\d+)-(\d+))/(\*|\d+)", content_range or f"bytes */{len(data)}")
        if match is None:
            raise DriveApiError(400, f"bad Content-Range {content_range!r}", "badContentRange")
        if match.group(4) != "*":
            session.total = int(match.group(4))
        if match.group(2) is not None:
            start, end = int(match.group(2)), int(match.group(3))
            if end - start + 1 != len(data) or start > len(session.received):
                raise DriveApiError(400, f"Content-Range {content_range} does not fit {len(data)} bytes after "
                                         f"{len(session.received)} received", "badContentRange")
            is_last = session.total is not None and end + 1 == session.total
            if not is_last and len(data) % UPLOAD_GRANULARITY:
                raise DriveApiError(400, f"a chunk that is not the last must be a multiple of {UPLOAD_GRANULARITY} "
                                         f"bytes, got {len(data)}", "badContentRange")
            session.received[start:] = data
        if session.total is not None and len(session.received) == session.total:
            self._finish_upload(session)

    def _finish_upload(self, session: UploadSession) -> None:
        content = bytes(session.received)
        if self._uploads_to_corrupt and content:
            self._uploads_to_corrupt -= 1
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        if session.file_id is None:
            mime = session.metadata.get("mimeType", "application/octet-stream")
            session.result_id = self._new_item(session.metadata, mime, session.identity, session.query, content).id
            return
        item = self._files[session.file_id]
        item.content = content
        item.name = session.metadata.get("name", item.name)
        item.app_properties.update(session.metadata.get("appProperties", {}))
        session.result_id = item.id


def _masked(resource: dict[str, Any], query: dict[str, str], default_fields: str) -> dict[str, Any]:
    return select(resource, parse_fields(query.get("fields", default_fields)))


def _write_secret(path: Path, info: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


_ROUTES = [
    ("POST", re.compile(r"/token"), "token"),
    ("GET", re.compile(r"/drive/v3/about"), "about.get"),
    ("GET", re.compile(r"/drive/v3/files"), "files.list"),
    ("POST", re.compile(r"/drive/v3/files"), "files.create"),
    ("GET", re.compile(r"/drive/v3/files/([^/]+)"), "files.get"),
    ("PATCH", re.compile(r"/drive/v3/files/([^/]+)"), "files.update"),
    ("POST", re.compile(r"/upload/drive/v3/files"), "upload.start"),
    ("PATCH", re.compile(r"/upload/drive/v3/files/([^/]+)"), "upload.start"),
    ("PUT", re.compile(r"/upload/drive/v3/files(?:/[^/]+)?"), "upload.chunk"),
]


def _make_handler(drive: FakeDrive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # an idle keep-alive connection ends its thread
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the requests are recorded instead."""

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation, args = self._route(url.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            fault = drive.take_fault(operation) if operation else None
            try:
                answer = None if fault == DROP else self._answer(operation, args, query, headers, body, fault)
            except ReplyLost:
                answer = None
            # Recorded before answering, so a test reading `requests` after its call sees this request.
            drive.record(RecordedRequest(operation or "unknown", self.command, url.path, query, headers,
                                         len(body), answer[0] if answer else 0))
            if answer is None:
                self.close_connection = True
            else:
                self._send(*answer)

        def _route(self, path: str) -> tuple[str | None, tuple[str, ...]]:
            for method, pattern, operation in _ROUTES:
                match = pattern.fullmatch(path)
                if match and method == self.command:
                    return operation, match.groups()
            return None, ()

        def _answer(self, operation: str | None, args: tuple[str, ...], query: dict[str, str],
                    headers: dict[str, str], body: bytes,
                    fault: Fault | str | None) -> tuple[int, Any, dict[str, str]]:
            try:
                if isinstance(fault, Fault) and not fault.after_commit:
                    raise _fault_error(operation, fault)
                status, payload, extra = self._dispatch(operation, args, query, headers, body)
                if isinstance(fault, Fault):
                    raise _fault_error(operation, fault)
            except DriveApiError as exc:
                status, payload, extra = exc.status, exc.body(), {}
            except OAuthError as exc:
                status, payload, extra = exc.status, {"error": exc.error, "error_description": str(exc)}, {}
            return status, payload, extra

        def _dispatch(self, operation: str | None, args: tuple[str, ...], query: dict[str, str],
                      headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
            if operation is None:
                raise DriveApiError(404, f"the fake has no {self.command} {self.path}", "notFound")
            if operation == "token":
                return 200, drive.issue_token(dict(urllib.parse.parse_qsl(body.decode()))), {}
            if operation == "upload.chunk":
                status, result = drive.receive_chunk(query.get("upload_id", ""), headers.get("content-range"),
                                                     body)
                if status == 308:
                    return 308, None, {"Range": f"bytes=0-{result - 1}"} if result else {}
                return 200, result, {}
            identity = drive.identity_for(headers.get("authorization", ""))
            metadata = json.loads(body) if body else {}
            if operation == "about.get":
                return 200, drive.about(identity, query), {}
            if operation == "files.get":
                return 200, drive.get(args[0], identity, query), {}
            if operation == "files.list":
                return 200, drive.list(identity, query), {}
            if operation == "files.create":
                return 200, drive.create_metadata(metadata, identity, query), {}
            if operation == "files.update":
                return 200, drive.update_metadata(args[0], metadata, identity, query), {}
            session_id = drive.start_upload(args[0] if args else None, metadata, headers, identity, query)
            location = f"{drive.root_url.rstrip('/')}{self.path}&upload_id={session_id}"
            return 200, None, {"Location": location}

        def _send(self, status: int, payload: Any, extra_headers: dict[str, str]) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _fault_error(operation: str | None, fault: Fault) -> Exception:
    if operation == "token":
        return OAuthError(fault.status, fault.reason or "invalid_grant", f"injected fault {fault.status}")
    return DriveApiError(fault.status, f"injected fault {fault.status} {fault.reason}".strip(), fault.reason)

