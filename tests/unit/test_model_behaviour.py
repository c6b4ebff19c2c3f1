"""Behavioural tests of the candidate models (beside the code and data tests, as Made-With-ML keeps them): each
candidate fitted on the bundled training rows as the train step builds it, then checked for what it must not do:
let a row's Id or position change its prediction, score differently after a save and reload, or lower the risk of
malignancy as a cytology score rises (etl/clinical_direction.py). And the constrained logistic regression
(etl/nonnegative_logistic.py) against sklearn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from etl import contract, preprocess
from etl.candidates import CANDIDATE_NAMES, REGISTRY
from etl.clinical_direction import direction_check
from etl.dataset import FEATURES, ID, SCORE_MAX, features_and_labels
from etl.modelling import build_pipeline
from etl.nonnegative_logistic import NonNegativeLogisticRegression
from etl.predict import PublishedModel, predict
from etl.unique_rows import UniqueRowsClassifier
from tests.support.data import BUNDLED_CSV
from utils.files import load_model, write_model_atomic

SEED = 42


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    """Every bundled row, typed as the data contract reads them."""
    return contract.read_typed(BUNDLED_CSV)[0]


@pytest.fixture(scope="module")
def training_rows(bundled: pd.DataFrame) -> pd.DataFrame:
    """The bundled training split, as preprocess makes it with the default settings."""
    return preprocess.split(bundled, test_size=0.2, seed=SEED)[0]


@pytest.fixture(scope="module")
def fitted(training_rows: pd.DataFrame) -> dict[str, Pipeline]:
    """Every candidate's pipeline fitted on the training rows."""
    features, labels, _ = features_and_labels(training_rows)
    return {name: build_pipeline(name, SEED).fit(features, labels) for name in CANDIDATE_NAMES}


def features_against_direction(model: Pipeline, rows: pd.DataFrame) -> list[str]:
    return [record["feature"] for record in direction_check(model, rows) if not record["follows_clinical_direction"]]


