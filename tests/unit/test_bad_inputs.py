"""The bad-input corpus (tests/data/bad_inputs/, made by tests/data/make_bad_inputs.py) through load and
preprocess: each file gives a clear error naming what is wrong, or is handled by a documented rule, no file
leaves a partial artifact behind, and no error, log line or report quotes more than a short excerpt of it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from etl import catalog
from etl.dataset import EXPECTED_COLUMNS
from etl.pipeline import execute_step
from etl.run_folder import safe_run_id
from etl.steps import STEP
from tests.data.make_bad_inputs import FAKE_KEY_BODY, corpus, made_at_run_time
from tests.support.data import BAD_INPUTS, BUNDLED_CSV, open_run
from utils.config import PROJECT_ROOT
from utils.errors import EXCERPT_CHARS, PipelineError

CORPUS = BAD_INPUTS
EVERY_INPUT = sorted({**corpus(), **made_at_run_time()})

REJECTED = {
    "empty.csv": r"the body is empty",
    "header_only.csv": r"has a header but no data rows",
    "missing_column.csv": r"missing column\(s\) Mitoses\. Expected exactly: Id, Cl\.thickness",
    "extra_column.csv": r"unexpected column\(s\) 'Comment'",
    "renamed_column.csv": r"missing column\(s\) Cell\.size; unexpected column\(s\) 'Cell_size'",
    "lowercase_header.csv": r"missing column\(s\) Id, Cl\.thickness, .*; unexpected column\(s\) 'id', 'cl\.thickness'",
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
    "very_wide.csv": r"unexpected column\(s\) 'extra0', .* 'extra9' and 490 more\.",
    "long_header.csv": r"unexpected column\(s\) 'Note_abcdefghijabcdefghi…'\. Expected",
    "escape_codes_in_header.csv": r"missing column\(s\) Class; unexpected column\(s\) '\\x1b\[2J\\x1b\[HClass'",
    # not the data at all: nothing of the file is quoted (it could be a key)
    "service_account_key.json": r"raw\.csv: its first line names none of the expected columns; it is not a CSV",
    "long_text_in_cell.csv": r"line 5, column Cl\.thickness: 'pain in the left breast …' not a whole number",
    "blank_lines.csv": r"1 cell violation\(s\).*\n  line 21, column Normal\.nucleoli: '0' fails in_range",
    "ragged_row.csv": r"line 12 has 12 fields, the header 11; expected one value per column",
    "short_row.csv": r"line 12 has 10 fields, the header 11; expected",
    "trailing_comma.csv": r"line 2 has 12 fields, the header 11 \(and 79 more line\(s\) do not have 11\); expected",
    "html_error_page.csv": r"got an HTML/XML document, expected a CSV",
    "truncated.csv": r"the last line has \d+ fields, the header 11: the file looks truncated",
    "non_utf8.csv": r"byte \d+ is not UTF-8",
}
ACCEPTED = {  # file -> (rows in, duplicates dropped)
    "uci_codes.csv": (80, 0),
    "text_labels.csv": (80, 0),
    "exact_duplicates.csv": (85, 5),
    "crlf_line_endings.csv": (80, 0),
    "padded_header.csv": (699, 8),
    "reordered_columns.csv": (699, 8),
    "utf8_bom.csv": (699, 8),
}
SAME_AS_BUNDLED = ["padded_header.csv", "reordered_columns.csv", "utf8_bom.csv"]  # the bundled data, re-encoded


def test_corpus_on_disk_is_what_the_generator_makes():
    expected = corpus()
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(expected)
    assert set(EVERY_INPUT) == set(REJECTED) | set(ACCEPTED)
    assert not set(made_at_run_time()) & set(expected), "an input made at run time must not be committed"
    for name, content in expected.items():
        assert (CORPUS / name).read_bytes() == content, f"{name} is stale: rerun make_bad_inputs.py"


def input_file(name: str, folder: Path) -> Path:
    """The input `name`: the corpus file, or for one made at run time, written into `folder` first."""
    made = made_at_run_time()
    if name not in made:
        return CORPUS / name
    path = folder / name
    path.write_bytes(made[name])
    return path


def input_settings(make_settings, name: str, folder: Path):
    """Settings that load the input `name` in strict mode (its folder allowed)."""
    path = input_file(name, folder)
    return make_settings(data_url=path.as_uri(), data_fallback=False,
                         data_allowed_dirs=(BUNDLED_CSV.parent, CORPUS, path.parent))


def load_and_preprocess(settings, run_id: str) -> dict:
    """Load and preprocess for the run `run_id`, as the runner executes them; preprocess's summary."""
    run = open_run(settings, run_id)
    execute_step(STEP["load"], run, settings)
    return execute_step(STEP["preprocess"], run, settings)


