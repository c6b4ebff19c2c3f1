"""Unit tests of the steps' pure functions on small frames built here."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot
from matplotlib.figure import Figure

from etl import champion, charts, comparison, metrics, modelling, preprocess, promote, select
from etl.candidates import CANDIDATE_NAMES
from etl.catalog import CV_METRICS
from etl.dataset import EXPECTED_COLUMNS, FEATURES, ID, TARGET, features_and_labels
from etl.folds import grouped_stratified_folds
from etl.quality_gate import quality_gate
from utils.errors import TrainingError
from utils.telemetry import Sample, build_registry, step_samples


def clean_frame(n_ids: int, rows_per_id: int = 1) -> pd.DataFrame:
    """`n_ids` Ids alternating benign/malignant, malignant rows with high scores."""
    records = []
    for i in range(n_ids):
        label = i % 2
        for _ in range(rows_per_id):
            records.append([1000 + i] + [(8 if label else 2) + (i % 3) - 1] * len(FEATURES) + [label])
    return pd.DataFrame(records, columns=EXPECTED_COLUMNS).astype("Int64")


def test_split_keeps_every_id_on_one_side_and_is_seeded():
    clean = clean_frame(40, rows_per_id=3)
    train_a, test_a = preprocess.split_by_id(clean, test_size=0.25, seed=1)
    train_b, test_b = preprocess.split_by_id(clean, test_size=0.25, seed=1)
    assert not set(train_a[ID]) & set(test_a[ID])
    assert test_a[ID].nunique() == 10 and len(test_a) == 30
    assert test_a.equals(test_b) and train_a.equals(train_b)
    assert set(test_a[TARGET]) == {0, 1}
    _, other_test = preprocess.split_by_id(clean, test_size=0.25, seed=2)
    assert set(other_test[ID]) != set(test_a[ID])


def test_exact_duplicates_go_but_repeated_ids_with_new_values_stay():
    clean = clean_frame(4)
    repeated_id = clean.iloc[[0]].assign(**{"Mitoses": 5})
    frame = pd.concat([clean, clean.iloc[[1]], repeated_id], ignore_index=True)
    deduplicated, dropped = preprocess.drop_exact_duplicates(frame)
    assert dropped == 1 and len(deduplicated) == 5


def test_dataset_problems_catch_a_single_class_and_an_empty_feature():
    benign_only = clean_frame(10)
    benign_only[TARGET] = 0
    assert any("malignant (1) has 0" in p for p in preprocess.dataset_problems(benign_only, 5))
    no_mitoses = clean_frame(20)
    no_mitoses["Mitoses"] = pd.NA
    assert preprocess.dataset_problems(no_mitoses, 5) == ["column Mitoses has no values at all"]


def test_pipeline_learns_imputation_from_training_rows_only():
    training = clean_frame(30)
    training.loc[0, "Bare.nuclei"] = pd.NA
    features, labels, _ = features_and_labels(training)
    pipeline = modelling.build_pipeline("logreg", seed=0).fit(features, labels)
    expected_median = training["Bare.nuclei"].dropna().astype(float).median()
    imputer = pipeline.named_steps["impute"].named_transformers_["median"]
    assert imputer.feature_names_in_.tolist() == ["Bare.nuclei"] and imputer.statistics_.tolist() == [expected_median]
    unseen = pd.DataFrame([[10.0] * len(FEATURES)], columns=FEATURES)
    pipeline.predict(unseen)
    assert imputer.statistics_.tolist() == [expected_median]


@pytest.mark.parametrize("candidate", CANDIDATE_NAMES)
def test_every_candidate_is_a_seeded_single_threaded_three_stage_pipeline(candidate):
    pipeline = modelling.build_pipeline(candidate, seed=3)
    assert [name for name, _ in pipeline.steps] == ["impute", "scale", "model"]
    parameters = pipeline.named_steps["model"].get_params()
    assert parameters.get("n_jobs", 1) in (1, None) and hasattr(pipeline, "predict_proba")
    features, labels, _ = features_and_labels(clean_frame(40))
    first, again = (modelling.build_pipeline(candidate, seed=3).fit(features, labels) for _ in range(2))
    assert (first.predict_proba(features) == again.predict_proba(features)).all()  # the seed fixes the model


def test_out_of_fold_scores_every_row_with_a_model_that_did_not_see_its_id():
    frame = clean_frame(30, rows_per_id=2)
    features, labels, groups = features_and_labels(frame)
    folds = grouped_stratified_folds(labels, groups, 3, 0)
    assert all(not set(groups[fit]) & set(groups[held]) for fit, held in folds)
    probabilities = modelling.out_of_fold(modelling.build_pipeline("logreg", 0), features, labels, folds)
    fold_scores = modelling.fold_scores(labels, probabilities, folds)
    assert not np.isnan(probabilities).any() and len(fold_scores) == 3
    summary = modelling.summarise(fold_scores)
    assert set(summary) == set(CV_METRICS)
    assert all(0.0 <= s["mean"] <= 1.0 and s["std"] >= 0.0 for s in summary.values())


def test_the_repeated_cross_validation_is_bounded_at_scale():
    assert modelling.affordable_repeats(5, 557) == 5  # the bundled training rows: every repeat
    assert modelling.affordable_repeats(5, 800_000) == 2  # a million-row data set's training rows
    assert modelling.affordable_repeats(5, 3_000_000) == 1  # the train step's own draw only


def test_a_candidate_that_cannot_fit_fails_for_good_naming_it():
    with pytest.raises(TrainingError, match="candidate linear_svm cannot be fitted on the 8 training rows") as error:
        modelling.fit(clean_frame(8), "linear_svm", 2, 0)  # 2 malignant rows per fold: too few to calibrate on 3
    assert error.value.transient is False


def test_score_uses_malignant_as_positive():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.7, 0.4, 0.8, 0.9])
    scores = metrics.score(labels, probabilities)
    assert scores["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert scores["recall"] == pytest.approx(2 / 3) and scores["precision"] == pytest.approx(2 / 3)
    assert scores["specificity"] == pytest.approx(2 / 3) and scores["roc_auc"] == pytest.approx(8 / 9)
    assert metrics.score(labels, probabilities, 0.4)["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 0, "tp": 3}


def test_the_operating_threshold_is_the_highest_that_reaches_the_target_recall():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probabilities = np.array([0.1, 0.3, 0.5, 0.65, 0.2, 0.6, 0.8, 0.9])
    assert metrics.operating_threshold(labels, probabilities, 0.75, confidence=0) == (0.6, True)
    assert metrics.operating_threshold(labels, probabilities, 0.74, confidence=0) == (0.6, True)
    assert metrics.operating_threshold(labels, probabilities, 1.0, confidence=0) == (0.2, True)
    assert metrics.operating_threshold(labels, probabilities, 0.5, confidence=0) == (0.8, True)
    # 4 malignant cases cannot show 75% recall with 95% confidence: every one of them is flagged instead
    assert metrics.operating_threshold(labels, probabilities, 0.75, confidence=0.95) == (0.2, False)


def test_the_recall_lower_bound_is_clopper_pearsons():
    bounds = metrics.recall_lower_bound(np.array([188, 189, 190]), 190, 0.95)
    assert bounds[2] == pytest.approx(0.05 ** (1 / 190))  # no miss: the bound solves p**n = 1 - confidence
    assert bounds[0] < 0.97 <= bounds[1] < bounds[2]  # of 190 malignant cases, 97% needs at most 1 miss
    assert metrics.recall_lower_bound(np.array([3]), 4, 0).tolist() == [0.75]


def trained(name: str, roc_auc: float) -> dict:
    return {"name": name, "status": "trained", "cv": {"roc_auc": {"mean": roc_auc, "std": 0.01}}}


def test_the_winner_is_the_best_and_a_tie_goes_to_the_earlier_candidate():
    failed = {"name": "random_forest", "status": "failed", "error": "MemoryError: "}
    assert select.winner([trained("logreg", 0.990), failed, trained("linear_svm", 0.9909)], "roc_auc") == "logreg"
    assert select.winner([trained("logreg", 0.990), trained("linear_svm", 0.9911)], "roc_auc") == "linear_svm"
    assert select.winner([failed, trained("linear_svm", 0.5)], "roc_auc") == "linear_svm"
    with pytest.raises(TrainingError, match="no candidate could be trained.*random_forest: MemoryError"):
        select.winner([failed], "roc_auc")


def interval(estimate: float, lower: float, upper: float) -> dict:
    return {"estimate": estimate, "lower": lower, "upper": upper}


def test_the_gate_decides_on_internal_lower_bounds_and_lets_the_test_veto_only_when_it_excludes_the_minimum(
        make_settings):
    settings = make_settings(min_recall=0.9, min_roc_auc=0.95)
    internal = {"recall": interval(0.97, 0.94, 0.99), "roc_auc": interval(0.99, 0.985, 0.995)}
    seed_19 = {"recall": interval(42 / 47, 0.769, 0.965), "roc_auc": interval(0.994, 0.985, 1.0)}  # passes
    assert quality_gate(seed_19, internal, settings)["passed"]
    weak_internal = {"recall": interval(0.97, 0.94, 0.99), "roc_auc": interval(0.93, 0.90, 0.96)}
    gate = quality_gate(seed_19, weak_internal, settings)
    assert gate["passed"] is False and len(gate["failures"]) == 1
    assert gate["failures"][0].startswith("roc_auc on the repeated out-of-fold probabilities of the training rows: "
                                          "the lower 95% bound 0.9000 < 0.9500 (MIN_ROC_AUC; estimate 0.9300")
    contradicted = {"recall": interval(30 / 47, 0.49, 0.77), "roc_auc": interval(0.99, 0.98, 1.0)}
    gate = quality_gate(contradicted, internal, settings)
    assert [(check["rows"], check["bound"]) for check in gate["checks"] if not check["passed"]] == [("test", "upper")]
    no_malignant = {"recall": {"estimate": None, "lower": None, "upper": None}, "roc_auc": interval(0.99, 0.98, 1.0)}
    gate = quality_gate(no_malignant, internal, settings)
    assert gate["passed"] is False and "upper 95% bound none" in gate["failures"][0]


CHART_LABELS = np.array([0, 0, 0, 1, 1, 1])
CHART_PROBABILITIES = np.array([0.1, 0.2, 0.7, 0.4, 0.8, 0.9])  # ROC-AUC 8/9, as in the scoring test above
CURVES = {"roc": charts.roc_curve, "precision_recall": charts.precision_recall_curve}


def confusion(counts: list[list[int]], caption: str = "logreg · run test") -> Figure:
    """The confusion chart of `counts` (rows actual, columns predicted) under this project's class names."""
    return charts.confusion_matrix(counts, ["benign (0)", "malignant (1)"], caption)


