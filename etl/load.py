"""Step 1, load: download the CSV (timeout, retries with backoff), check it is the expected CSV, fall back to
the bundled copy when allowed, and record where it came from, its row count and sha256."""

from __future__ import annotations

import csv
import io
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import artifacts
from utils.config import Settings
from utils.errors import DataSourceError
from utils.files import record_run_start, run_dir, sha256_bytes, write_bytes_atomic, write_json_atomic
from utils.logger import get_logger
from utils.steps import cli_main
from utils.telemetry import Sample, push_metrics

STEP = "load"
USER_AGENT = "breast-cancer-pipeline/1.0"
log = get_logger(STEP)


class PermanentDownloadError(DataSourceError):
    """A failure that retrying cannot fix (404, 403, a body that is not the CSV)."""


@dataclass(frozen=True)
class LoadedData:
    """What `load` obtained and from where."""

    content: bytes
    source: str
    location: str
    rows: int
    fallback_reason: str = ""


def fetch_once(url: str, timeout: float) -> bytes:
    """One GET of `url`; HTTP 4xx (but 408/429) raise PermanentDownloadError, other failures DataSourceError."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "") if hasattr(response, "headers") else ""
            body = response.read()
    except urllib.error.HTTPError as exc:
        message = f"{url} answered HTTP {exc.code} {exc.reason}"
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise PermanentDownloadError(message) from None
        raise DataSourceError(message) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataSourceError(f"{url} could not be read: {reason}") from None
    except Exception as exc:  # http.client.IncompleteRead and friends: a truncated transfer
        raise DataSourceError(f"{url}: the transfer broke off: {exc!r}") from None
    if "html" in content_type.lower():
        raise PermanentDownloadError(f"{url} returned an HTML page (Content-Type {content_type}), not a CSV")
    return body


def download(url: str, timeout: float, retries: int, backoff: float) -> tuple[bytes, int]:
    """GET `url`, retrying transient failures `retries` times with exponential backoff; the checked body and its
    data-row count."""
    for attempt in range(retries + 1):
        try:
            body = fetch_once(url, timeout)
            return body, check_csv_bytes(body, url)
        except PermanentDownloadError:
            raise
        except DataSourceError as exc:
            if attempt == retries:
                raise DataSourceError(f"{exc} (gave up after {retries + 1} attempts)") from None
            delay = backoff * 2 ** attempt
            log.warning("download attempt %d/%d failed: %s; retrying in %.1f s",
                        attempt + 1, retries + 1, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def check_csv_bytes(body: bytes, origin: str) -> int:
    """Check that `body` is a complete CSV document and return its data-row count.

    Catches what a failing source serves: an empty body, an HTML page, bytes that are not UTF-8 text, and a
    truncated transfer (a last line with fewer fields than the header). Whether the columns and values are the
    expected ones is `preprocess`'s job, so that a wrong file gets a precise report and never a silent fallback.
    """
    if not body.strip():
        raise PermanentDownloadError(f"{origin}: the body is empty, expected a CSV with a header line")
    if body.lstrip()[:1] == b"<":
        raise PermanentDownloadError(f"{origin}: got an HTML/XML document, expected a CSV")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentDownloadError(f"{origin}: byte {exc.start} is not UTF-8: expected a UTF-8 CSV") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise PermanentDownloadError(f"{origin}: not readable as CSV: {exc}") from None
    if len(rows) > 1 and len(rows[-1]) < len(rows[0]):
        raise DataSourceError(f"{origin}: the last line has {len(rows[-1])} fields, the header "
                              f"{len(rows[0])}: the file looks truncated")
    return len(rows) - 1


def read_bundled(path: Path) -> tuple[bytes, int]:
    """The bundled copy of the data set, checked like a download, and its data-row count."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"the bundled data {path} cannot be read: {exc.strerror}") from None
    return body, check_csv_bytes(body, str(path))


def obtain(settings: Settings) -> LoadedData:
    """Download from DATA_URL, or fall back to the bundled file when DATA_FALLBACK allows it."""
    try:
        body, rows = download(settings.data_url, settings.download_timeout, settings.download_retries,
                              settings.download_backoff)
        return LoadedData(body, "url", settings.data_url, rows)
    except DataSourceError as exc:
        if not settings.data_fallback:
            raise DataSourceError(f"{exc}; DATA_FALLBACK is off, so the bundled copy is not used") from None
        log.warning("!!! DATA_URL failed (%s); FALLING BACK to the bundled copy %s", exc,
                    settings.bundled_data_path)
        body, rows = read_bundled(settings.bundled_data_path)
        return LoadedData(body, "bundled", str(settings.bundled_data_path), rows, fallback_reason=str(exc))


def run(settings: Settings) -> dict[str, Any]:
    """Load the raw CSV into the run's folder and record its provenance."""
    loaded = obtain(settings)
    digest = sha256_bytes(loaded.content)
    if settings.data_sha256 and digest != settings.data_sha256.lower():
        raise DataSourceError(f"{loaded.location} has sha256 {digest}, but DATA_SHA256 expects "
                              f"{settings.data_sha256}")
    folder = run_dir(settings.runs_dir, settings.run_id)
    record_run_start(folder, settings.run_start() or datetime.now(UTC).replace(microsecond=0))
    raw_path = write_bytes_atomic(folder / artifacts.RAW, loaded.content)
    info = {"source": loaded.source, "location": loaded.location, "rows": loaded.rows, "sha256": digest,
            "bytes": len(loaded.content), "fallback_reason": loaded.fallback_reason, "raw_path": str(raw_path),
            **artifacts.lineage(folder, inputs=(), outputs=(artifacts.RAW, artifacts.RUN_INFO))}
    write_json_atomic(folder / artifacts.LOAD_INFO, info)
    log.info("loaded %d rows (%d bytes, sha256 %s) from %s %s", loaded.rows, len(loaded.content), digest,
             loaded.source, loaded.location)
    push_metrics(settings, STEP, [Sample("rows_loaded", loaded.rows, help="Data rows in the loaded CSV."),
                                  Sample("data_fallback_used", float(loaded.source == "bundled"),
                                         help="1 when the bundled copy replaced DATA_URL.")])
    return info


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, run, argv)


if __name__ == "__main__":
    sys.exit(main())
