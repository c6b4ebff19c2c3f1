"""The load step: read the CSV from DATA_URL (http(s) with a total deadline per attempt, retries with backoff and a
size limit; file:// only inside DATA_ALLOWED_DIRS), check it is the expected CSV, fall back to the bundled copy
when the source cannot be reached and DATA_FALLBACK allows it, and record where it came from, its row count and
sha256.

Which failure does what:
  the source cannot be reached (DNS, refused, reset, timeout, HTTP 5xx/408/429): retried; after the last retry
      the bundled copy is used when DATA_FALLBACK=true. A server that still answers 5xx after every retry is down.
  the transfer broke off (fewer bytes than Content-Length): retried; after the last retry an error.
  the source answered with something else than the CSV (4xx, HTML, empty, truncated, not UTF-8, too big): an
      error at once, never the bundled copy: a wrong answer must be seen, not hidden behind the offline copy.

Credentials go only to the origin they were written for. user:password@ in DATA_URL becomes a Basic Authorization
header for DATA_URL's origin (scheme, host, port); a redirect to another origin is followed without it (nor any
Authorization or Cookie header), so a mirror or CDN gets the request but never the password. A redirect from https
to http, or to any scheme but http(s) (file://, ftp://, data:), is refused: a permanent error, not a fallback.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import http.client
import io
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from etl import catalog
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils import redact
from utils.config import MAX_BACKOFF_SECONDS, PROJECT_ROOT, Settings, file_path, portable, scrubbed, shown
from utils.errors import ConfigError, DataSourceError, excerpt
from utils.files import regular_handle, sha256_bytes, write_bytes_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "load"
USER_AGENT = "breast-cancer-pipeline/1.0"
CHUNK_BYTES = 64 * 1024
SECRETS_FOLDER = "secrets"
TRANSIENT_HTTP = (408, 429)  # and every 5xx
CREDENTIAL_HEADERS = ("Authorization", "Cookie")  # as urllib.request.Request stores them (capitalized)
LEADING_TAG = re.compile(rb"\s*<")  # an HTML/XML document
log = get_logger(STEP)


class PermanentDownloadError(DataSourceError):
    """The source answered, but not with the CSV (404, 403, an HTML page, an empty or truncated body): retrying
    cannot fix it, and the bundled copy must not hide it."""


class DownloadTooLargeError(PermanentDownloadError):
    """The body is larger than DOWNLOAD_MAX_BYTES."""


class SourceUnreachableError(DataSourceError):
    """The source could not be reached (DNS, refused, timeout, HTTP 5xx): the one case for the bundled copy."""

    transient = True


class TransferBrokenError(DataSourceError):
    """The connection broke off in the middle of the body: a retry may get all of it."""

    transient = True


@dataclass(frozen=True)
class LoadedData:
    """What `load` obtained and from where (`location` redacted)."""

    content: bytes
    source: str
    location: str
    rows: int
    fallback_reason: str = ""


# --- what a run may read ----------------------------------------------------------------------------------------

def allowed_data_file(settings: Settings) -> Path:
    """The file a file:// DATA_URL names, resolved (symlinks, `..`), if a run may read it; else ConfigError.

    Allowed: a regular file inside one of DATA_ALLOWED_DIRS. Refused even when allowed there: anything in a
    folder named `secrets` or in the project's secrets/ folder, and the GOOGLE_APPLICATION_CREDENTIALS file.
    """
    url = settings.data_url
    path = file_path(url).resolve()
    refused = f"DATA_URL={shown('DATA_URL', url)!r} is refused: {path}"
    credentials = settings.google_credentials.resolve()
    project_secrets = (PROJECT_ROOT / SECRETS_FOLDER).resolve()
    if (SECRETS_FOLDER in (part.lower() for part in path.parts) or path.is_relative_to(project_secrets)
            or path == credentials):
        raise ConfigError(f"{refused} is a secret (a secrets/ folder or GOOGLE_APPLICATION_CREDENTIALS): a run "
                          "never reads those as data")
    allowed = [folder.resolve() for folder in settings.data_allowed_dirs]
    if not any(path.is_relative_to(folder) for folder in allowed):
        raise ConfigError(f"{refused} is outside DATA_ALLOWED_DIRS ({', '.join(map(str, allowed)) or 'empty'}): "
                          "add its folder there to read it")
    if not path.is_file():
        raise PermanentDownloadError(f"{refused} does not exist or is not a regular file")
    return path


def read_file_limited(path: Path, max_bytes: int, origin: str) -> bytes:
    """The bytes of a local file, refused when it is larger than `max_bytes`, or not a regular file by the time it
    is opened (a FIFO swapped in never blocks the read: utils.files.regular_handle)."""
    try:
        with regular_handle(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise DownloadTooLargeError(too_large(origin, max_bytes, f"the file has {size} bytes"))
            body = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PermanentDownloadError(f"{origin} cannot be read: {exc.strerror}") from None
    if len(body) > max_bytes:
        raise DownloadTooLargeError(too_large(origin, max_bytes, "the file grew while it was read"))
    return body


def too_large(origin: str, max_bytes: int, detail: str) -> str:
    return f"{origin} is larger than DOWNLOAD_MAX_BYTES={max_bytes} ({detail}); raise the setting to accept it"


# --- one HTTP attempt under a total deadline --------------------------------------------------------------------

class Deadline:
    """The end of one download attempt. urllib's timeout applies to each socket operation, so a server that
    drips a byte now and then would never time out; at the deadline this shuts the attempt's sockets down
    (from a timer thread), which ends whatever read is blocked on them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._timer.cancel()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            # socket.socket's own shutdown, also for an SSLSocket: it acts on the file descriptor only
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(connection_class: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    class Watched(connection_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline = deadline

        def connect(self) -> None:
            super().connect()
            self._deadline.watch(self.sock)

    return Watched


_WatchedHTTP = _watched(http.client.HTTPConnection)
_WatchedHTTPS = _watched(http.client.HTTPSConnection)


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTP, deadline=self.deadline), req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTPS, deadline=self.deadline), req, context=self._context)


class SameOriginRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, with the credentials kept to their origin: a redirect to another origin drops the
    Authorization and Cookie headers; one to another scheme than http(s), or from https to http, is refused."""

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                       headers: Any) -> Any:
        target = urljoin(req.full_url, (headers.get("location") or headers.get("uri") or "").strip())
        scheme, was = urlsplit(target).scheme.lower(), urlsplit(req.full_url).scheme.lower()
        if scheme not in ("http", "https") or (was, scheme) == ("https", "http"):
            fp.close()
            raise PermanentDownloadError(
                f"{redact.redact_url(req.full_url)} redirected to {excerpt(redact.redact_url(target))!r}: refused, "
                "a download follows redirects to http(s) only and never from https to http")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not same_origin(req.full_url, new.full_url):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
        return new


def same_origin(first: str, second: str) -> bool:
    """Whether two URLs share scheme, host and port (an unparseable port never matches)."""
    try:
        return redact.origin(first) == redact.origin(second)
    except ValueError:
        return False


def _opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener for http(s) only (proxies from the environment, redirects with credentials kept to their
    origin), under `deadline`."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _DeadlineHTTPHandler(deadline),
                    _DeadlineHTTPSHandler(deadline), urllib.request.HTTPDefaultErrorHandler(),
                    SameOriginRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _request(url: str) -> urllib.request.Request:
    """A GET of `url`; user:password@ in it becomes a Basic Authorization header (urllib would take it for a
    host name)."""
    parts = urlsplit(url)
    headers = {"User-Agent": USER_AGENT}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return urllib.request.Request(urlunsplit(parts), headers=headers)


def fetch_once(url: str, timeout: float, max_bytes: int) -> bytes:
    """One GET of `url`, all of it (connect, headers, body) within `timeout` seconds, at most `max_bytes` long.

    Raises SourceUnreachableError (cannot be reached, timed out, 5xx/408/429), TransferBrokenError (the body
    broke off) or PermanentDownloadError (any other answer that is not a CSV body)."""
    origin = shown("DATA_URL", url)
    with Deadline(timeout) as deadline:
        try:
            with _opener(deadline).open(_request(url), timeout=timeout) as response:
                content_type = response.headers.get("Content-Type", "")
                if "html" in content_type.lower():
                    raise PermanentDownloadError(f"{origin} returned an HTML page (Content-Type {content_type}), "
                                                 "not a CSV")
                return _read_body(response, origin, max_bytes, deadline)
        except urllib.error.HTTPError as exc:
            message = f"{origin} answered HTTP {exc.code} {exc.reason}"
            if exc.code >= 500 or exc.code in TRANSIENT_HTTP:
                raise SourceUnreachableError(message) from None
            raise PermanentDownloadError(message) from None
        except DataSourceError:
            raise
        except Exception as exc:  # URLError, OSError, http.client.HTTPException: no (complete) answer
            if deadline.expired or isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None),
                                                                               TimeoutError):
                raise SourceUnreachableError(f"{origin}: no complete answer within DOWNLOAD_TIMEOUT="
                                             f"{timeout:g} s") from None
            reason = scrubbed(str(getattr(exc, "reason", exc)), "DATA_URL", url)
            if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, OSError):
                raise PermanentDownloadError(f"{origin} could not be read: {reason}") from None
            raise SourceUnreachableError(f"{origin} could not be read: {reason}") from None


def _read_body(response: http.client.HTTPResponse, origin: str, max_bytes: int, deadline: Deadline) -> bytes:
    """The response body, read chunk by chunk: stops as soon as it passes `max_bytes` or the deadline."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise DownloadTooLargeError(too_large(origin, max_bytes, f"Content-Length {declared}"))
    body = io.BytesIO()  # getvalue() hands over its buffer without a copy
    received = 0
    try:
        while chunk := response.read1(CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise DownloadTooLargeError(too_large(origin, max_bytes, f"stopped after {received} bytes"))
            body.write(chunk)
    except (OSError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise
        raise TransferBrokenError(f"{origin}: the transfer broke off after {received} bytes: {exc!r}") from None
    if deadline.expired:
        raise TimeoutError
    if response.length:  # http.client counts down what Content-Length still promises
        raise TransferBrokenError(f"{origin}: the transfer broke off after {received} bytes, "
                                  f"{response.length} more were announced")
    return body.getvalue()


def download(url: str, timeout: float, retries: int, backoff: float, max_bytes: int) -> tuple[bytes, int]:
    """GET `url`, retrying transient failures `retries` times with exponential backoff (each wait at most
    MAX_BACKOFF_SECONDS); the checked body and its data-row count."""
    for attempt in range(retries + 1):
        try:
            body = fetch_once(url, timeout, max_bytes)
            return body, check_csv_bytes(body, shown("DATA_URL", url))
        except DataSourceError as exc:
            if not exc.transient:
                raise
            if attempt == retries:
                raise type(exc)(f"{exc} (gave up after {retries + 1} attempts)") from None
            delay = min(backoff * 2 ** attempt, MAX_BACKOFF_SECONDS)
            log.warning("download attempt %d/%d failed: %s; retrying in %.1f s",
                        attempt + 1, retries + 1, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# --- is it a CSV? -----------------------------------------------------------------------------------------------

def check_csv_bytes(body: bytes, origin: str) -> int:
    """Check that `body` is a complete CSV document and return its data-row count.

    Catches what a failing source serves: an empty body, an HTML page, bytes that are not UTF-8 text, and a
    truncated transfer (a last line with fewer fields than the header). Whether the columns and values are the
    expected ones is `preprocess`'s job, so that a wrong file gets a precise report and never a silent fallback.
    The body is decoded and parsed as a stream: memory stays at the body's own size.
    """
    if not body or body.isspace():  # not body.strip(): that would copy the body
        raise PermanentDownloadError(f"{origin}: the body is empty, expected a CSV with a header line")
    if LEADING_TAG.match(body):
        raise PermanentDownloadError(f"{origin}: got an HTML/XML document, expected a CSV")
    header_fields = last_fields = rows = 0
    try:
        with io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", newline="") as text:
            for row in csv.reader(text):
                if row:
                    rows += 1
                    last_fields = len(row)
                    header_fields = header_fields or last_fields
    except UnicodeDecodeError:
        raise PermanentDownloadError(f"{origin}: byte {_first_bad_utf8_byte(body)} is not UTF-8: expected a "
                                     "UTF-8 CSV") from None
    except csv.Error as exc:
        raise PermanentDownloadError(f"{origin}: not readable as CSV: {exc}") from None
    if rows > 1 and last_fields < header_fields:
        raise PermanentDownloadError(f"{origin}: the last line has {last_fields} fields, the header "
                                     f"{header_fields}: the file looks truncated")
    return rows - 1


def _first_bad_utf8_byte(body: bytes) -> int:
    """The offset of the first byte that is not valid UTF-8 (decoded again only for the error message)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return len(body)


# --- the step ---------------------------------------------------------------------------------------------------

def read_bundled(path: Path) -> tuple[bytes, int]:
    """The bundled copy of the data set, checked like a download, and its data-row count."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"the bundled data {path} cannot be read: {exc.strerror}") from None
    return body, check_csv_bytes(body, str(path))


def obtain(settings: Settings) -> LoadedData:
    """Read DATA_URL, or fall back to the bundled file when it cannot be reached and DATA_FALLBACK allows it."""
    location = shown("DATA_URL", settings.data_url)
    if urlsplit(settings.data_url).scheme.lower() == "file":
        body = read_file_limited(allowed_data_file(settings), settings.download_max_bytes, location)
        return LoadedData(body, "url", location, check_csv_bytes(body, location))
    try:
        body, rows = download(settings.data_url, settings.download_timeout, settings.download_retries,
                              settings.download_backoff, settings.download_max_bytes)
        return LoadedData(body, "url", location, rows)
    except SourceUnreachableError as exc:
        if not settings.data_fallback:
            raise type(exc)(f"{exc}; DATA_FALLBACK is off, so the bundled copy is not used") from None
        log.warning("!!! DATA_URL cannot be reached (%s); FALLING BACK to the bundled copy %s", exc,
                    settings.bundled_data_path)
        body, rows = read_bundled(settings.bundled_data_path)
        return LoadedData(body, "bundled", str(settings.bundled_data_path), rows, fallback_reason=str(exc))
    except DataSourceError as exc:
        if not settings.data_fallback:
            raise
        raise type(exc)(f"{exc}; the source answered, so the bundled copy is not used (DATA_FALLBACK covers only "
                        "a source that cannot be reached)") from None


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Load the raw CSV into the run's folder; its provenance goes into the step's record."""
    loaded = obtain(settings)
    digest = sha256_bytes(loaded.content)
    if settings.data_sha256 and digest != settings.data_sha256.lower():
        raise DataSourceError(f"{loaded.location} has sha256 {digest}, but DATA_SHA256 expects "
                              f"{settings.data_sha256}")
    write_bytes_atomic(run.file(catalog.RAW), loaded.content)
    log.info("loaded %d rows (%d bytes, sha256 %s) from %s %s", loaded.rows, len(loaded.content), digest,
             loaded.source, loaded.location)
    provenance = {"source": loaded.source, "location": portable(loaded.location), "rows": loaded.rows,
                  "sha256": digest}
    return StepResult(
        record={**provenance, "bytes": len(loaded.content), "fallback_reason": loaded.fallback_reason},
        summary=provenance,
        samples=[Sample("rows_loaded", loaded.rows, help="Data rows in the loaded CSV."),
                 Sample("data_fallback_used", float(loaded.source == "bundled"),
                        help="1 when the bundled copy replaced DATA_URL.")])

