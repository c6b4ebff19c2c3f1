"""Step 2, preprocess: validate the raw CSV cell by cell, normalise its encodings, drop exact duplicate rows,
and split by Id (stratified, seeded) so that rows sharing an Id never land on both sides.

Rules, in order:
1. The file must be UTF-8 (a leading BOM is ignored), comma-separated, with each of the columns
   `Id, <9 features>, Class` exactly once, in any order (the outputs use this order), and one value per column on
   every line. Header names are compared exactly once surrounding spaces are trimmed: `class` or `Cell_size` is
   not `Class` or `Cell.size`.
2. Cells are stripped; `NA`, `?` and empty cells mean missing (allowed only in `Bare.nuclei`).
3. Scores must be integers 1-10; `Id` a non-negative integer.
4. `Class` is 0/1 or benign/malignant (any case); a file that uses only 2/4 is UCI's coding (2 benign, 4 malignant).
5. Exact duplicate rows (same Id and values) are dropped, keeping the first; repeated Ids with different values
   are kept and kept together in one split.
Every violation is listed with its file line and column in `validation_report.json`. Messages and the report quote
the file only through `utils.errors.excerpt` (at most 24 printable characters, `…` when cut) and list at most ten
column names, so that a wrong file (a key, a token) never ends up whole in a log, an alert or an artifact.
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
from pandera.errors import SchemaError, SchemaErrors
from sklearn.model_selection import train_test_split

from etl import catalog
from etl.dataset import (
    CLASS_NAMES,
    EXPECTED_COLUMNS,
    FEATURES,
    ID,
    LABELS,
    MISSING_MARKERS,
    NULLABLE_FEATURES,
    TARGET,
    UCI_LABELS,
)
from etl.drift import training_profile
from etl.run_folder import RunFolder
from etl.schema import CLEAN_SCHEMA, SAMPLE_SCHEMA, SPLIT_SCHEMA
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import DataValidationError, excerpt
from utils.files import read_regular, write_json_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "preprocess"
FIRST_DATA_LINE = 2  # line 1 of the file is the header
SHOWN_VIOLATIONS = 10
SHOWN_NAMES = 10  # unexpected or repeated column names listed in a message
log = get_logger(STEP)

Violation = dict[str, Any]


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


def dataset_problems(clean: pd.DataFrame, min_groups_per_class: int) -> list[str]:
    """Whole-data problems that make training impossible even when every cell is valid."""
    problems = [f"column {name} has no values at all" for name in FEATURES if clean[name].isna().all()]
    groups_per_class = clean.groupby(ID)[TARGET].max().value_counts()
    for label, name in CLASS_NAMES.items():
        count = int(groups_per_class.get(label, 0))
        if count < min_groups_per_class:
            problems.append(f"class {name} has {count} distinct Id(s); at least {min_groups_per_class} are "
                            "needed to split and cross-validate")
    return problems


def drop_exact_duplicates(clean: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows repeating an earlier row exactly (Id included); returns the frame and how many went."""
    duplicated = clean.duplicated(keep="first")
    return clean[~duplicated], int(duplicated.sum())


def split_by_id(clean: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split of the distinct Ids (an Id's class is its worst, i.e. max, label)."""
    id_labels = clean.groupby(ID)[TARGET].max()
    try:
        _, test_ids = train_test_split(id_labels.index.to_numpy(), test_size=test_size,
                                               stratify=id_labels.to_numpy(), random_state=seed)
    except ValueError as exc:
        raise DataValidationError(f"cannot split {len(id_labels)} Ids with TEST_SIZE={test_size}: {exc}") from None
    in_test = clean[ID].isin(test_ids)
    return clean[~in_test].reset_index(drop=True), clean[in_test].reset_index(drop=True)


def check_splits(train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Validate both outputs with the split schema and require disjoint Ids."""
    for name, frame in (("train", train), ("test", test)):
        try:
            SPLIT_SCHEMA.validate(frame)
        except (SchemaError, SchemaErrors) as exc:
            raise DataValidationError(f"the {name} split fails its schema: {exc}") from None
    shared = sorted(set(train[ID][train[ID].isin(test[ID])]))  # isin hashes; a set of every Id is slow
    if shared:
        raise DataValidationError(f"Ids {shared[:10]} are in both splits")


def build_report(path: Path, violations: list[Violation], problems: list[str],
                 clean: pd.DataFrame | None) -> dict[str, Any]:
    """The validation report saved beside the run's data, valid or not (`clean` is None when the file could not
    be read as a table at all; `problems` then says why)."""
    report: dict[str, Any] = {"file": str(path), "rows": None if clean is None else len(clean),
                              "valid": not violations and not problems,
                              "violation_count": len(violations), "violations": violations,
                              "dataset_problems": problems}
    if clean is not None and report["valid"]:
        report["missing_values"] = {name: int(clean[name].isna().sum()) for name in FEATURES}
        report["class_counts"] = {str(k): int(v) for k, v in clean[TARGET].value_counts().sort_index().items()}
        report["repeated_ids"] = int(clean[ID].duplicated(keep=False).groupby(clean[ID]).any().sum())
    return report


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


def validate(path: Path, min_groups_per_class: int) -> tuple[pd.DataFrame, list[Violation], list[str]]:
    """The typed frame of the CSV `path`, every cell violation and, when the cells are valid, the whole-data
    problems."""
    clean, violations = read_typed(path)
    return clean, violations, [] if violations else dataset_problems(clean, min_groups_per_class)


def split(clean: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Train and test splits of the valid frame (exact duplicates dropped, Ids disjoint) and how many rows went."""
    deduplicated, dropped = drop_exact_duplicates(clean)
    train, test = split_by_id(deduplicated, test_size, seed)
    check_splits(train, test)
    return train, test, dropped


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Validate, clean and split the run's raw CSV into train.csv and test.csv; the report is written either way."""
    raw_path, report_path = run.file(catalog.RAW), run.file(catalog.VALIDATION_REPORT)
    try:
        clean, violations, problems = validate(raw_path, min_groups_per_class=settings.cv_folds)
    except DataValidationError as exc:
        write_json_atomic(report_path, build_report(raw_path, [], [str(exc)], None))
        raise
    write_json_atomic(report_path, build_report(raw_path, violations, problems, clean))
    if violations or problems:
        raise DataValidationError(failure_message(raw_path, report_path, violations, problems))

    train, test, dropped = split(clean, settings.test_size, settings.seed)
    write_text_atomic(run.file(catalog.TRAIN), train.to_csv(index=False))
    write_text_atomic(run.file(catalog.TEST), test.to_csv(index=False))
    write_json_atomic(run.file(catalog.TRAINING_PROFILE), training_profile(train))  # drift is measured against it
    write_json_atomic(run.file(catalog.TRAINING_IDS), sorted(int(value) for value in train[ID].unique()))
    log.info("%d rows valid; %d exact duplicates dropped; train %d rows / test %d rows (Ids disjoint)",
             len(clean), dropped, len(train), len(test))
    counts = {"rows_in": len(clean), "duplicates_dropped": dropped, "rows_train": len(train), "rows_test": len(test)}
    return StepResult(
        record={**counts, "ids_train": int(train[ID].nunique()), "ids_test": int(test[ID].nunique())},
        summary=counts,
        samples=[Sample("rows_rejected", dropped, help="Rows dropped as exact duplicates."),
                 Sample("rows_train", len(train), help="Rows in the training split."),
                 Sample("rows_test", len(test), help="Rows in the test split.")])

