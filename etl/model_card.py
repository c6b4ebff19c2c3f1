"""The run's clinical model card (report.html): one self-contained page, facts in, HTML out.

The facts are what the compare step holds: metrics.json, comparison.json, the run's records, its splits, its model
and a few public settings. The page follows TRIPOD+AI, STARD 2015 and the model cards of Mitchell et al. (2019); its
last section names the items each part covers. Charts are inlined as base64 PNG data URIs and the stylesheet is in
the page, so it reads offline and prints to PDF from a browser. Every value goes through Jinja2 with autoescape on.
"""

from __future__ import annotations

import base64
import functools
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from etl import catalog
from etl.dataset import FEATURES, ID, TARGET
from etl.report import NAMES, decision_curve_rows, number, with_interval
from etl.unique_rows import UniqueRowsClassifier

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "model_card.html.j2"
CARD_SETTINGS = ("APPROVAL_REQUIRED", "DRIFT_PSI_THRESHOLD")  # the settings the page states (the rest: metrics.json)
CV_METRICS = ("roc_auc", "pr_auc", "brier_score", "recall", "specificity")  # the candidates' table: fits a page
TEST_CHARTS = (  # drawn on the held-out test rows: (file, alt text, caption)
    (catalog.ROC_CURVE, "ROC curve of the model on the held-out rows", "ROC curve"),
    (catalog.PRECISION_RECALL_CURVE, "Precision-recall curve of the model on the held-out rows",
     "Precision-recall curve"),
    (catalog.CONFUSION_MATRIX, "Confusion matrix at the operating threshold on the held-out rows",
     "Confusion matrix at the operating threshold"),
    (catalog.DECISION_CURVE, "Decision curve: net benefit of the model, treat-all and treat-none on the held-out rows",
     "Decision curve, the operating threshold marked"))
# Which items of TRIPOD+AI (Collins et al. 2024), STARD 2015 (Bossuyt et al.) and the model card (Mitchell et al.
# 2019) each section of the page covers, and those it does not, with why: the page's last section, and docs/results.md.
REPORTING_ITEMS = (
    {"section": "Summary", "tripod": "2 key results", "stard": "2 abstract",
     "model_card": "model details; metrics"},
    {"section": "Intended use and out-of-scope use",
     "tripod": "3a healthcare context; 3b intended population and users; 5a–5b data source and dates; 6a setting "
               "(single centre); 26 limitations",
     "stard": "3 clinical role; 8 setting, location and dates; 26 limitations; 27 implications for practice",
     "model_card": "intended use; ethical considerations; caveats and recommendations"},
    {"section": "Data",
     "tripod": "5a source; 7 data preparation; 8a outcome; 9a predictors; 11 missing data; 20a participant flow; "
               "20b characteristics; 20c development against evaluation data; 21 participants and events",
     "stard": "6 eligibility (the data contract); 10b reference standard; 16 missing data; 19 flow; "
              "20 characteristics; 21a prevalence",
     "model_card": "training data; evaluation data"},
    {"section": "The model",
     "tripod": "12a data partitioning; 12b predictor handling; 12c model type, selection and internal validation; "
               "13 class imbalance; 15 model output and threshold; 22 model specification",
     "stard": "10a index test; 12a positivity cut-off, pre-specified", "model_card": "model details"},
    {"section": "Performance",
     "tripod": "12e performance measures; 16 training against evaluation; 23a performance with intervals "
               "(discrimination, calibration, clinical utility)",
     "stard": "14 accuracy methods; 23 cross-tabulation; 24 accuracy with 95% intervals",
     "model_card": "metrics; quantitative analyses; decision thresholds"},
    {"section": "Comparison with the champion; approval",
     "tripod": "24 model updating (the champion replaced only when shown non-inferior)", "stard": "–",
     "model_card": "quantitative analyses"},
    {"section": "Using the model", "tripod": "27a poor-quality or missing inputs; 27b users", "stard": "–",
     "model_card": "caveats and recommendations"},
)
NOT_COVERED = (
    ("TRIPOD+AI 3c, 14; model card: factors", "health inequalities and fairness: the data record no patient "
     "characteristics (age, sex, ethnicity), so no group can be examined"),
    ("TRIPOD+AI 6c", "treatments: a diagnostic model, none apply"),
    ("TRIPOD+AI 12d, 23b", "heterogeneity and subgroups: one centre, no recorded subgroups"),
    ("TRIPOD+AI 17–19, 27c; STARD 28–30", "ethics, open science, patient involvement, registration, protocol and "
     "funding belong to a study, not to a run"),
    ("STARD 5, 7, 9, 13a–b, 22", "design, recruitment, sampling, blinding and the time between cytology and "
     "reference standard: not documented with the data"),
    ("STARD 25", "adverse events: no test is done on a patient"),
)


