"""The model card's rendering (etl/model_card.py) on the facts of one small run: the model's specification for a
linear model and for a forest, the participant flow and distributions, the public settings only, escaping of every
value, the template found from any working folder, and a missing fact an error rather than a blank."""

from __future__ import annotations

import copy
import math
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import FixedThresholdClassifier

from etl import catalog, model_card
from etl.compare import card_facts
from etl.dataset import FEATURES, ID, TARGET, features_and_labels
from etl.modelling import build_pipeline
from etl.pipeline import run_all
from etl.run_folder import RunFolder
from tests.support.data import BUNDLED_CSV, open_run
from utils.config import Settings, load_settings
from utils.files import read_json

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&'


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunFolder, Settings]:
    """One quick run (logistic regression only, one CV repeat, few resamples) on the bundled data."""
    root = tmp_path_factory.mktemp("card")
    settings = load_settings(env_file=root / "none.env", data_url=BUNDLED_CSV.as_uri(), runs_dir=root / "runs",
                             results_dir=root / "results", storage_backend="local", candidates="logreg",
                             cv_repeats=1, bootstrap_replicates=200)
    run = open_run(settings, "card")
    run_all(run, settings)
    return run, settings


@pytest.fixture(scope="module")
def facts(finished: tuple[RunFolder, Settings]) -> dict[str, Any]:
    """The card's facts, as compare gathers them."""
    run, settings = finished
    return card_facts(run, read_json(run.file(catalog.COMPARISON)), settings)


def fitted(run: RunFolder, candidate: str) -> FixedThresholdClassifier:
    """The candidate's pipeline fitted on the run's training rows, saved as select saves it."""
    features, labels, _ = features_and_labels(pd.read_csv(run.file(catalog.TRAIN)))
    pipeline = build_pipeline(candidate, seed=0).fit(features, labels)
    return FixedThresholdClassifier(FrozenEstimator(pipeline), threshold=0.3).fit(features, labels)


def test_a_linear_model_is_specified_by_its_coefficients_and_odds_ratios(finished):
    model = fitted(finished[0], "logreg")
    specification = model_card.model_specification(model)
    pipeline = model.estimator.estimator
    estimator = pipeline.named_steps["model"].estimator_
    assert specification["classifier"] == "NonNegativeLogisticRegression"
    assert specification["wrapped"] == "UniqueRowsClassifier"
    assert specification["intercept"] == pytest.approx(estimator.intercept_[0])
    assert [row["feature"] for row in specification["coefficients"]] == list(pipeline[:-1].get_feature_names_out())
    for row, coefficient, scale in zip(specification["coefficients"], estimator.coef_.ravel(),
                                       pipeline.named_steps["scale"].scale_, strict=True):
        assert row["odds_ratio"] == pytest.approx(math.exp(coefficient))
        assert row["odds_ratio_per_step"] == pytest.approx(math.exp(coefficient / scale))
    assert specification["imputed"] == {"Bare.nuclei": 1.0}  # the training rows' median


def test_a_forest_has_no_coefficients_and_the_card_says_what_is_reported_instead(finished, facts):
    specification = model_card.model_specification(fitted(finished[0], "random_forest"))
    assert specification["coefficients"] is None and specification["wrapped"] is None
    html = model_card.render(facts | {"specification": specification})
    assert 'id="no-coefficients"' in html and "not reported" in html and 'id="coefficients"' not in html


def test_the_flow_and_distributions_count_each_split():
    train = pd.DataFrame({ID: [1, 1, 2, 3], TARGET: [1, 1, 0, 0], **{name: [1, 2, 3, 4] for name in FEATURES}})
    test = pd.DataFrame({ID: [4, 5, 6], TARGET: [1, 0, 0], **{name: [10, np.nan, 8] for name in FEATURES}})
    flow = model_card.participant_flow({"rows": 7}, {"duplicates_dropped": 1},
                                       {"violation_count": 0, "class_counts": {"0": 4, "1": 3},
                                        "missing_values": {"Bare.nuclei": 1}, "repeated_ids": 1}, train, test)
    assert flow["train"] == {"rows": 4, "ids": 3, "malignant": 2, "benign": 2}
    assert flow["test"] == {"rows": 3, "ids": 3, "malignant": 1, "benign": 2}
    distributions = model_card.predictor_distributions(train, test)
    assert [row["feature"] for row in distributions] == FEATURES
    assert distributions[0]["train"] == {"mean": 2.5, "std": pytest.approx(1.2910, abs=1e-4), "missing": 0}
    assert distributions[0]["test"] == {"mean": 9.0, "std": pytest.approx(math.sqrt(2)), "missing": 1}


def test_only_the_public_settings_the_card_states_are_taken():
    public = {name: "x" for name in model_card.CARD_SETTINGS} | {"DATA_URL": "https://user:secret@example.org/a.csv"}
    assert set(model_card.card_settings(public)) == set(model_card.CARD_SETTINGS)


def test_every_value_is_escaped(facts):
    hostile = copy.deepcopy(facts)
    hostile["metrics"]["model"] = HOSTILE
    hostile["metrics"]["candidates"].append({"name": HOSTILE, "status": "failed", "error": HOSTILE})
    hostile["comparison"]["reason"] = HOSTILE
    html = model_card.render(hostile)
    assert "<script" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;") >= 4


def test_the_template_is_found_from_any_working_folder(facts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_card.render(facts).startswith("<!DOCTYPE html>")


def test_a_missing_fact_is_an_error_not_a_blank(facts):
    incomplete = copy.deepcopy(facts)
    del incomplete["metrics"]["model_sha256"]
    with pytest.raises(jinja2.UndefinedError):
        model_card.render(incomplete)


def test_with_approval_required_the_card_says_the_decision_is_recorded_after_it(facts):
    html = model_card.render(facts | {"settings": facts["settings"] | {"APPROVAL_REQUIRED": True}})
    assert "(pending a reviewer's approval)" in html and "APPROVAL_REQUIRED=true" in html
    assert "<code>results/history.csv</code>" in html
