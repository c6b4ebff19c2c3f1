"""The load step against a real HTTP server on 127.0.0.1, and with the source unreachable: retries, when the bundled
copy may replace the source (only when it cannot be reached), the size limit and the total deadline per attempt."""

from __future__ import annotations

import base64
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import ClassVar

import pytest

from etl import catalog, load
from etl.pipeline import cli_main, execute_step
from etl.run_folder import safe_run_id
from etl.steps import STEP
from tests.support.data import BUNDLED_CSV, BUNDLED_SHA256, open_run
from tests.support.servers import Answer, free_port, scripted_server, serving
from utils.config import MAX_BACKOFF_SECONDS, MAX_DOWNLOAD_RETRIES
from utils.errors import DataSourceError

GOOD = BUNDLED_CSV.read_bytes()
NOT_USED = "the source answered, so the bundled copy is not used"
RUN_ID = "test"
BOOKKEEPING = {catalog.LOCK, catalog.RUN_INFO}  # the lock and the run's start, there before load's own work


def run_load(settings, run_id: str = RUN_ID) -> dict:
    """The load step for the run `run_id`, as the runner executes it; its summary."""
    return execute_step(STEP["load"], open_run(settings, run_id), settings)


def loaded_info(settings, run_id: str = RUN_ID) -> dict:
    return open_run(settings, run_id).record("load")


def run_folder_files(settings, run_id: str = RUN_ID) -> list[str]:
    """What the run's folder holds besides the lock and run.json (temporary files included)."""
    folder = settings.runs_dir / safe_run_id(run_id)
    names = {path.name for path in folder.iterdir()} if folder.exists() else set()
    return sorted(names - BOOKKEEPING)


def test_good_csv_is_loaded_with_its_checksum_and_row_count(make_settings):
    with scripted_server(Answer(body=GOOD)) as server:
        settings = make_settings(data_url=server.url)
        summary = run_load(settings)
    assert summary == {"source": "url", "location": server.url, "rows": 699, "sha256": BUNDLED_SHA256}
    assert (settings.runs_dir / RUN_ID / catalog.RAW).read_bytes() == GOOD
    info = loaded_info(settings)
    assert info["location"] == server.url and info["bytes"] == len(GOOD) and not info["fallback_reason"]
    assert info["outputs"][catalog.RAW] == BUNDLED_SHA256 and info["inputs"] == {}
    assert run_folder_files(settings) == [catalog.LOAD_INFO, catalog.RAW]
    assert len(server.requests) == 1


def test_server_error_then_success_is_retried(make_settings):
    with scripted_server(Answer(500, b"oops"), Answer(503, b"busy"), Answer(body=GOOD)) as server:
        summary = run_load(make_settings(data_url=server.url, download_retries=3, data_fallback=False))
    assert summary["source"] == "url" and len(server.requests) == 3


def test_404_is_not_retried_and_strict_mode_fails_naming_the_url(make_settings):
    with scripted_server(Answer(404, b"not here")) as server:
        with pytest.raises(load.PermanentDownloadError, match=r"HTTP 404") as error:
            run_load(make_settings(data_url=server.url, download_retries=3, data_fallback=False))
    assert server.url in str(error.value) and not error.value.transient
    assert len(server.requests) == 1


def test_404_is_an_error_even_with_the_fallback(make_settings):
    with scripted_server(Answer(404, b"not here")) as server:
        settings = make_settings(data_url=server.url, download_retries=3)
        with pytest.raises(load.PermanentDownloadError, match=f"HTTP 404.*{NOT_USED}"):
            run_load(settings)
    assert len(server.requests) == 1 and run_folder_files(settings) == []


