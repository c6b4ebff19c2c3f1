"""Shared fixtures: every test gets settings pointing at its own temporary folders and no `.env`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support.airflow_runs import migrate
from tests.support.data import BUNDLED_CSV, SETTING_VARIABLES, TEST_DATA
from utils.config import Settings, load_settings

# Property-based tests draw the same examples on every run (CI stays reproducible); `--hypothesis-profile=explore`
# draws new ones, to look for cases nobody has seen yet. No deadline: an example slowed by a busy 2-core machine is
# not a failure (the benches measure speed).
hypothesis_settings.register_profile("default", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", derandomize=False, deadline=None)
hypothesis_settings.load_profile("default")


@pytest.fixture(scope="session")
def migrated_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home whose SQLite database is migrated once per session; tests run in clones of it
    (`tests.support.airflow_runs.clone_home`), which cost a file copy instead of a migration."""
    return migrate(tmp_path_factory.mktemp("migrated_airflow_home"))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's shell or `.env`."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENV_FILE", str(tmp_path_factory.mktemp("env") / "absent.env"))


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings whose run and results folders live in the test's tmp_path; the data comes from the bundled
    file (as a file:// URL) unless overridden, and file:// URLs may also name tests/data."""

    def factory(**overrides: object) -> Settings:
        values = {"data_url": BUNDLED_CSV.as_uri(), "data_allowed_dirs": (BUNDLED_CSV.parent, TEST_DATA),
                  "runs_dir": tmp_path / "runs",
                  "results_dir": tmp_path / "results", "storage_backend": "local", "download_retries": 0,
                  "download_backoff": 0.0, "download_timeout": 5.0}
        values.update(overrides)
        return load_settings(env_file=Path(os.devnull), **values)

    return factory