def data_uri(png: bytes) -> str:
    """A PNG as a `data:` URI, so that the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def card_settings(public: dict[str, Any]) -> dict[str, Any]:
    """The settings the page states, from the settings' public (redacted) view: none of them is a secret."""
    return {name: public[name] for name in CARD_SETTINGS}


def outcome_counts(rows: pd.DataFrame) -> dict[str, int]:
    """Rows, distinct Ids, malignant and benign rows of a split."""
    malignant = int(rows[TARGET].sum())
    return {"rows": len(rows), "ids": int(rows[ID].nunique()), "malignant": malignant,
            "benign": len(rows) - malignant}


def participant_flow(loaded: dict[str, Any], preprocessed: dict[str, Any], validation: dict[str, Any],
                     train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    """From the rows loaded to the training and test rows with their outcomes (STARD 19, TRIPOD+AI 20a)."""
    return {"loaded": loaded["rows"], "invalid": validation["violation_count"],
            "duplicates": preprocessed["duplicates_dropped"], "class_counts": validation["class_counts"],
            "missing": validation["missing_values"], "repeated_ids": validation["repeated_ids"],
            "train": outcome_counts(train), "test": outcome_counts(test)}


def predictor_distributions(train: pd.DataFrame, test: pd.DataFrame) -> list[dict[str, Any]]:
    """Per feature, mean and standard deviation of the score and missing values, in the training and test rows."""
    def described(column: pd.Series) -> dict[str, Any]:
        return {"mean": float(column.mean()), "std": float(column.std()), "missing": int(column.isna().sum())}

    return [{"feature": feature, "train": described(train[feature]), "test": described(test[feature])}
            for feature in FEATURES]


def coefficients(fitted: Any, names: list[str], scale: Any) -> list[dict[str, float | str]]:
    """A linear model's coefficient per standardized feature with its odds ratio, and per one-step score."""
    return [{"feature": name, "coefficient": float(value), "odds_ratio": math.exp(value),
             "odds_ratio_per_step": math.exp(value / sd)}
            for name, value, sd in zip(names, fitted.coef_.ravel(), scale, strict=True)]


def model_specification(model: Any) -> dict[str, Any]:
    """What the saved model is: sklearn's FixedThresholdClassifier(FrozenEstimator(Pipeline(impute, scale, model)))
    where the classifier may be wrapped in a UniqueRowsClassifier. A linear model's coefficients are given; for
    another kind, what is reported instead."""
    pipeline = model.estimator.estimator
    names = list(pipeline[:-1].get_feature_names_out())
    classifier = pipeline.named_steps["model"]
    wrapped = isinstance(classifier, UniqueRowsClassifier)
    fitted = classifier.estimator_ if wrapped else classifier
    imputer = pipeline.named_steps["impute"].named_transformers_["median"]
    linear = hasattr(fitted, "coef_") and hasattr(fitted, "intercept_")
    return {"classifier": type(fitted).__name__,
            "wrapped": type(classifier).__name__ if wrapped else None,
            "imputed": {name: float(value) for name, value in zip(imputer.feature_names_in_, imputer.statistics_,
                                                                  strict=True)},
            "intercept": float(fitted.intercept_.ravel()[0]) if linear else None,
            "coefficients": coefficients(fitted, names, pipeline.named_steps["scale"].scale_) if linear else None}


def interval_text(interval: dict[str, Any], digits: int = 2) -> str:
    """`0.55 (95% CI -0.45 to 1.28)`: a bootstrapped figure whose bounds may be negative (n/a: not computable)."""
    estimate, lower, upper = ("n/a" if interval[key] is None else f"{interval[key]:.{digits}f}"
                              for key in ("estimate", "lower", "upper"))
    return f"{estimate} (95% CI {lower} to {upper})"


@functools.cache
def environment() -> jinja2.Environment:
    """The template's environment: found by path beside this module, autoescape on, undefined values an error."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, with_interval=with_interval, interval_text=interval_text)
    env.globals.update(NAMES=NAMES, decision_curve_rows=decision_curve_rows, cv_metrics=CV_METRICS,
                       test_metrics=catalog.TEST_METRICS, charts_shown=TEST_CHARTS,
                       CALIBRATION_CURVE=catalog.CALIBRATION_CURVE, reporting_items=REPORTING_ITEMS,
                       not_covered=NOT_COVERED)
    return env


def render(facts: dict[str, Any]) -> str:
    """The page: `facts` holds `metrics`, `comparison`, `flow`, `distributions`, `specification`, `settings` and
    `charts` (file name -> data URI)."""
    return environment().get_template(TEMPLATE).render(**facts)
