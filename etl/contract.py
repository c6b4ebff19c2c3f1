"""The data contract of a cytology CSV, shared by preprocess (training data) and predict (samples to score,
`Class` optional): reading a file safely, its rules, the pandera schemas, and the messages naming what breaks them.

Rules, in order:
1. The file must be UTF-8 (a leading BOM is ignored), comma-separated, with each of the columns
   `Id, <9 features>, Class` exactly once, in any order (the outputs use this order), and one value per column on
   every line. Header names are compared exactly once surrounding spaces are trimmed: `class` or `Cell_size` is
   not `Class` or `Cell.size`.
2. Cells are stripped; `NA`, `?` and empty cells mean missing (allowed only in `Bare.nuclei`).
3. Scores must be integers 1-10; `Id` a non-negative integer.
4. `Class` is 0/1 or benign/malignant (any case); a file that uses only 2/4 is UCI's coding (2 benign, 4 malignant).
Every violation names its file line and column. Messages and reports quote the file only through
`utils.errors.excerpt` (at most 24 printable characters, `…` when cut) and list at most ten column names, so that a
wrong file (a key, a token) never ends up whole in a log, an alert or an artifact. The column names and accepted
raw encodings are in etl/dataset.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from etl.dataset import (
    EXPECTED_COLUMNS,
    FEATURES,
    ID,
    LABELS,
    MISSING_MARKERS,
    NULLABLE_FEATURES,
    SCORE_MAX,
    SCORE_MIN,
    TARGET,
    UCI_LABELS,
)
from utils.errors import DataValidationError, excerpt
from utils.files import read_regular

FIRST_DATA_LINE = 2  # line 1 of the file is the header
SHOWN_VIOLATIONS = 10
SHOWN_NAMES = 10  # unexpected or repeated column names listed in a message

Violation = dict[str, Any]


# The pandera schemas: the cleaned frame (training data), samples to score (no Class) and the train/test splits.


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


def read_text(path: Path) -> str:
    """The regular file `path` (never through a link; utils.files.regular_handle) decoded as UTF-8 (a leading BOM
    dropped), with an error naming the first byte that is not UTF-8."""
    try:
        return read_regular(path).decode("utf-8").removeprefix("\ufeff")  # not utf-8-sig: its offsets skip the BOM
    except FileNotFoundError:
        raise DataValidationError(f"{path}: no such file; expected a CSV of the cytology data") from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: byte {exc.start} is not UTF-8; save the file as UTF-8") from None


def csv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV row of `text` (the file `path`) with the file line it starts on; lines end at CR, LF or CRLF as
    for pandas, and what the csv module cannot read is an error naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataValidationError(f"{path}: not a well-formed CSV at line {start}: {exc}") from None


def read_header(text: str, path: Path) -> list[str]:
    """The header names of the file `path` holding `text`, with surrounding spaces removed; an error when empty."""
    _, header = next(csv_rows(text, path), (1, []))
    if not header:
        raise DataValidationError(f"{path}: the file is empty; expected a header line "
                                  f"({','.join(EXPECTED_COLUMNS)}) and data rows")
    return [name.strip() for name in header]


def data_lines(text: str, width: int, path: Path) -> list[int]:
    """The file line each data row starts on (blank lines skipped, as pandas skips them), after requiring one
    field per column in every row: pandas pads a short row with empty cells (a silent missing value when the
    last column is `Bare.nuclei`) and takes the extra fields of long rows as an index."""
    rows = csv_rows(text, path)
    next(rows)
    lines, wrong = [], []
    for line, row in rows:
        if len(row) > 1 or (row and row[0].strip()):
            lines.append(line)
            if len(row) != width:
                wrong.append((line, len(row)))
    if wrong:
        (line, fields), others = wrong[0], len(wrong) - 1
        raise DataValidationError(f"{path}: line {line} has {fields} fields, the header {width}"
                                  + (f" (and {others} more line(s) do not have {width})" if others else "")
                                  + "; expected one value per column")
    return lines


def quoted_names(names: list[str]) -> str:
    """Names taken from the file, each as a quoted excerpt, at most SHOWN_NAMES of them."""
    shown = ", ".join(f"'{excerpt(name)}'" for name in names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def check_columns(header: list[str], path: Path, optional: tuple[str, ...] = ()) -> list[str]:
    """Require each expected column exactly once and nothing else (in any order), naming what is wrong; the
    `optional` ones may be absent. Returns the expected columns present, in canonical order."""
    present = [name for name in EXPECTED_COLUMNS if name in header]
    if sorted(header) == sorted(present) and set(EXPECTED_COLUMNS) - set(present) <= set(optional):
        return present
    if len(header) == 1:
        for separator in (";", "\t", "|"):
            if separator in header[0]:
                raise DataValidationError(f"{path}: columns are separated by {separator!r}; expected commas")
    expected = ", ".join(name for name in EXPECTED_COLUMNS if name not in optional)
    expected += "".join(f", optionally {name}" for name in optional)
    known = {name.casefold() for name in EXPECTED_COLUMNS}
    if not known.intersection(name.casefold() for name in header):  # not this data (a key, a config): quote nothing
        raise DataValidationError(f"{path}: its first line names none of the expected columns; it is not a CSV of "
                                  f"the cytology data. Expected exactly: {expected}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    missing = [name for name in EXPECTED_COLUMNS if name not in header and name not in optional]
    unexpected = [name for name in header if name not in EXPECTED_COLUMNS]
    problems = []
    if repeated:
        problems.append("repeated column(s) " + quoted_names(repeated))
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected column(s) " + quoted_names(unexpected))
    raise DataValidationError(f"{path}: {'; '.join(problems)}. Expected exactly: {expected}")


@dataclass(frozen=True)
class CheckedCsv:
    """A CSV whose encoding, header and field counts passed: its text, header names (stripped), the expected
    columns present (canonical order) and the file line of each data row."""

    path: Path
    text: str
    header: list[str]
    columns: list[str]
    lines: list[int]


def read_checked(path: Path, optional: tuple[str, ...] = ()) -> CheckedCsv:
    """The file's text after checking its encoding, header (the `optional` columns may be absent) and rows."""
    text = read_text(path)
    header = read_header(text, path)
    columns = check_columns(header, path, optional)
    lines = data_lines(text, len(header), path)
    if not lines:
        raise DataValidationError(f"{path}: has a header but no data rows")
    return CheckedCsv(path, text, header, columns, lines)


