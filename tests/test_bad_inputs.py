"""The bad-input corpus (tests/data/bad_inputs/, made by tests/data/make_bad_inputs.py) through load and
preprocess: each file gives a clear error naming what is wrong, or is handled by a documented rule, and no
file leaves a partial artifact behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl import artifacts, load, preprocess
from tests.data.make_bad_inputs import corpus
from utils.errors import PipelineError
from utils.steps import execute_step

CORPUS = Path(__file__).parent / "data" / "bad_inputs"

REJECTED = {
    "empty.csv": r"the body is empty",
    "header_only.csv": r"has a header but no data rows",
    "missing_column.csv": r"missing column\(s\) Mitoses\. Expected exactly: Id, Cl\.thickness",
    "extra_column.csv": r"unexpected column\(s\) Comment",
    "renamed_column.csv": r"missing column\(s\) Cell\.size; unexpected column\(s\) Cell_size",
    "text_in_numeric.csv": r"line 4, column Cl\.thickness: 'five' not a whole number",
    "score_zero.csv": r"line 3, column Cell\.size: '0' fails in_range\(1, 10\)",
    "score_eleven.csv": r"line 5, column Normal\.nucleoli: '11' fails in_range\(1, 10\)",
    "fractional_score.csv": r"line 6, column Cell\.shape: '2\.5' not a whole number",
    "unknown_label.csv": r"line 7, column Class: 'maybe' unknown label; expected 0/1, benign/malignant",
    "missing_label.csv": r"line 8, column Class: '' unknown label",
    "mixed_label_codings.csv": r"line 9, column Class: '4' unknown label",
    "negative_id.csv": r"line 2, column Id: '-5' fails greater_than_or_equal_to\(0\)",
    "na_in_required_feature.csv": r"line 10, column Marg\.adhesion: 'NA' missing value",
    "one_class_only.csv": r"class malignant \(1\) has 0 distinct Id\(s\); at least 5 are needed",
    "all_rows_na.csv": r"(?s)640 cell violation\(s\).*line 2, column Cl\.thickness: 'NA' missing value",
    "duplicated_header.csv": r"line 42, column Id: 'Id' not a whole number",
    "semicolon_separated.csv": r"columns are separated by ';'; expected commas",
    "very_wide.csv": r"unexpected column\(s\) extra0, .* and 490 more",
    "ragged_row.csv": r"not a well-formed CSV: .*Expected 11 fields in line 12, saw 12",
    "html_error_page.csv": r"got an HTML/XML document, expected a CSV",
    "truncated.csv": r"the last line has \d+ fields, the header 11: the file looks truncated",
    "non_utf8.csv": r"byte \d+ is not UTF-8",
}
ACCEPTED = {  # file -> (rows in, duplicates dropped)
    "uci_codes.csv": (80, 0),
    "text_labels.csv": (80, 0),
    "exact_duplicates.csv": (85, 5),
    "crlf_line_endings.csv": (80, 0),
}


def test_corpus_on_disk_is_what_the_generator_makes():
    expected = corpus()
    assert sorted(p.name for p in CORPUS.glob("*.csv")) == sorted(expected)
    assert set(expected) == set(REJECTED) | set(ACCEPTED)
    for name, content in expected.items():
        assert (CORPUS / name).read_bytes() == content, f"{name} is stale: rerun make_bad_inputs.py"


def load_and_preprocess(settings) -> dict:
    execute_step(load.STEP, load.run, settings)
    return execute_step(preprocess.STEP, preprocess.run, settings)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bad_file_is_rejected_with_a_clear_message_and_no_split(make_settings, name):
    settings = make_settings(data_url=(CORPUS / name).as_uri(), data_fallback=False, run_id=name)
    with pytest.raises(PipelineError, match=REJECTED[name]) as error:
        load_and_preprocess(settings)
    folder = settings.runs_dir / name
    assert not (folder / artifacts.TRAIN).exists() and not (folder / artifacts.TEST).exists()
    assert not (folder / artifacts.PREPROCESS_INFO).exists()
    assert not list(folder.glob(".*.tmp")), "a temporary file was left behind"
    if "raw.csv" in str(error.value):  # load accepted the file: preprocess must have saved its report
        report = json.loads((folder / artifacts.VALIDATION_REPORT).read_text())
        assert report["valid"] is False
        assert report["violation_count"] == len(report["violations"])
        assert report["violations"] or report["dataset_problems"]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_alternative_encodings_are_normalised(make_settings, name):
    settings = make_settings(data_url=(CORPUS / name).as_uri(), data_fallback=False, run_id=name)
    summary = load_and_preprocess(settings)
    rows_in, dropped = ACCEPTED[name]
    assert (summary["rows_in"], summary["duplicates_dropped"]) == (rows_in, dropped)
    assert summary["rows_train"] + summary["rows_test"] == rows_in - dropped
    train = (settings.runs_dir / name / artifacts.TRAIN).read_text()
    assert train.splitlines()[0] == ",".join(preprocess.EXPECTED_COLUMNS)
    labels = {line.rsplit(",", 1)[1] for line in train.splitlines()[1:]}
    assert labels == {"0", "1"}


def test_a_failed_retry_removes_the_outputs_of_an_earlier_good_attempt(make_settings):
    settings = make_settings(run_id="same")
    load_and_preprocess(settings)
    assert (settings.runs_dir / "same" / artifacts.TRAIN).exists()
    bad = settings.replace(data_url=(CORPUS / "score_zero.csv").as_uri())
    with pytest.raises(PipelineError):
        load_and_preprocess(bad)
    assert not (settings.runs_dir / "same" / artifacts.TRAIN).exists()
