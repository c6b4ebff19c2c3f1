"""The settings the DAG file reads at parse time without the settings model (utils/dag_settings.py) agree with
the settings model (utils/config.py): the same spec, the same precedence, the same values, a bad value refused by
name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import dag_settings
from utils.config import VARIABLES, dag_spec, load_settings
from utils.errors import ConfigError

PARSE_TIME = tuple(dag_settings.SPEC["settings"])
TEXTS = {  # what someone may write for each parse-time setting: good, odd and bad
    "candidates": ["logreg", "logreg, linear_svm", " random_forest ,", "xgboost", "", "logreg,logreg"],
    "test_size": ["0.3", " 0.25 ", "1", "0", "inf", "nan", "abc", "1e-3"],
    "min_recall": ["0.8", "1", "1.5", "-0", "NaN"],
    "min_roc_auc": ["0.9", "2", ""],
    "promotion_metric": ["pr_auc", "brier_score", "auc"],
    "promotion_tolerance": ["0.01", "-0.2", "5", "-inf"],
    "storage_backend": ["local", "gdrive", "s3", "LOCAL"],
    "data_url": ["https://example.org/data.csv", "https://user:pw@example.org/d.csv?token=t", "ftp://example.org/x",
                 "not a url"],
    "approval_required": ["true", "False", "1", "yes", "maybe", ""],
    "approval_timeout": ["60", "1e300", "inf", "0", "30.5"],
    "data_allowed_dirs": ["data", "data,tests", ""],
    "incoming_dir": ["data/incoming", "/tmp/incoming", "", "  "],
}


def test_the_spec_file_is_what_the_settings_model_generates():
    assert json.loads(json.dumps(dag_spec())) == dag_settings.SPEC, (
        "utils/dag_settings.json is stale: python -m utils.config --dag-spec > utils/dag_settings.json")


def test_every_parse_time_setting_has_texts_to_try():
    assert set(TEXTS) == set(PARSE_TIME)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: st.sampled_from(texts) for name, texts in TEXTS.items()}),
       st.booleans())
def test_values_match_the_settings_model_or_are_refused_by_name(texts, in_env_file):
    env_file = Path(os.environ["ENV_FILE"])
    variables = {VARIABLES[name]: text for name, text in texts.items()}
    saved = {variable: os.environ.pop(variable, None) for variable in VARIABLES.values()}
    try:
        if in_env_file:
            env_file.write_text("".join(f"{variable}='{text}'\n" for variable, text in variables.items()))
        else:
            os.environ.update(variables)
        try:
            model = load_settings()
        except ConfigError:
            model = None
        try:
            parsed = dag_settings.current()
        except ConfigError as exc:
            assert any(f"setting {variable}=" in str(exc) for variable in variables), str(exc)
            assert model is None, f"the settings model accepts what the DAG refused: {exc}"
            return
        if model is not None:
            for name, value in parsed.items():
                expected = getattr(model, name)
                if name == "data_allowed_dirs":
                    assert [dag_settings.PROJECT_ROOT / folder for folder in value] == list(expected)
                elif name == "incoming_dir":
                    assert dag_settings.PROJECT_ROOT / value == expected
                elif name != "data_url":  # redacted in the DAG: compared in test_secrets
                    assert value == (list(expected) if isinstance(expected, tuple) else expected), name
    finally:
        env_file.unlink(missing_ok=True)
        for variable in variables:
            os.environ.pop(variable, None)
        os.environ.update({variable: value for variable, value in saved.items() if value is not None})


def test_the_environment_wins_over_the_env_file(monkeypatch):
    Path(os.environ["ENV_FILE"]).write_text("TEST_SIZE=0.4\nMIN_RECALL=0.8\n")
    monkeypatch.setenv("TEST_SIZE", "0.3")
    values = dag_settings.current()
    assert (values["test_size"], values["min_recall"]) == (0.3, 0.8) == (load_settings().test_size,
                                                                           load_settings().min_recall)


@pytest.mark.parametrize(("variable", "text"), [("APPROVAL_TIMEOUT", "inf"), ("APPROVAL_TIMEOUT", "1e300"),
                                                ("CANDIDATES", "logreg,xgboost"), ("TEST_SIZE", "nan"),
                                                ("APPROVAL_REQUIRED", "maybe"), ("INCOMING_DIR", " ")])
def test_a_value_that_cannot_work_is_refused_by_name(monkeypatch, variable, text):
    monkeypatch.setenv(variable, text)
    with pytest.raises(ConfigError, match=f"setting {variable}="):
        dag_settings.current()
