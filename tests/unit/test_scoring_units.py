"""The pure parts of scoring: PSI on synthetic batches and what chance alone gives at a batch's size, the training
profile, the champion pointer, the samples' validation (Class optional) and the predictions file's format (the data
contract's fast path: test_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from etl import catalog, contract, drift
from etl.champion import read_pointer as read_champion
from etl.dataset import FEATURES, ID, TARGET
from etl.predict import read_samples, write_predictions
from tests.support.data import BUNDLED_CSV
from tests.support.scoring import batch
from utils.errors import ArtifactError, DataValidationError


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """A batch as normalise types it."""
    clean, violations = contract.normalise(frame.astype(str).apply(lambda c: c.replace("nan", "NA")))
    assert violations == []
    return clean


@pytest.fixture(scope="module")
def profile() -> dict:
    """The profile of the bundled rows, as preprocess writes it for training rows."""
    clean, _ = contract.read_typed(BUNDLED_CSV)
    return drift.training_profile(clean)


def test_the_profile_counts_each_score_and_the_missing_cells(profile):
    assert profile["rows"] == 699 and profile["bins"] == [*map(str, range(1, 11)), "missing"]
    assert profile["features"]["Bare.nuclei"]["missing"] == 16
    assert all(sum(counts.values()) == 699 for counts in profile["features"].values())
    assert 0.3 < profile["malignant_share"] < 0.4


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    even = dict.fromkeys(drift.BINS, 10)
    assert drift.psi(even, {name: 3 * count for name, count in even.items()}) == pytest.approx(0)
    small = {**even, "1": 14, "2": 6}
    large = {**even, "1": 40, "2": 0}
    assert 0 < drift.psi(even, small) < 0.1 < drift.psi(even, large)
    assert np.isfinite(drift.psi(even, {"5": 100}))  # empty bins count at PSI_EPSILON, not as infinity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_resampled_batch_does_not_drift_and_a_shifted_one_does(profile, seed):
    calm = drift.drift_summary(profile, typed(batch(400, seed)), 0.35, threshold=0.2)
    shifted = drift.drift_summary(profile, typed(batch(400, seed, drift=True)), 0.9, threshold=0.2)
    assert calm["drifted"] is False and calm["max_psi"] < 0.1 and calm["drifted_features"] == []
    assert shifted["drifted"] is True and set(shifted["drifted_features"]) == set(FEATURES)
    assert shifted["predicted_malignant_share"] == 0.9 and shifted["training_malignant_share"] == pytest.approx(
        profile["malignant_share"], abs=1e-6)


def test_one_feature_drifting_alone_is_named(profile):
    frame = batch(400, 4)
    frame["Mitoses"] = "10"
    summary = drift.drift_summary(profile, typed(frame), 0.35, threshold=0.2)
    assert summary["drifted_features"] == ["Mitoses"] and summary["max_psi_feature"] == "Mitoses"


@pytest.mark.parametrize("rows", [20, 50, 120])
def test_a_small_batch_like_the_training_rows_is_not_drifted_and_a_shifted_one_is(profile, rows):
    """A batch of 20 or 50 rows drawn from the training rows has PSIs far above DRIFT_PSI_THRESHOLD by chance alone
    (eleven bins; each rare bin it happens to miss adds about 0.1): PSI alone flagged every one of them. Against
    what chance gives at its size, at most FAMILY_ALPHA (0.01) of them may be: 1 of 20 at the most."""
    calm = [drift.drift_summary(profile, typed(batch(rows, seed)), 0.35, threshold=0.2) for seed in range(20)]
    shifted = [drift.drift_summary(profile, typed(batch(rows, seed, drift=True)), 0.9, threshold=0.2)
               for seed in range(20)]
    assert sum(summary["drifted"] for summary in calm) <= 1, [summary["drifted_features"] for summary in calm]
    if rows <= 50:
        assert all(summary["max_psi"] > 0.2 for summary in calm)  # above the threshold, within chance
    assert all(summary["drifted"] for summary in shifted), [summary["p_value"] for summary in shifted]


@pytest.mark.parametrize(("feature", "rows"), [("Cl.thickness", 50), ("Bare.nuclei", 120), ("Mitoses", 50)])
def test_the_p_value_is_uniform_for_batches_drawn_from_the_training_rows(profile, feature, rows):
    """200 batches of `rows` rows drawn from the training rows: the counts of p-values below 0.05 and below 0.5
    each lie in the 99% binomial range of 200 draws at that probability."""
    draws = 200
    frame = typed(batch(draws * rows, seed=5))  # 200 batches: consecutive slices of one resample
    expected = drift.bin_counts(profile["features"][feature])[np.newaxis]
    actual = np.stack([drift.bin_counts(drift.value_counts(frame[feature].iloc[start:start + rows]))
                       for start in range(0, draws * rows, rows)])
    null = np.repeat(drift.null_psi(expected, rows), draws, axis=0)
    p_values, _ = drift.chance(drift.psi_of_counts(expected, actual), null)
    for level in (0.05, 0.5):
        low, high = stats.binom.interval(0.99, draws, level)
        assert low <= (p_values < level).sum() <= high, (level, sorted(p_values)[:20])


def test_the_summary_gives_each_features_p_value_and_chance_psi_and_what_they_were_computed_on(profile):
    frame = typed(batch(50, 1))
    summary = drift.drift_summary(profile, frame, 0.35, threshold=0.2)
    assert (summary["rows"], summary["null_draws"], summary["family_alpha"]) == (50, 2000, 0.01)
    assert summary["alpha"] == pytest.approx(0.01 / 9)
    assert set(summary["p_value"]) == set(summary["chance_psi"]) == set(summary["psi"]) == set(FEATURES)
    for name in FEATURES:
        assert 1 / 2001 <= summary["p_value"][name] <= 1
        assert (summary["p_value"][name] < summary["alpha"]) == (summary["psi"][name] > summary["chance_psi"][name])
        assert summary["psi"][name] == drift.psi(profile["features"][name], drift.value_counts(frame[name]))
    assert min(summary["chance_psi"].values()) > 0.2  # 50 rows pass the threshold by chance alone


def test_the_same_batch_gets_the_same_verdict(profile):
    frame = typed(batch(50, 3))
    first = drift.drift_summary(profile, frame, 0.35, threshold=0.2)
    np.random.seed(7)  # the null does not use the global random state
    assert drift.drift_summary(profile, frame.copy(), 0.35, threshold=0.2) == first


def test_the_pushed_gauges_carry_each_features_chance_psi_beside_its_psi(profile):
    from etl.predict import drift_samples

    summary = {"rows": 50, "drift": drift.drift_summary(profile, typed(batch(50, 1)), 0.35, threshold=0.2)}
    pushed = {(sample.name, sample.labels.get("feature")): sample.value for sample in drift_samples(summary)}
    for series, key in (("scoring_feature_psi", "psi"), ("scoring_feature_chance_psi", "chance_psi")):
        assert {name: pushed[series, name] for name in FEATURES} == summary["drift"][key]


@given(training=st.lists(st.integers(0, 300), min_size=11, max_size=11).filter(any),
       batch_counts=st.lists(st.integers(0, 60), min_size=11, max_size=11),
       rank=st.integers(0, drift.NULL_DRAWS - 1), nudge=st.sampled_from([-1e-6, 0.0, 1e-6]))
def test_a_p_value_below_alpha_is_exactly_a_psi_above_chance_psi(training, batch_counts, rank, nudge):
    """For any training bins and batch size, and any PSI (one near a null draw, where ties are decided):
    p-value < FEATURE_ALPHA exactly when PSI > chance_psi; the null is the same on every call."""
    expected = np.array([training], dtype="float64")
    rows = sum(batch_counts)
    null = drift.null_psi(expected, rows)
    assert np.array_equal(null, drift.null_psi(expected, rows)) and null.shape == (1, drift.NULL_DRAWS)
    observed = drift.psi_of_counts(expected, np.array([batch_counts], dtype="float64"))
    assert observed[0] == drift.psi(dict(zip(drift.BINS, training, strict=True)),
                                    dict(zip(drift.BINS, batch_counts, strict=True)))
    for psi in (observed, np.round(np.sort(null, axis=1)[:, rank] + nudge, drift.PSI_DECIMALS)):
        p_values, chance_psi = drift.chance(psi, null)
        assert 1 / (1 + drift.NULL_DRAWS) <= p_values[0] <= 1
        assert (p_values[0] < drift.FEATURE_ALPHA) == (psi[0] > chance_psi[0])


def test_the_champion_pointer_is_read_or_absent_or_refused_when_incomplete(tmp_path):
    assert read_champion(tmp_path) is None
    pointer = {"name": "20261201_120000_x", "run_id": "x", "model_sha256": "a" * 64, "operating_threshold": 0.4}
    (tmp_path / catalog.CHAMPION).write_text(json.dumps(pointer))
    assert read_champion(tmp_path) == pointer
    (tmp_path / catalog.CHAMPION).write_text(json.dumps({"name": "n", "run_id": 3}))
    with pytest.raises(ArtifactError, match="missing or not text: run_id, model_sha256"):
        read_champion(tmp_path)


def test_samples_need_every_feature_and_id_but_not_class(tmp_path):
    path = tmp_path / "s.csv"
    batch(5, 1).to_csv(path, index=False)
    assert list(read_samples(path).columns) == [ID, *FEATURES]
    batch(5, 1, with_class=True).to_csv(path, index=False)
    assert list(read_samples(path).columns) == [ID, *FEATURES, TARGET]
    batch(5, 1).drop(columns=[ID]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"missing column\(s\) Id\. Expected exactly: Id, .*Mitoses, "
                                                  r"optionally Class"):
        read_samples(path)


@pytest.mark.parametrize(("cell", "problem"), [("0", "'0' fails in_range"), ("2.5", "'2.5' not a whole number"),
                                               ("NA", "'NA' missing value"), (" x", "'x' not a whole number")])
def test_a_bad_sample_cell_is_named_with_its_line_and_column(tmp_path, cell, problem):
    frame = batch(5, 1).astype(str)
    frame.loc[3, "Cell.size"] = cell
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=rf"line 5, column Cell.size: {problem}"):
        read_samples(path)


def test_predictions_are_written_with_six_decimals_and_quoted_identity(tmp_path):
    predictions = pd.DataFrame({ID: [7, 8], "probability_malignant": [0.1234567, 1.0], "predicted_class": [0, 1],
                                "operating_threshold": 0.5, "model_run_id": "manual__2026,x", "model_sha256": "f" * 64})
    text = write_predictions(predictions, tmp_path / "p.csv").read_text()
    assert text.splitlines() == [
        "Id,probability_malignant,predicted_class,operating_threshold,model_run_id,model_sha256",
        f'7,0.123457,0,0.5,"manual__2026,x",{"f" * 64}', f'8,1.000000,1,0.5,"manual__2026,x",{"f" * 64}']


def test_a_model_with_an_operating_threshold_labels_at_it_and_says_so(make_settings, tmp_path):
    """Contract 1: model.joblib may be a FixedThresholdClassifier; its threshold decides the labels."""
    import joblib
    from sklearn.model_selection import FixedThresholdClassifier

    from etl.dataset import features_and_labels
    from etl.modelling import build_pipeline
    from etl.predict import load_published, predict
    from utils.files import sha256_file, write_json_atomic

    clean, _ = contract.read_typed(BUNDLED_CSV)
    features, labels, _ = features_and_labels(clean)
    model = FixedThresholdClassifier(build_pipeline("logreg", 42), threshold=0.2).fit(features, labels)
    settings = make_settings()
    folder = settings.results_dir / "20261201_120000_threshold"
    folder.mkdir(parents=True)
    joblib.dump(model, folder / catalog.MODEL)
    write_json_atomic(folder / catalog.MANIFEST, {"run_id": "threshold",
                                                  "files": {catalog.MODEL: sha256_file(folder / catalog.MODEL)}})
    published = load_published(make_settings(predict_run=folder.name))
    assert published.threshold == 0.2 and published.profile is None and published.source == f"PREDICT_RUN={folder.name}"
    scored = predict(published, clean)
    assert (scored["predicted_class"] == (scored["probability_malignant"] >= 0.2)).all()
    assert scored["predicted_class"].sum() > (scored["probability_malignant"] >= 0.5).sum()


@given(st.text(max_size=300))
def test_a_batch_name_is_accepted_only_when_every_file_made_from_it_is_a_plain_bounded_name(name):
    from etl import scoring

    if scoring.BATCH_NAME.fullmatch(name):
        assert "/" not in name and scoring.CLAIM_MARK not in name and not name.startswith(".")
        longest = f"{name}{scoring.BATCH_SUFFIX}{scoring.CLAIM_MARK}{2**22}-{'f' * 12}"
        assert max(len(longest.encode()), len(f"{name}{scoring.REPORT_SUFFIX}".encode())) <= 255


FILE_NAME_CHARACTERS = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))


@given(st.lists(st.text(FILE_NAME_CHARACTERS, min_size=1, max_size=120), min_size=1, max_size=6, unique=True))
def test_any_entries_are_classified_and_the_unfit_set_aside_without_error(names):
    import os
    import tempfile

    from etl import scoring

    with tempfile.TemporaryDirectory() as folder:
        incoming = Path(folder)
        for name in names:
            entry = f"{name}{scoring.BATCH_SUFFIX}"
            if len(entry.encode()) <= 255:
                (incoming / entry).write_text("Id\n1\n")
        entries, unfit, _ = scoring.pending_entries(incoming)
        assert {entry for _, entry in entries} | {entry for _, entry, _ in unfit} == {
            entry for entry in os.listdir(incoming) if entry.endswith(scoring.BATCH_SUFFIX)}
        for where, entry, reason in unfit:
            scoring.set_aside(where, entry, incoming, reason)
        assert all(scoring.BATCH_NAME.fullmatch(entry.removesuffix(scoring.BATCH_SUFFIX))
                   for entry in os.listdir(incoming) if entry.endswith(scoring.BATCH_SUFFIX))
