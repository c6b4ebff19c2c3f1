"""File helpers (atomic writes, JSON, checksums) and the run folder's name (`etl.run_folder.safe_run_id`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.run_folder import safe_run_id
from utils.errors import ArtifactError
from utils.files import (
    atomic_path,
    read_json,
    sha256_file,
    verify_checksum,
    write_json_atomic,
    write_text_atomic,
)


def test_safe_run_id_keeps_plain_ids_and_never_merges_different_ones():
    assert safe_run_id("local") == "local"
    airflow_id = "manual__2026-11-23T09:32:33.123456+00:00"
    cleaned = safe_run_id(airflow_id)
    assert "/" not in cleaned and ":" not in cleaned and "+" not in cleaned
    assert safe_run_id("a:b") != safe_run_id("a+b")
    assert safe_run_id("../etc") != ".._etc" and "/" not in safe_run_id("../etc")


def test_atomic_write_replaces_whole_file_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_checksums_and_json_round_trip(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    verify_checksum(path, sha256_file(path))
    path.write_text("changed")
    with pytest.raises(ArtifactError, match="a.json has sha256 .* was recorded"):
        verify_checksum(path, "0" * 64)
    with pytest.raises(ArtifactError, match="missing.json is missing"):
        read_json(tmp_path / "missing.json")


# --- issue 19: only regular files are read; names that enter stay names; no cell is a formula ----------------

@pytest.mark.parametrize("make", ["symlink", "fifo", "directory", "device", "socket"])
def test_only_a_regular_file_is_opened_and_the_rest_is_refused_unread(tmp_path, make):
    import os
    import socket

    from utils.errors import UnsafeFileError
    from utils.files import read_regular

    target = tmp_path / "secret.txt"
    target.write_text("SECRET")
    path = tmp_path / "entry"
    if make == "symlink":
        path.symlink_to(target)
    elif make == "fifo":
        os.mkfifo(path)  # nobody writes it: an open that blocked would hang here
    elif make == "directory":
        path.mkdir()
    elif make == "device":
        path = Path(os.devnull)
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    with pytest.raises(UnsafeFileError, match="expected a regular file") as error:
        read_regular(path)
    assert "SECRET" not in str(error.value)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing")
    assert read_regular(target) == b"SECRET"


@pytest.mark.parametrize(("cell", "written"), [("=1+1", "'=1+1"), ("-2+3", "'-2+3"), ("@SUM(1,2)", "'@SUM(1,2)"),
                                               ("+1", "+1"), ("-0.5", "-0.5"), ("\tx", "'\tx"), ("\r=1", "'\r=1"),
                                               ("manual__2026", "manual__2026"), ("'=1", "'=1"), (0.25, 0.25)])
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(cell, written):
    from utils.files import spreadsheet_cell

    assert spreadsheet_cell(cell) == written


@given(st.text())
def test_no_cell_starts_a_formula_unless_it_is_a_number_and_the_rule_is_idempotent(text):
    from utils.files import FORMULA_STARTS, spreadsheet_cell

    cell = spreadsheet_cell(text)
    assert cell in (text, f"'{text}") and spreadsheet_cell(cell) == cell
    if cell.startswith(FORMULA_STARTS):
        float(cell)  # only a number may start with + or -


@given(st.text(min_size=1, max_size=300).filter(lambda text: text.strip()))
def test_any_run_id_gives_one_bounded_published_name_or_is_refused_by_name(run_id):
    import tempfile
    from datetime import UTC, datetime

    from etl.run_folder import PUBLISHED_NAME, RunFolder, safe_run_id, short_run_id
    from utils.errors import ConfigError

    for name in (f"20261204_000000_{safe_run_id(run_id)}", f"20261204_000000_{short_run_id(run_id)}"):
        assert PUBLISHED_NAME.fullmatch(name) and len(name.encode()) <= 255
    with tempfile.TemporaryDirectory() as runs:
        try:
            run = RunFolder.open(Path(runs), run_id, datetime(2026, 12, 4, tzinfo=UTC))
        except ConfigError as exc:
            assert not run_id.isprintable() and "run id" in str(exc)
        else:
            assert run.path.parent == Path(runs)
