"""Unit tests of bench/make_data.py, the generator of large data sets drawn from the bundled CSV."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.make_data import generate, main
from etl import preprocess
from etl.dataset import ID, TARGET
from tests.support.data import BUNDLED_CSV


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_CSV)


def test_the_rows_are_exact_fresh_ids_and_the_same_seed_repeats_them(bundled):
    rows = generate(3_001, seed=5)
    assert len(rows) == 3_001 and list(rows.columns) == list(bundled.columns)
    assert not set(rows[ID].astype(int)) & set(bundled[ID])
    pd.testing.assert_frame_equal(rows, generate(3_001, seed=5))
    assert not rows.equals(generate(3_001, seed=6))


def test_classes_missing_values_and_repeated_ids_keep_their_bundled_rates(bundled):
    rows = generate(50_000, seed=1).replace("NA", None).astype(float)
    assert rows[TARGET].mean() == pytest.approx(bundled[TARGET].mean(), abs=0.001)
    assert rows["Bare.nuclei"].isna().mean() == pytest.approx(bundled["Bare.nuclei"].isna().mean(), abs=0.003)
    assert rows[ID].nunique() / len(rows) == pytest.approx(bundled[ID].nunique() / len(bundled), abs=0.01)
    for feature in ("Cl.thickness", "Cell.size", "Mitoses"):
        assert rows[feature].mean() == pytest.approx(bundled[feature].mean(), rel=0.03)
    by_id = rows.groupby(ID)[TARGET].nunique()
    assert (by_id > 1).sum() > 0  # Ids with rows of both classes are drawn too


def test_the_file_is_valid_input_for_the_pipeline_and_written_whole(tmp_path):
    out = tmp_path / "rows.csv"
    assert main(["2000", str(out), "--seed", "2"]) == 0
    clean, violations, problems = preprocess.validate(out, min_groups_per_class=5)
    assert len(clean) == 2000 and violations == [] and problems == []
    assert [path.name for path in tmp_path.iterdir()] == ["rows.csv"]


def test_a_row_count_below_one_is_refused():
    with pytest.raises(ValueError, match="rows must be at least 1"):
        generate(0, seed=0)
