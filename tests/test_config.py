"""Settings: defaults, precedence (override > environment > .env > default), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.config import PROJECT_ROOT, Settings, load_settings, read_env_file, settings_help
from utils.errors import ConfigError


def test_defaults_need_no_environment(tmp_path):
    settings = load_settings(env={}, env_file=tmp_path / "none.env")
    assert settings == Settings()
    assert settings.model == "logreg" and settings.data_fallback is True and settings.seed == 42
    assert settings.bundled_data_path == PROJECT_ROOT / "data" / "BreastCancer.csv"


def test_environment_beats_env_file_and_overrides_beat_both(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nexport SEED=7\nMODEL="svm"\nTEST_SIZE=0.3\nUNRELATED=x\n')
    settings = load_settings(env={"SEED": "11"}, env_file=env_file, test_size=0.25)
    assert (settings.seed, settings.model, settings.test_size) == (11, "svm", 0.25)


@pytest.mark.parametrize("variable, value, expected", [
    ("SEED", "forty", "SEED='forty' is invalid: expected int"),
    ("TEST_SIZE", "1.5", "TEST_SIZE=1.5 is invalid: expected a number between 0 and 1"),
    ("MODEL", "xgboost", "MODEL='xgboost' is invalid: expected one of logreg, random_forest"),
    ("DATA_FALLBACK", "maybe", "DATA_FALLBACK='maybe' is invalid: expected bool"),
    ("STORAGE_BACKEND", "s3", "STORAGE_BACKEND='s3' is invalid"),
    ("MIN_RECALL", "2", "MIN_RECALL=2.0 is invalid"),
    ("CV_FOLDS", "1", "CV_FOLDS=1 is invalid"),
    ("RUN_STARTED_AT", "2026-01-01T00:00:00", "RUN_STARTED_AT='2026-01-01T00:00:00' is invalid"),
    ("SEED", "-1", "SEED=-1 is invalid: expected an integer from 0 to 4294967295"),
    ("SEED", "4294967296", "SEED=4294967296 is invalid"),
    ("DATA_URL", "ftp://example.org/BreastCancer.csv", "DATA_URL='ftp://example.org/BreastCancer.csv' is invalid: "
                                                        "expected an http://, https:// or file:// URL"),
    ("DATA_URL", "data/BreastCancer.csv", "DATA_URL='data/BreastCancer.csv' is invalid"),
    ("DATA_URL", "file://otherhost/etc/passwd", "DATA_URL='file://otherhost/etc/passwd' is invalid: expected "
                                                 "file:///<absolute path>"),
    ("DATA_URL", "http://example.org:port/x.csv", "DATA_URL='<an unparseable URL>' is invalid"),
    ("DOWNLOAD_MAX_BYTES", "0", "DOWNLOAD_MAX_BYTES=0 is invalid: expected a positive integer"),
])
def test_bad_value_names_the_variable(variable, value, expected, tmp_path):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env={variable: value}, env_file=tmp_path / "none.env")


def test_relative_paths_are_relative_to_the_project(tmp_path):
    settings = load_settings(env={"RUNS_DIR": "elsewhere/runs", "RESULTS_DIR": str(tmp_path)},
                             env_file=tmp_path / "none.env")
    assert settings.runs_dir == PROJECT_ROOT / "elsewhere" / "runs" and settings.results_dir == tmp_path


def test_replace_parses_strings_and_rejects_unknown_names():
    settings = Settings().replace(test_size="0.4", data_fallback="false")
    assert settings.test_size == 0.4 and settings.data_fallback is False
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings().replace(colour="blue")


def test_malformed_env_file_line_is_reported_with_its_number(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SEED=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        read_env_file(env_file)


def test_every_setting_is_documented_in_env_example_and_readme():
    variables = [variable for variable, _, _ in settings_help()]
    for document in ("README.md", ".env.example"):
        text = (PROJECT_ROOT / document).read_text(encoding="utf-8")
        undocumented = [v for v in variables if v not in text]
        assert not undocumented, f"{document} does not mention {undocumented}"


def test_public_dict_is_json_ready():
    values = Settings().public_dict()
    assert values["RUNS_DIR"] == str(PROJECT_ROOT / "data" / "runs")
    assert all(not isinstance(v, Path) for v in values.values())


def test_seed_bounds_are_what_numpy_accepts(tmp_path):
    import numpy as np

    for seed in (0, 2**32 - 1):
        np.random.RandomState(load_settings(env={"SEED": str(seed)}, env_file=tmp_path / "none.env").seed)


def test_allowed_dirs_are_a_comma_separated_list_relative_to_the_project(tmp_path):
    settings = load_settings(env={"DATA_ALLOWED_DIRS": f"data, {tmp_path},"}, env_file=tmp_path / "none.env")
    assert settings.data_allowed_dirs == (PROJECT_ROOT / "data", tmp_path)
    assert settings.public_dict()["DATA_ALLOWED_DIRS"] == f"{PROJECT_ROOT / 'data'},{tmp_path}"
    assert settings.replace(run_id="x").data_allowed_dirs == settings.data_allowed_dirs
    assert load_settings(env={"DATA_ALLOWED_DIRS": ""}, env_file=tmp_path / "none.env").data_allowed_dirs == ()
