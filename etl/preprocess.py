"""The preprocess step: validate the raw CSV against the data contract (etl/contract.py: reading, cell rules,
schemas, messages), reject data that cannot be trained on, drop exact duplicate rows, and split by Id (stratified,
seeded) so that rows sharing an Id never land on both sides.

Exact duplicate rows (same Id and values) are dropped, keeping the first; repeated Ids with different values are
kept and kept together in one split. Every violation is listed with its file line and column in
`validation_report.json`, which quotes the file only as the contract's messages do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pandera.errors import SchemaError, SchemaErrors
from sklearn.model_selection import train_test_split

from etl import catalog
from etl.contract import SPLIT_SCHEMA, Violation, failure_message, read_typed
from etl.dataset import CLASS_NAMES, FEATURES, ID, TARGET
from etl.drift import training_profile
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.errors import DataValidationError
from utils.files import write_json_atomic, write_text_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "preprocess"
log = get_logger(STEP)


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
    report: dict[str, Any] = {"file": path.name, "rows": None if clean is None else len(clean),
                              "valid": not violations and not problems,
                              "violation_count": len(violations), "violations": violations,
                              "dataset_problems": problems}
    if clean is not None and report["valid"]:
        report["missing_values"] = {name: int(clean[name].isna().sum()) for name in FEATURES}
        report["class_counts"] = {str(k): int(v) for k, v in clean[TARGET].value_counts().sort_index().items()}
        report["repeated_ids"] = int(clean[ID].duplicated(keep=False).groupby(clean[ID]).any().sum())
    return report


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

