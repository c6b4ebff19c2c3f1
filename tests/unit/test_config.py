"""Settings: defaults, precedence (override > environment > .env > default), clear errors, and the table of
docs/settings.md generated from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.candidates import CANDIDATE_NAMES
from tests.support.data import BUNDLED_CSV
from utils.config import PROJECT_ROOT, VARIABLES, Settings, env_example, load_settings, markdown_table
from utils.errors import ConfigError


def test_defaults_need_no_environment(tmp_path):
    settings = load_settings(env_file=tmp_path / "none.env")
    assert settings == Settings()
    assert settings.candidates == CANDIDATE_NAMES
    assert settings.selection_metric == "roc_auc" and settings.target_recall == 0.97
    assert settings.data_fallback is True and settings.seed == 42
    assert settings.bundled_data_path == BUNDLED_CSV


def test_environment_beats_env_file_and_overrides_beat_both(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nexport SEED=7\nCANDIDATES="linear_svm, logreg"\nTEST_SIZE=0.3\nCV_FOLDS=3\n'
                        'UNRELATED=x\n')
    monkeypatch.setenv("SEED", "11")
    monkeypatch.setenv("TEST_SIZE", "0.35")
    settings = load_settings(env_file=env_file, test_size=0.25)
    assert (settings.seed, settings.candidates, settings.test_size, settings.cv_folds) == (
        11, ("linear_svm", "logreg"), 0.25, 3)


def test_env_file_comes_from_env_file_variable_by_default(tmp_path, monkeypatch):
    env_file = tmp_path / "chosen.env"
    env_file.write_text("SEED=5\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    assert load_settings().seed == 5


EVERY_CANDIDATE = ", ".join(map(repr, CANDIDATE_NAMES[:-1])) + f" or {CANDIDATE_NAMES[-1]!r}"  # as pydantic lists them


@pytest.mark.parametrize("variable, value, expected", [
    ("SEED", "forty", "SEED='forty' is invalid: input should be a valid integer"),
    ("TEST_SIZE", "1.5", "TEST_SIZE='1.5' is invalid: input should be less than 1"),
    ("TEST_SIZE", "0", "TEST_SIZE='0' is invalid: input should be greater than 0"),
    ("CANDIDATES", "logreg,xgboost",  # the bad item
     f"CANDIDATES='xgboost' is invalid: input should be {EVERY_CANDIDATE}"),
    ("CANDIDATES", " , ", f"CANDIDATES=' , ' is invalid: expected at least one of {', '.join(CANDIDATE_NAMES)}"),
    ("CANDIDATES", "logreg,svm", "CANDIDATES='svm' is invalid: input should be 'logreg'"),
    ("CANDIDATES", "logreg,linear_svm,logreg", "CANDIDATES='logreg,linear_svm,logreg' is invalid: expected each "
                                               "candidate once, got logreg more than once"),
    ("SELECTION_METRIC", "recall", "SELECTION_METRIC='recall' is invalid: input should be 'roc_auc' or 'pr_auc'"),
    ("TARGET_RECALL", "0", "TARGET_RECALL='0' is invalid: input should be greater than 0"),
    ("DATA_FALLBACK", "maybe", "DATA_FALLBACK='maybe' is invalid: input should be a valid boolean"),
    ("STORAGE_BACKEND", "s3", "STORAGE_BACKEND='s3' is invalid: input should be 'local', 'gdrive' or 'auto'"),
    ("MIN_RECALL", "2", "MIN_RECALL='2' is invalid: input should be less than or equal to 1"),
    ("CV_FOLDS", "1", "CV_FOLDS='1' is invalid: input should be greater than or equal to 2"),
    ("SEED", "-1", "SEED='-1' is invalid: input should be greater than or equal to 0"),
    ("SEED", "4294967296", "SEED='4294967296' is invalid: input should be less than or equal to 4294967295"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is invalid: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("DATA_URL", "ftp://example.org/BreastCancer.csv", "DATA_URL='ftp://example.org/Breast…' is invalid: "
                                                        "expected an http://, https:// or file:// URL"),
    ("DATA_URL", "data/BreastCancer.csv", "DATA_URL='data/BreastCancer.csv' is invalid: expected an http://"),
    ("DATA_URL", "file://otherhost/etc/passwd", "DATA_URL='file://otherhost/etc/pas…' is invalid: expected "
                                                 "file:///<absolute path>"),
    ("DATA_URL", "http://example.org:port/x.csv", "DATA_URL='<an unparseable URL>' is invalid"),
    ("DATA_URL", "https://u:pw-9@example.org:port/x?token=t", "DATA_URL='<an unparseable URL>' is invalid"),
    ("DOWNLOAD_MAX_BYTES", "0", "DOWNLOAD_MAX_BYTES='0' is invalid: input should be greater than or equal to 1"),
])
def test_bad_value_names_the_variable(variable, value, expected, tmp_path, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings(env_file=tmp_path / "none.env")
    assert str(error.value).startswith(f"setting {expected}"), str(error.value)
    assert "pw-9" not in str(error.value)


def test_a_long_bad_value_is_shown_as_an_excerpt(tmp_path, monkeypatch):
    monkeypatch.setenv("SEED", "9" * 300)
    with pytest.raises(ConfigError, match=r"^setting SEED='9+…' is invalid") as error:
        load_settings(env_file=tmp_path / "none.env")
    assert "9" * 100 not in str(error.value)


def test_the_run_id_and_start_are_not_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RUN_ID", "from-env")
    monkeypatch.setenv("RUN_STARTED_AT", "not a time")  # no longer read: no error
    settings = load_settings(env_file=tmp_path / "none.env")
    assert settings == Settings()
    assert not {"RUN_ID", "RUN_STARTED_AT"} & set(VARIABLES.values()) & set(settings.public_dict())
    with pytest.raises(ConfigError, match=r"unknown setting\(s\): run_id"):
        load_settings(env_file=tmp_path / "none.env", run_id="x")


def test_relative_paths_are_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_DIR", "elsewhere/runs")
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path))
    settings = load_settings(env_file=tmp_path / "none.env")
    assert settings.runs_dir == PROJECT_ROOT / "elsewhere" / "runs" and settings.results_dir == tmp_path


def test_overrides_parse_strings_and_unknown_names_are_rejected(make_settings, tmp_path):
    settings = make_settings(test_size="0.4", data_fallback="false")
    assert settings.test_size == 0.4 and settings.data_fallback is False
    assert make_settings().test_size == 0.2  # a new object each time: the first one is unchanged
    with pytest.raises(ConfigError, match=r"unknown setting\(s\): colour"):
        load_settings(env_file=tmp_path / "none.env", colour="blue")
    with pytest.raises(ConfigError, match=r"^setting TEST_SIZE='1' is invalid"):
        make_settings(test_size="1")


def test_settings_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        Settings().seed = 1  # type: ignore[misc]


def test_malformed_env_file_line_is_reported_with_its_number(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SEED=1\nthis is not a setting but a secret-looking line\nTEST_SIZE=0.3\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE, got 'this is not a setting bu…'"):
        load_settings(env_file=env_file)
    env_file.write_text("# a comment\nexport SEED=1\nCANDIDATES='linear_svm'\n")
    assert (load_settings(env_file=env_file).seed, load_settings(env_file=env_file).candidates) == (1, ("linear_svm",))


SETTINGS_PAGE = "docs/settings.md"  # the generated table; both READMEs link to it


def test_every_setting_is_documented_in_env_example_and_the_settings_page():
    for document in (SETTINGS_PAGE, ".env.example"):
        text = (PROJECT_ROOT / document).read_text(encoding="utf-8")
        undocumented = [v for v in VARIABLES.values() if v not in text]
        assert not undocumented, f"{document} does not mention {undocumented}"


def test_env_example_holds_every_setting_commented_out_at_its_default():
    """The pipeline's part of .env.example is utils.config's own text: a `.env` made from it sets nothing until its
    owner uncomments a line, and no default is written a second time by hand."""
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    assert env_example() in text
    assert all(f"\n# {variable}=" in text for variable in VARIABLES.values())


def test_env_example_does_not_present_the_run_id_as_a_setting():
    lines = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    assigned = {line.lstrip("# ").split("=")[0] for line in lines if re.match(r"^#? ?[A-Z][A-Z0-9_]*=", line)}
    assert set(VARIABLES.values()) <= assigned  # the pattern fits the file
    assert {"RUN_ID", "RUN_STARTED_AT"} & assigned == set()  # not read from .env (RUN_ID only from the environment)
    load_settings(env_file=PROJECT_ROOT / ".env.example")  # its values are valid settings (ConfigError otherwise)


def settings_table(document: str) -> list[list[str]]:
    """The rows (cells, header row excluded) of the first table under `## Every setting`."""
    text = (PROJECT_ROOT / document).read_text(encoding="utf-8")
    section = re.split(r"^## Every setting\n", text, flags=re.M)[1]
    lines = section.split("\n\n| ")[1].split("\n\n")[0].splitlines()
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_the_settings_page_holds_the_generated_settings_table():
    table = markdown_table()
    assert table in (PROJECT_ROOT / SETTINGS_PAGE).read_text(encoding="utf-8"), (
        f"{SETTINGS_PAGE}'s table is stale: replace it with the output of `python -m utils.config --markdown`")
    assert [row[0] for row in settings_table(SETTINGS_PAGE)] == [f"`{variable}`" for variable in VARIABLES.values()]


def test_the_generated_table_is_plain_markdown():
    rows = markdown_table().splitlines()
    assert rows[:2] == ["| variable | default | meaning |", "|---|---|---|"] and len(rows) == 2 + len(VARIABLES)
    for row in rows[2:]:
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 3 and all(cell.strip() for cell in cells), row
        assert "``" not in row, f"an empty code span shows as two backticks: {row}"
        assert not re.search(r"(?<!\\)<[A-Za-z]", row), f"read as an HTML tag: {row}"
    assert "| `DATA_SHA256` | empty |" in markdown_table() and "| `DATA_FALLBACK` | `true` |" in markdown_table()


@pytest.mark.parametrize("readme", ["README.md", "README.ru.md"])
def test_both_readmes_send_the_reader_to_the_settings_page(readme):
    assert f"]({SETTINGS_PAGE})" in (PROJECT_ROOT / readme).read_text(encoding="utf-8")


def test_public_dict_is_json_ready():
    values = Settings().public_dict()
    assert values["RUNS_DIR"] == str(PROJECT_ROOT / "data" / "runs")
    assert list(values) == list(VARIABLES.values())
    assert all(not isinstance(v, Path) for v in values.values())


def test_seed_bounds_are_what_numpy_accepts(tmp_path, monkeypatch):
    import numpy as np

    for seed in (0, 2**32 - 1):
        monkeypatch.setenv("SEED", str(seed))
        np.random.RandomState(load_settings(env_file=tmp_path / "none.env").seed)


def test_allowed_dirs_are_a_comma_separated_list_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ALLOWED_DIRS", f"data, {tmp_path},")
    settings = load_settings(env_file=tmp_path / "none.env")
    assert settings.data_allowed_dirs == (PROJECT_ROOT / "data", tmp_path)
    assert settings.public_dict()["DATA_ALLOWED_DIRS"] == f"{PROJECT_ROOT / 'data'},{tmp_path}"
    again = load_settings(env_file=tmp_path / "none.env", data_allowed_dirs=settings.data_allowed_dirs)
    assert again.data_allowed_dirs == settings.data_allowed_dirs  # parsed folders pass through unchanged
    monkeypatch.setenv("DATA_ALLOWED_DIRS", "")
    assert load_settings(env_file=tmp_path / "none.env").data_allowed_dirs == ()