@pytest.mark.parametrize("answer, expected", [
    (Answer(body=b"<!DOCTYPE html><html><body>Error</body></html>", content_type="text/plain"), "HTML"),
    (Answer(body=b"<html>login</html>", content_type="text/html; charset=utf-8"), "HTML"),
    (Answer(body=b""), "empty"),
    (Answer(body=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"), "is not UTF-8"),
    (Answer(body=GOOD[:1000]), "truncated"),
    (Answer(body=GOOD[:5000], declared_length=len(GOOD)), "broke off after 5000 bytes"),
], ids=["html-body", "html-type", "empty", "binary", "truncated-csv", "truncated-transfer"])
def test_a_reachable_source_serving_garbage_is_an_error_even_with_the_fallback(make_settings, answer, expected):
    with scripted_server(answer) as server:
        settings = make_settings(data_url=server.url, download_retries=1)  # DATA_FALLBACK=true
        with pytest.raises(DataSourceError, match=f"{expected}.*{NOT_USED}"):
            run_load(settings)
    assert run_folder_files(settings) == []
    assert len(server.requests) == (2 if answer.declared_length else 1)  # only a broken transfer is retried


def test_server_down_after_every_retry_falls_back_and_records_why(make_settings):
    with scripted_server(Answer(503, b"busy")) as server:
        settings = make_settings(data_url=server.url, download_retries=1)
        summary = run_load(settings)
    assert summary["source"] == "bundled" and summary["sha256"] == BUNDLED_SHA256 and len(server.requests) == 2
    assert "HTTP 503" in loaded_info(settings)["fallback_reason"]
    assert "gave up after 2 attempts" in loaded_info(settings)["fallback_reason"]


def test_the_wait_between_attempts_doubles_up_to_its_bound(make_settings, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(load, "time", SimpleNamespace(sleep=waits.append))  # the server's own sleeps stay real
    with scripted_server(Answer(503, b"busy")) as server:
        settings = make_settings(data_url=server.url, download_retries=MAX_DOWNLOAD_RETRIES,
                                 download_backoff=MAX_BACKOFF_SECONDS / 4)
        assert run_load(settings)["source"] == "bundled"
    assert len(server.requests) == MAX_DOWNLOAD_RETRIES + 1
    assert waits == [MAX_BACKOFF_SECONDS / 4, MAX_BACKOFF_SECONDS / 2] + [MAX_BACKOFF_SECONDS] * 8


def test_slow_server_times_out_and_retries(make_settings):
    with scripted_server(Answer(body=GOOD, delay=2.0)) as server:
        with pytest.raises(load.SourceUnreachableError, match="DOWNLOAD_TIMEOUT=0.3 s.*gave up after 2 attempts"):
            run_load(make_settings(data_url=server.url, download_timeout=0.3, download_retries=1,
                                   data_fallback=False))
        assert run_load(make_settings(data_url=server.url, download_timeout=0.3))["source"] == "bundled"
    assert len(server.requests) == 3


@pytest.mark.parametrize("url", [
    f"http://127.0.0.1:{free_port()}/BreastCancer.csv",  # connection refused
    "http://no-such-host.invalid/BreastCancer.csv",  # DNS failure
], ids=["refused", "dns"])
def test_unreachable_source_uses_fallback_only_when_allowed(make_settings, url):
    assert run_load(make_settings(data_url=url))["source"] == "bundled"
    strict = make_settings(data_url=url, data_fallback=False)
    with pytest.raises(load.SourceUnreachableError, match="could not be read.*DATA_FALLBACK is off") as error:
        run_load(strict, "strict")
    assert error.value.transient
    assert run_folder_files(strict, "strict") == []


def test_expected_sha256_is_enforced(make_settings):
    settings = make_settings(data_sha256="0" * 64)
    with pytest.raises(DataSourceError, match=f"DATA_SHA256 expects {'0' * 64}"):
        run_load(settings)
    assert run_folder_files(settings) == []
    assert run_load(make_settings(data_sha256=BUNDLED_SHA256))["sha256"] == BUNDLED_SHA256


def test_missing_bundled_copy_is_a_clear_error(make_settings, tmp_path):
    settings = make_settings(data_url=f"http://127.0.0.1:{free_port()}/x.csv",
                             bundled_data_path=tmp_path / "nowhere.csv")
    with pytest.raises(DataSourceError, match="nowhere.csv cannot be read"):
        run_load(settings)


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_recorded(make_settings):
    with scripted_server(Answer(body=GOOD)) as server:
        url = server.url.replace("http://", "http://reader:s3cret-pw@") + "?token=tok-123#frag"
        settings = make_settings(data_url=url)
        run_load(settings)
    [request] = server.requests
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"reader:s3cret-pw").decode()
    assert request["path"] == "/BreastCancer.csv?token=tok-123"
    assert loaded_info(settings)["location"] == server.url


# --- the size limit (DOWNLOAD_MAX_BYTES) --------------------------------------------------------------------------

class EndlessBody(BaseHTTPRequestHandler):
    """Answers 200 with CSV lines and no Content-Length, for as long as the client reads."""

    protocol_version = "HTTP/1.0"
    requests: ClassVar[list[str]] = []
    sent: ClassVar[list[int]] = []  # bytes written per request, once the client hung up

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        line = GOOD.splitlines(keepends=True)[1] * 100
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:
                self.wfile.write(line)
                sent += len(line)
        except OSError:
            pass  # the client stopped reading
        self.sent.append(sent)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_body_above_the_limit_stops_the_transfer_and_writes_nothing(make_settings):
    with serving(EndlessBody) as httpd:
        settings = make_settings(data_url=f"http://127.0.0.1:{httpd.server_port}/big.csv",
                                 download_max_bytes=1_000_000, download_retries=2)
        with pytest.raises(load.DownloadTooLargeError, match=r"larger than DOWNLOAD_MAX_BYTES=1000000 \(stopped "
                                                              r"after 10\d{5} bytes\)"):
            run_load(settings)
        deadline = time.monotonic() + 10
        while not EndlessBody.sent and time.monotonic() < deadline:  # the server notices the hang-up on its own
            time.sleep(0.05)
    assert run_folder_files(settings) == []
    assert len(EndlessBody.requests) == 1  # not retried
    assert EndlessBody.sent and EndlessBody.sent[0] < 50 * 1024 * 1024  # the transfer was cut short


def test_a_too_large_content_length_is_refused_before_the_body_is_read(make_settings):
    with scripted_server(Answer(body=GOOD)) as server:
        settings = make_settings(data_url=server.url, download_max_bytes=len(GOOD) - 1)
        with pytest.raises(load.DownloadTooLargeError, match=f"DOWNLOAD_MAX_BYTES={len(GOOD) - 1} "
                                                              f"\\(Content-Length {len(GOOD)}\\)"):
            run_load(settings)
        assert run_folder_files(settings) == []
        assert run_load(make_settings(data_url=server.url, download_max_bytes=len(GOOD)))["rows"] == 699


def test_a_local_file_above_the_limit_is_refused(make_settings):
    with pytest.raises(load.DownloadTooLargeError, match=f"the file has {len(GOOD)} bytes"):
        run_load(make_settings(download_max_bytes=1000))


# --- the total deadline per attempt (DOWNLOAD_TIMEOUT) ------------------------------------------------------------

class Dripping(BaseHTTPRequestHandler):
    """Sends its answer one byte every 0.5 s: the headers too when `drip_headers`."""

    drip_headers = False

    def do_GET(self) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode()
        if not self.drip_headers:
            self.wfile.write(head)
            head = b""
        try:
            for byte in head + GOOD:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client hung up

    def log_message(self, format: str, *args: object) -> None:
        pass


class DrippingHeaders(Dripping):
    drip_headers = True


@pytest.mark.parametrize("handler", [Dripping, DrippingHeaders], ids=["body", "headers"])
def test_a_dripping_server_is_cut_off_after_the_total_timeout(make_settings, handler):
    with serving(handler) as httpd:
        settings = make_settings(data_url=f"http://127.0.0.1:{httpd.server_port}/drip.csv", download_timeout=1.5,
                                 data_fallback=False)
        started = time.monotonic()
        with pytest.raises(load.SourceUnreachableError, match=r"no complete answer within DOWNLOAD_TIMEOUT=1.5 s"):
            run_load(settings)
        elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 5, f"the attempt took {elapsed:.1f} s"
    assert run_folder_files(settings) == []


def test_command_line_reports_errors_without_traceback(make_settings, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_URL", (tmp_path / "missing.csv").as_uri())
    monkeypatch.setenv("DATA_ALLOWED_DIRS", str(tmp_path))
    monkeypatch.setenv("DATA_FALLBACK", "false")
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DOWNLOAD_RETRIES", "0")
    assert cli_main(["load", "--run-id", "cli"]) == 1
    assert cli_main(["load", "--run-id", "cli"]) == 1  # a retry fails the same way
    assert "missing.csv does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "cli" / catalog.RAW).exists()