def scaled_training_rows(training_rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The training rows as the logistic regression sees them (imputed, scaled), their labels and column names."""
    features, labels, _ = features_and_labels(training_rows)
    preprocessing = build_pipeline("logreg", SEED)[:-1]
    return preprocessing.fit_transform(features), labels, list(preprocessing.get_feature_names_out())


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_neither_a_rows_id_nor_its_position_changes_its_prediction(fitted, bundled, name):
    published = PublishedModel(name=name, run_id="behaviour", sha256="", threshold=0.5, source="test",
                               model=fitted[name], profile=None)
    shuffled = bundled.sample(frac=1, random_state=0)
    renamed = shuffled.assign(**{ID: np.arange(len(shuffled)) + 10_000_000})
    expected = predict(published, bundled).set_index(bundled.index)
    for variant in (shuffled, renamed):
        scored = predict(published, variant).set_index(variant.index).loc[bundled.index]
        # to the last bits only: BLAS may sum a row's products in another order within another batch
        np.testing.assert_allclose(scored["probability_malignant"], expected["probability_malignant"], rtol=1e-12)
        np.testing.assert_array_equal(scored["predicted_class"], expected["predicted_class"])


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_a_saved_model_scores_the_same_after_reloading(fitted, bundled, tmp_path: Path, name):
    path = tmp_path / "model.joblib"
    digest = write_model_atomic(fitted[name], path)
    reloaded = load_model(path.read_bytes(), digest, path, "the test", "it was written", "rerun the test")
    features = bundled[FEATURES].astype("float64")
    np.testing.assert_array_equal(reloaded.predict_proba(features), fitted[name].predict_proba(features))


@pytest.mark.parametrize("name", [name for name in CANDIDATE_NAMES if REGISTRY[name].monotone])
def test_a_constrained_candidate_never_lowers_the_risk_as_a_score_rises(fitted, bundled, name):
    assert features_against_direction(fitted[name], bundled) == []


@pytest.mark.parametrize("name", [name for name in CANDIDATE_NAMES if not REGISTRY[name].monotone])
def test_an_unconstrained_candidate_is_checked_feature_by_feature(fitted, bundled, name):
    records = direction_check(fitted[name], bundled)
    assert [record["feature"] for record in records] == FEATURES
    assert all(0 < record["rows_checked"] <= len(bundled) and record["expected"] == "non-decreasing"
               for record in records)


def test_the_check_flags_the_weighted_unconstrained_logistic_regression_for_epithelial_cell_size(
        training_rows, bundled):
    features, labels, _ = features_and_labels(training_rows)
    audited = build_pipeline("logreg", SEED).set_params(
        model__estimator=LogisticRegression(max_iter=1000, class_weight="balanced")).fit(features, labels)
    flagged = [record for record in direction_check(audited, bundled) if not record["follows_clinical_direction"]]
    assert [record["feature"] for record in flagged] == ["Epith.c.size"]
    assert flagged[0]["rows_lowered"] == flagged[0]["rows_checked"] > 0 and flagged[0]["largest_drop"] > 0.001


def test_the_check_skips_missing_and_top_scores(fitted, bundled):
    records = {record["feature"]: record for record in direction_check(fitted["logreg"], bundled)}
    for feature in ("Bare.nuclei", "Mitoses"):  # the column with missing cells; one with rows at 10
        assert records[feature]["rows_checked"] == int((bundled[feature] < SCORE_MAX).sum())


@pytest.mark.parametrize("sample_weight", [None, "varied"])
def test_with_no_negative_coefficient_at_the_optimum_it_is_sklearns_logistic_regression(sample_weight):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 4))
    labels = (values @ [1.0, 2.0, 0.5, 0.3] + rng.normal(size=500) > 0).astype(int)
    weights = None if sample_weight is None else rng.uniform(0.5, 3.0, size=500)
    constrained = NonNegativeLogisticRegression().fit(values, labels, sample_weight=weights)
    reference = LogisticRegression(tol=1e-10, max_iter=10_000).fit(values, labels, sample_weight=weights)
    assert (reference.coef_ > 0).all()
    np.testing.assert_allclose(constrained.coef_, reference.coef_, atol=1e-5)
    np.testing.assert_allclose(constrained.intercept_, reference.intercept_, atol=1e-5)
    np.testing.assert_allclose(constrained.predict_proba(values), reference.predict_proba(values), atol=1e-5)
    np.testing.assert_array_equal(constrained.predict(values), reference.predict(values))


def test_on_the_bundled_rows_the_epithelial_cell_size_is_held_at_zero_and_the_rest_stay_positive(training_rows):
    values, labels, names = scaled_training_rows(training_rows)
    assert LogisticRegression().fit(values, labels).coef_[0][names.index("Epith.c.size")] < 0
    coefficients = dict(zip(names, NonNegativeLogisticRegression().fit(values, labels).coef_[0], strict=True))
    assert coefficients.pop("Epith.c.size") == 0
    assert all(coefficient > 0.1 for coefficient in coefficients.values())


def test_fitted_on_the_weighted_distinct_rows_it_is_the_fit_on_every_row(training_rows):
    values, labels, _ = scaled_training_rows(training_rows)
    compressed = UniqueRowsClassifier(NonNegativeLogisticRegression()).fit(values, labels)
    every_row = NonNegativeLogisticRegression().fit(values, labels)
    assert compressed.distinct_rows_ < len(labels) * 0.8
    np.testing.assert_allclose(compressed.estimator_.coef_, every_row.coef_, atol=1e-6)
    np.testing.assert_allclose(compressed.estimator_.intercept_, every_row.intercept_, atol=1e-6)


def test_it_keeps_any_two_labels_and_refuses_one_or_three(training_rows):
    values, labels, _ = scaled_training_rows(training_rows)
    named = np.where(labels == 1, "malignant", "benign")
    model = clone(NonNegativeLogisticRegression()).fit(values, named)
    assert model.classes_.tolist() == ["benign", "malignant"]
    assert set(model.predict(values)) == {"benign", "malignant"}
    with pytest.raises(ValueError, match="1 class"):
        NonNegativeLogisticRegression().fit(values, np.zeros(len(values)))
    with pytest.raises(ValueError, match="Only binary classification"):
        NonNegativeLogisticRegression().fit(values, np.arange(len(values)) % 3)