def parsed(csv_file: CheckedCsv, **options: Any) -> pd.DataFrame:
    """The checked file read by pandas with `options`, columns in canonical order, indexed by file line."""
    try:
        frame = pd.read_csv(io.StringIO(csv_file.text), header=0, names=csv_file.header, **options)
    except pd.errors.ParserError as exc:
        raise DataValidationError(f"{csv_file.path}: not a well-formed CSV: {exc}") from None
    frame.index = pd.Index(csv_file.lines) - FIRST_DATA_LINE  # violations name the file's lines, even after a blank one
    return frame[csv_file.columns]


def per_distinct(column: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`transform` of the column, computed once per distinct cell and spread back: scores repeat (about ten
    distinct cells per column however many rows), and pandas' string methods loop in Python over every cell."""
    codes, distinct = pd.factorize(column)
    return transform(pd.Series(distinct)).take(codes).set_axis(column.index).rename(column.name)


def raw_cells(csv_file: CheckedCsv) -> pd.DataFrame:
    """The checked file's cells as stripped strings (no type guessing), columns in the canonical order."""
    frame = parsed(csv_file, dtype=str, keep_default_na=False, na_filter=False)
    return frame.apply(lambda column: per_distinct(column, lambda cells: cells.str.strip()))


def read_typed(path: Path, optional: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[Violation]]:
    """The file's cells typed after the rules (Int64 columns) and every cell violation: by pandas' C parser when
    every cell is a valid plain number, else cell by cell (raw_cells + normalise), which names each bad cell."""
    csv_file = read_checked(path, optional)
    clean = read_valid_numbers(csv_file)
    return (clean, []) if clean is not None else normalise(raw_cells(csv_file))


def read_valid_numbers(csv_file: CheckedCsv) -> pd.DataFrame | None:
    """The fast path for big files of samples: the cells parsed as numbers by pandas' C parser, typed as
    `normalise` types them, when every cell is valid; None when one is not (or is not a plain number), and then
    raw_cells + normalise find and name it. Several times faster than the string path on a million rows."""
    numeric = [name for name in csv_file.columns if name != TARGET]
    types = {name: "float64" if name in numeric else str for name in csv_file.header}
    try:
        frame = parsed(csv_file, dtype=types, na_values=sorted(MISSING_MARKERS), keep_default_na=False)
        values = frame[numeric]
        if (values % 1 > 0).any().any() or values.drop(columns=list(NULLABLE_FEATURES)).isna().any().any():
            return None
        columns = {name: values[name].astype("Int64") for name in numeric}
    except (ValueError, TypeError, OverflowError):  # a cell that is not a number, or not one an int64 holds
        return None
    if TARGET in frame:
        columns[TARGET], violations = parse_labels(frame[TARGET].fillna("").str.strip())
        if violations:
            return None
    clean = pd.DataFrame(columns, index=frame.index)
    return None if schema_violations(clean, CLEAN_SCHEMA if TARGET in clean else SAMPLE_SCHEMA) else clean


def _violation(index: int, column: str, value: Any, problem: str) -> Violation:
    return {"line": int(index) + FIRST_DATA_LINE, "column": column,
            "value": None if pd.isna(value) else excerpt(str(value)), "problem": problem}


def parse_integers(column: pd.Series, name: str, allow_missing: bool) -> tuple[pd.Series, list[Violation]]:
    """Cells as nullable integers; cells that are not whole numbers become violations (and missing)."""
    missing = column.isin(MISSING_MARKERS)
    numbers = per_distinct(column, lambda cells: pd.to_numeric(cells.where(~cells.isin(MISSING_MARKERS)),
                                                                errors="coerce"))
    bad = ~missing & (numbers.isna() | (numbers % 1 != 0))
    violations = [_violation(i, name, column[i], "not a whole number") for i in column.index[bad]]
    if not allow_missing:
        violations += [_violation(i, name, column[i], "missing value") for i in column.index[missing]]
    return numbers.where(~bad).astype("Int64"), violations


def parse_labels(column: pd.Series) -> tuple[pd.Series, list[Violation]]:
    """Class labels as 0/1: 0/1, benign/malignant, or UCI's 2/4 when the file uses only 2 and 4."""
    lowered = column.str.lower()
    mapping = UCI_LABELS if set(lowered.unique()) <= set(UCI_LABELS) else LABELS
    labels = lowered.map(mapping)
    expected = "0/1, benign/malignant, or 2/4 (UCI) used alone"
    violations = [_violation(i, TARGET, column[i], f"unknown label; expected {expected}")
                  for i in column.index[labels.isna()]]
    return labels.astype("Int64"), violations


def schema_violations(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> list[Violation]:
    """Every cell the pandera schema rejects, as violations with file lines."""
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        return [_violation(row["index"], row["column"], row["failure_case"], f"fails {row['check']}")
                if pd.notna(row["index"]) else
                {"line": None, "column": row["column"], "value": excerpt(str(row["failure_case"])),
                 "problem": f"fails {row['check']}"}
                for _, row in cases.iterrows()]
    return []


def normalise(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[Violation]]:
    """Typed frame (Int64 columns) and every cell-level violation, parse errors first, then the schema's; a frame
    without `Class` (samples to score) is checked against the same rules for the other columns."""
    columns: dict[str, pd.Series] = {}
    violations: list[Violation] = []
    for name in [ID, *FEATURES]:
        columns[name], found = parse_integers(raw[name], name, allow_missing=name in NULLABLE_FEATURES)
        violations += found
    if TARGET in raw:
        columns[TARGET], found = parse_labels(raw[TARGET])
        violations += found
    clean = pd.DataFrame(columns, index=raw.index)
    schema = CLEAN_SCHEMA if TARGET in raw else SAMPLE_SCHEMA
    already = {(v["line"], v["column"]) for v in violations}
    violations += [v for v in schema_violations(clean, schema) if (v["line"], v["column"]) not in already]
    return clean, sorted(violations, key=lambda v: (v["line"] or 0, EXPECTED_COLUMNS.index(v["column"])
                                                    if v["column"] in EXPECTED_COLUMNS else 0))


def describe(violation: Violation) -> str:
    """One violation for a message: where, the cell's excerpt (already cut in the violation) and the problem."""
    value = "no value" if violation["value"] is None else f"'{violation['value']}'"
    return f"line {violation['line']}, column {violation['column']}: {value} {violation['problem']}"


def failure_message(path: Path, report_path: Path | None, violations: list[Violation], problems: list[str]) -> str:
    """The first violations and every data problem; where the report lists them all, when there is one."""
    shown = [describe(v) for v in violations[:SHOWN_VIOLATIONS]]
    more = len(violations) - len(shown)
    parts = [f"{path} failed validation with {len(violations)} cell violation(s) and {len(problems)} data "
             f"problem(s)" + (f"; all are listed in {report_path}" if report_path else ""), *shown]
    if more:
        parts.append(f"... and {more} more")
    return "\n  ".join(parts + problems)
