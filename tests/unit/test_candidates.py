"""The candidate registry (etl/candidates.py): the settings' choices and their documentation come from it, the
distinct-rows mark decides how etl/modelling.py fits a candidate, and a new model is one entry. That building the
registry imports no estimator is checked where it matters, by the DAG file's parse-time import test (test_dag.py)."""

from __future__ import annotations

from typing import get_args

import joblib
import pytest
from sklearn.naive_bayes import GaussianNB
from sklearn.utils.validation import has_fit_parameter

from etl import catalog, modelling
from etl.candidates import CANDIDATE_NAMES, REGISTRY, Candidate
from etl.pipeline import execute_step
from etl.steps import STEP
from etl.unique_rows import UniqueRowsClassifier
from tests.support.data import open_run
from utils.config import Candidate as CandidateSetting
from utils.config import Settings


def test_the_settings_offer_every_registered_candidate_in_order_and_describe_each():
    assert get_args(CandidateSetting) == CANDIDATE_NAMES == tuple(REGISTRY)
    assert Settings().candidates == CANDIDATE_NAMES
    description = Settings.model_fields["candidates"].description
    assert all(f"{name} ({entry.description}" in description for name, entry in REGISTRY.items())


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_a_candidate_is_fitted_on_the_distinct_rows_exactly_when_marked_and_then_takes_weights(name):
    classifier = modelling.make_classifier(name, seed=0)
    assert isinstance(classifier, UniqueRowsClassifier) == REGISTRY[name].distinct_rows
    if REGISTRY[name].distinct_rows:  # its counts are passed as sample weights
        assert has_fit_parameter(classifier.estimator, "sample_weight")


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_no_candidate_weights_the_classes(name):
    """The operating threshold sets the sensitivity; weighted classes would overstate every risk."""
    parameters = REGISTRY[name].build(0).get_params(deep=True)
    assert all(value is None for key, value in parameters.items() if key.endswith("class_weight"))


def test_an_unknown_candidate_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown candidate 'xgboost'"):
        modelling.make_classifier("xgboost", seed=0)


@pytest.mark.parametrize("distinct_rows", [False, True])
def test_a_fifth_candidate_is_one_entry_and_trains_as_the_others_do(make_settings, monkeypatch, distinct_rows):
    monkeypatch.setitem(REGISTRY, "naive_bayes", Candidate(lambda seed: GaussianNB(), distinct_rows=distinct_rows,
                                                           description="Gaussian naive Bayes"))
    settings = make_settings()
    run = open_run(settings, "fifth")
    execute_step(STEP["load"], run, settings)
    execute_step(STEP["preprocess"], run, settings)
    summary = execute_step(STEP["train"], run, settings, "naive_bayes")
    assert summary["candidate"] == "naive_bayes" and 0.9 < summary["cv_roc_auc"] <= 1
    model = joblib.load(run.file(catalog.candidate_file("naive_bayes", catalog.CANDIDATE_MODEL)))
    fitted = model.named_steps["model"]
    assert isinstance(fitted.estimator_ if distinct_rows else fitted, GaussianNB)
    assert run.file(catalog.candidate_file("naive_bayes", catalog.OUT_OF_FOLD)).is_file()
