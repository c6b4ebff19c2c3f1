"""The pandera schemas of the data contract: the cleaned frame, samples to score, and the train/test splits (the
column names and accepted raw encodings are in etl/dataset.py)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from etl.dataset import FEATURES, ID, NULLABLE_FEATURES, SCORE_MAX, SCORE_MIN, TARGET


def _feature_column(name: str) -> pa.Column:
    return pa.Column("Int64", pa.Check.in_range(SCORE_MIN, SCORE_MAX), nullable=name in NULLABLE_FEATURES,
                     description=f"cytology score {SCORE_MIN}-{SCORE_MAX}")


CLEAN_SCHEMA = pa.DataFrameSchema(
    {ID: pa.Column("Int64", pa.Check.ge(0), nullable=False),
     **{name: _feature_column(name) for name in FEATURES},
     TARGET: pa.Column("Int64", pa.Check.isin([0, 1]), nullable=False)},
    strict=True, ordered=True, name="clean_breast_cancer",
)

SAMPLE_SCHEMA = CLEAN_SCHEMA.remove_columns([TARGET]).set_name("samples")  # rows to score: no Class needed


def _has_both_classes(frame: pd.DataFrame) -> bool:
    return set(frame[TARGET].unique()) == {0, 1}


def _has_no_duplicate_rows(frame: pd.DataFrame) -> bool:
    return not frame.duplicated().any()


SPLIT_SCHEMA = pa.DataFrameSchema(
    CLEAN_SCHEMA.columns,
    checks=[pa.Check(_has_both_classes, error="both classes (0 and 1) must be present"),
            pa.Check(_has_no_duplicate_rows, error="no row may repeat exactly")],
    strict=True, ordered=True, name="split",
)
