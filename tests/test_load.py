"""The load step against a real HTTP server on 127.0.0.1, and with the source unreachable."""

from __future__ import annotations

import json

import pytest

from etl import artifacts, load
from tests.conftest import BUNDLED_CSV, BUNDLED_SHA256
from tests.http_support import Answer, free_port, scripted_server
from utils.errors import DataSourceError

GOOD = BUNDLED_CSV.read_bytes()


def loaded_info(settings) -> dict:
    return json.loads((settings.runs_dir / settings.run_id / artifacts.LOAD_INFO).read_text())


def test_good_csv_is_loaded_with_its_checksum_and_row_count(make_settings):
    with scripted_server(Answer(body=GOOD)) as server:
        settings = make_settings(data_url=server.url)
        summary = load.run(settings)
    assert summary["source"] == "url" and summary["rows"] == 699 and summary["sha256"] == BUNDLED_SHA256
    assert (settings.runs_dir / "local" / artifacts.RAW).read_bytes() == GOOD
    assert loaded_info(settings)["location"] == server.url
    assert len(server.requests) == 1


def test_server_error_then_success_is_retried(make_settings):
    with scripted_server(Answer(500, b"oops"), Answer(503, b"busy"), Answer(body=GOOD)) as server:
        summary = load.run(make_settings(data_url=server.url, download_retries=3, data_fallback=False))
    assert summary["source"] == "url" and len(server.requests) == 3


def test_404_is_not_retried_and_strict_mode_fails_naming_the_url(make_settings):
    with scripted_server(Answer(404, b"not here")) as server:
        with pytest.raises(DataSourceError, match=r"HTTP 404.*DATA_FALLBACK is off") as error:
            load.run(make_settings(data_url=server.url, download_retries=3, data_fallback=False))
    assert server.url in str(error.value)
    assert len(server.requests) == 1


def test_404_falls_back_to_the_bundled_copy_and_records_why(make_settings):
    with scripted_server(Answer(404, b"not here")) as server:
        settings = make_settings(data_url=server.url)
        summary = load.run(settings)
    assert summary["source"] == "bundled" and summary["sha256"] == BUNDLED_SHA256
    assert "HTTP 404" in loaded_info(settings)["fallback_reason"]


@pytest.mark.parametrize("answer, expected", [
    (Answer(body=b"<!DOCTYPE html><html><body>Error</body></html>", content_type="text/plain"), "HTML"),
    (Answer(body=b"<html>login</html>", content_type="text/html; charset=utf-8"), "HTML"),
    (Answer(body=b""), "empty"),
    (Answer(body=GOOD[:1000]), "truncated"),
    (Answer(body=GOOD[:5000], declared_length=len(GOOD)), "broke off|truncated|could not be read"),
])
def test_a_body_that_is_not_the_csv_is_rejected(make_settings, answer, expected):
    with scripted_server(answer) as server:
        with pytest.raises(DataSourceError, match=expected):
            load.run(make_settings(data_url=server.url, data_fallback=False))


def test_slow_server_times_out_and_retries(make_settings):
    with scripted_server(Answer(body=GOOD, delay=2.0)) as server:
        with pytest.raises(DataSourceError, match="gave up after 2 attempts"):
            load.run(make_settings(data_url=server.url, download_timeout=0.3, download_retries=1,
                                   data_fallback=False))
    assert len(server.requests) == 2


def test_unreachable_source_uses_fallback_only_when_allowed(make_settings):
    url = f"http://127.0.0.1:{free_port()}/BreastCancer.csv"
    assert load.run(make_settings(data_url=url))["source"] == "bundled"
    strict = make_settings(data_url=url, data_fallback=False, run_id="strict")
    with pytest.raises(DataSourceError, match="Connection refused|could not be read"):
        load.run(strict)
    assert not (strict.runs_dir / "strict" / artifacts.RAW).exists()


def test_expected_sha256_is_enforced(make_settings):
    with pytest.raises(DataSourceError, match="DATA_SHA256 expects 0000"):
        load.run(make_settings(data_sha256="0000"))
    assert load.run(make_settings(data_sha256=BUNDLED_SHA256))["sha256"] == BUNDLED_SHA256


def test_missing_bundled_copy_is_a_clear_error(make_settings, tmp_path):
    settings = make_settings(data_url=f"http://127.0.0.1:{free_port()}/x.csv",
                             bundled_data_path=tmp_path / "nowhere.csv")
    with pytest.raises(DataSourceError, match="nowhere.csv cannot be read"):
        load.run(settings)


def test_command_line_reports_errors_without_traceback(make_settings, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_URL", (tmp_path / "missing.csv").as_uri())
    monkeypatch.setenv("DATA_FALLBACK", "false")
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DOWNLOAD_RETRIES", "0")
    assert load.main(["--run-id", "cli"]) == 1
    assert load.main(["--run-id", "cli"]) == 1  # a retry fails the same way
    assert not (tmp_path / "runs" / "cli" / artifacts.RAW).exists()