def pixels(data: bytes) -> np.ndarray:
    """The PNG's pixels as rows x columns x channels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def fits(figure: Figure) -> bool:
    """Whether everything the figure draws (titles, labels, legend, caption) lies inside its edges."""
    figure.canvas.draw()  # lays the figure out
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())
    width, height = figure.get_size_inches()
    return drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= width and drawn.y1 <= height


@pytest.mark.parametrize("curve", CURVES.values(), ids=CURVES.keys())
def test_curve_charts_are_reproducible_pngs_that_change_with_the_scores(curve):
    drawn = charts.png(curve(CHART_LABELS, CHART_PROBABILITIES, "logreg", "logreg · run test"))
    assert pixels(drawn).shape[:2] == (500, 550)
    assert charts.png(curve(CHART_LABELS, CHART_PROBABILITIES, "logreg", "logreg · run test")) == drawn
    assert charts.png(curve(CHART_LABELS, CHART_PROBABILITIES[::-1], "logreg", "logreg · run test")) != drawn
    assert pyplot.get_fignums() == []  # the figures never entered pyplot's registry of open figures


def test_roc_chart_names_the_model_and_its_auc_to_three_decimals():
    figure = charts.roc_curve(CHART_LABELS, CHART_PROBABILITIES, "logreg", "logreg · run test")
    [axes] = figure.axes
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["logreg (AUC = 0.889)",
                                                                            "Chance level (AUC = 0.5)"]
    assert axes.get_title() == "ROC curve"


def test_confusion_chart_writes_each_count_in_its_cell_under_the_class_names_reproducibly():
    figure = confusion([[50, 0], [25, 10]])
    [axes] = figure.axes
    cells = {(round(text.get_position()[1]), round(text.get_position()[0])): text.get_text() for text in axes.texts}
    assert cells == {(0, 0): "50", (0, 1): "0", (1, 0): "25", (1, 1): "10"}  # (row = actual, column = predicted)
    assert [label.get_text() for label in axes.get_yticklabels()] == ["benign (0)", "malignant (1)"]
    drawn = charts.png(figure)
    assert charts.png(confusion([[50, 0], [25, 10]])) == drawn != charts.png(confusion([[50, 1], [24, 10]]))


@pytest.mark.parametrize("chart", ["roc", "precision_recall", "confusion"])
def test_every_text_of_a_chart_fits_even_with_a_very_long_run_id(chart):
    caption = "logreg · run " + "manual__2026-12-01T09:30:00.123456+00:00" * 6
    figure = (confusion([[50, 0], [25, 10]], caption) if chart == "confusion"
              else CURVES[chart](CHART_LABELS, CHART_PROBABILITIES, "logreg", caption))
    assert fits(figure)


def test_telemetry_registry_names_and_labels():
    registry = build_registry([*step_samples("train", 1.5, succeeded=True),
                               Sample("model_metric", 0.9, {"metric": "recall"}),
                               Sample("model_metric", 0.99, {"metric": "roc_auc"})])
    assert registry.get_sample_value("pipeline_step_duration_seconds", {"step": "train"}) == 1.5
    assert registry.get_sample_value("pipeline_model_metric", {"metric": "roc_auc"}) == 0.99
    assert registry.get_sample_value("pipeline_step_last_success_timestamp_seconds", {"step": "train"}) > 0


def test_unreachable_pushgateway_never_fails_a_step(make_settings, caplog):
    from utils.telemetry import push_metrics

    settings = make_settings(pushgateway_url="http://127.0.0.1:9/")
    assert push_metrics(settings, "load", [Sample("rows_loaded", 1)]) is False
    assert "could not push metrics of step load" in caplog.text


# --- compare and promote: the decision --------------------------------------------------------------------------

def difference(value: float, lower: float, upper: float) -> dict:
    return {"difference": value, "lower": lower, "upper": upper, "challenger": 0.99, "champion": 0.99 - value,
            "clusters": 40}


def test_the_challenger_is_promoted_only_when_its_interval_shows_it_not_worse_than_the_margin(make_settings):
    rows = clean_frame(40)
    settings = make_settings(promotion_tolerance=0.01)
    first = comparison.decide(None, True, rows.head(0), settings)
    assert first == (True, "first champion: no model was promoted before")
    assert comparison.decide(difference(-0.002, -0.009, 0.004), False, rows, settings)[0] is True
    kept, reason = comparison.decide(difference(0.004, -0.021, 0.012), False, rows, settings)  # better, not shown
    assert not kept and reason == (
        "not shown non-inferior (roc_auc difference +0.0040, 95% CI [-0.0210, +0.0120], margin 0.01, on 40 rows "
        "(40 Ids); challenger 0.9900, champion 0.9860): the champion stays")
    lower = make_settings(promotion_metric="brier_score", promotion_tolerance=0.0)
    assert comparison.decide(difference(-0.01, -0.02, -0.001), False, rows, lower)[0] is True
    assert comparison.decide(difference(-0.01, -0.02, 0.001), False, rows, lower)[0] is False
    superior = make_settings(promotion_tolerance=-0.01)  # a negative margin asks for a better model
    assert comparison.decide(difference(0.03, 0.005, 0.05), False, rows, superior)[0] is False
    assert comparison.decide(difference(0.03, 0.011, 0.05), False, rows, superior)[0] is True


def test_too_few_rows_or_one_class_outside_the_champions_training_ids_keep_the_champion(make_settings):
    settings = make_settings()
    rows = clean_frame(40)
    for few in (rows.head(comparison.MIN_COMPARISON_ROWS - 1), rows[rows[TARGET] == 0]):
        kept, reason = comparison.decide(None, False, few, settings)
        assert not kept and reason.startswith("no fair comparison") and "the champion stays" in reason


def test_promotion_needs_compares_choice_then_the_reviewers_approval(make_settings):
    chosen, kept = {"decision": "promote", "reason": "better"}, {"decision": "keep", "reason": "worse"}
    settings = make_settings()
    assert promote.verdict(kept, None, settings) == (False, "worse")
    assert promote.verdict(chosen, None, settings) == (True, "better")
    assert promote.verdict(chosen, {"approved": True, "by": "ann", "reason": ""}, settings) == (
        True, "better; approved by ann")
    assert promote.verdict(chosen, {"approved": False, "by": "ann", "reason": "rejected by ann"}, settings) == (
        False, "rejected by ann")
    assert promote.verdict(kept, {"approved": True, "by": "ann", "reason": ""}, settings)[0] is False
    required, reason = promote.verdict(chosen, None, make_settings(approval_required=True))
    assert not required and "nobody approved" in reason  # outside Airflow nobody can approve


def test_history_keeps_one_row_per_run_id_and_renders_as_markdown(tmp_path):
    champion.record_in_history(tmp_path, {"run_id": "a", "promoted": "true", "reason": "first | only"})
    champion.record_in_history(tmp_path, {"run_id": "b", "promoted": "false", "reason": "worse"})
    champion.record_in_history(tmp_path, {"run_id": "a", "promoted": "true", "reason": "retried"})
    rows = champion.read_history(tmp_path)
    assert [(row["run_id"], row["reason"]) for row in rows] == [("b", "worse"), ("a", "retried")]
    assert list(rows[0]) == list(champion.HISTORY_COLUMNS)
    assert "| false | worse |" in champion.history_markdown(rows)
    assert champion.history_markdown([]) == "No earlier run reached the promotion."
