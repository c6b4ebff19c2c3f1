"""File helpers (atomic writes, JSON, checksums) and the run folder's name (`etl.run_folder.safe_run_id`)."""

from __future__ import annotations

import pytest

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