def folder(settings, run_id: str) -> Path:
    return settings.runs_dir / safe_run_id(run_id)


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value (keys too), as it was before JSON escaped it."""
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in strings_in(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return [value] if isinstance(value, str) else []


def longest_quote(source: str, outputs: list[str]) -> int:
    """The length of the longest run of characters of one line of `source` found in `outputs` (from EXCERPT_CHARS
    on; shorter runs count as EXCERPT_CHARS)."""
    longest = EXCERPT_CHARS
    for line in source.splitlines():
        while any(line[i:i + longest + 1] in text for i in range(len(line) - longest) for text in outputs):
            longest += 1
    return longest


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bad_file_is_rejected_with_a_clear_message_and_no_split(make_settings, name, tmp_path):
    settings = input_settings(make_settings, name, tmp_path)
    with pytest.raises(PipelineError, match=REJECTED[name]) as error:
        load_and_preprocess(settings, name)
    run_folder = folder(settings, name)
    assert not (run_folder / catalog.TRAIN).exists() and not (run_folder / catalog.TEST).exists()
    assert not (run_folder / catalog.PREPROCESS_INFO).exists()
    assert not list(run_folder.glob(".*.tmp")), "a temporary file was left behind"
    if "raw.csv" in str(error.value):  # load accepted the file: preprocess must have saved its report
        report = json.loads((run_folder / catalog.VALIDATION_REPORT).read_text())
        assert report["valid"] is False
        assert report["violation_count"] == len(report["violations"])
        assert report["violations"] or report["dataset_problems"]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_alternative_encodings_are_normalised(make_settings, name):
    settings = make_settings(data_url=(CORPUS / name).as_uri(), data_fallback=False)
    summary = load_and_preprocess(settings, name)
    rows_in, dropped = ACCEPTED[name]
    assert (summary["rows_in"], summary["duplicates_dropped"]) == (rows_in, dropped)
    assert summary["rows_train"] + summary["rows_test"] == rows_in - dropped
    train = (folder(settings, name) / catalog.TRAIN).read_text()
    assert train.splitlines()[0] == ",".join(EXPECTED_COLUMNS)
    labels = {line.rsplit(",", 1)[1] for line in train.splitlines()[1:]}
    assert labels == {"0", "1"}


@pytest.mark.parametrize("name", EVERY_INPUT)
def test_no_error_log_or_report_quotes_more_than_an_excerpt_of_the_file(make_settings, caplog, name, tmp_path):
    settings = input_settings(make_settings, name, tmp_path)
    caplog.set_level(logging.DEBUG)
    outputs = []
    try:
        load_and_preprocess(settings, name)
    except PipelineError as exc:
        outputs.append(str(exc))
    outputs += [record.getMessage() for record in caplog.records]
    report = folder(settings, name) / catalog.VALIDATION_REPORT
    if report.exists():
        outputs += strings_in(json.loads(report.read_text()))
    assert outputs, "nothing to check: no error, no log record and no report"
    source = input_file(name, tmp_path).read_bytes().decode("utf-8", errors="replace")
    assert longest_quote(source, outputs) == EXCERPT_CHARS
    assert not [text for text in outputs if FAKE_KEY_BODY[:15] in text]
    assert not [text for text in outputs if not text.replace("\n", "").isprintable()], "a control character leaked"


@pytest.mark.parametrize("name", SAME_AS_BUNDLED)
def test_a_re_encoded_bundled_file_gives_byte_identical_splits(make_settings, name):
    bundled = make_settings()
    load_and_preprocess(bundled, "bundled")
    settings = make_settings(data_url=(CORPUS / name).as_uri(), data_fallback=False)
    load_and_preprocess(settings, name)
    for split in (catalog.TRAIN, catalog.TEST):
        assert (folder(settings, name) / split).read_bytes() == (folder(bundled, "bundled") / split).read_bytes()


@pytest.mark.parametrize(("readme", "phrase"), [("README.md", "holds {} example files"),
                                                ("README.ru.md", "лежат {} примеров файлов"),
                                                ("docs/pipeline.md", "holds {} example files"),
                                                ("docs/testing.md", "holds {} example files")])
def test_the_readmes_count_the_corpus(readme, phrase):
    text = " ".join((PROJECT_ROOT / readme).read_text(encoding="utf-8").split())
    assert phrase.format(len(corpus())) in text


def test_a_failed_retry_removes_the_outputs_of_an_earlier_good_attempt(make_settings):
    settings = make_settings()
    load_and_preprocess(settings, "same")
    assert (folder(settings, "same") / catalog.TRAIN).exists()
    bad = make_settings(data_url=(CORPUS / "score_zero.csv").as_uri())
    with pytest.raises(PipelineError, match=REJECTED["score_zero.csv"]):
        load_and_preprocess(bad, "same")
    assert bad.runs_dir == settings.runs_dir
    assert not (folder(settings, "same") / catalog.TRAIN).exists()
    assert not (folder(settings, "same") / catalog.PREPROCESS_INFO).exists()
