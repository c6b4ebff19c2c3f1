"""Names of the files in a run's folder, which step writes each, and the checksum chain that ties them together,
in one place, so that steps can find and check each other's outputs without importing each other (which would
also import each other's heavy libraries).

Every step writes a record (`<step>.json`) with the sha256 of each input it consumed and of each output it
wrote. `verify_chain` walks the records in step order and refuses a folder whose files no longer belong
together: an input that is not what its producer recorded, or an output that changed on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from utils.errors import ArtifactError
from utils.files import RUN_INFO_FILE as RUN_INFO  # written by load: when the run started
from utils.files import read_json, remove_stale_temporaries, require_file, sha256_file

STEPS = ("load", "preprocess", "train", "evaluate", "upload")  # the order the steps run in

RAW = "raw.csv"  # load: the CSV exactly as obtained
LOAD_INFO = "load.json"  # load: source, location, rows, sha256
VALIDATION_REPORT = "validation_report.json"  # preprocess: every violation, or the data's profile
TRAIN = "train.csv"  # preprocess
TEST = "test.csv"  # preprocess
PREPROCESS_INFO = "preprocess.json"  # preprocess: counts
MODEL = "model.joblib"  # train: the fitted sklearn Pipeline
TRAIN_INFO = "train.json"  # train: model sha256, cross-validation scores
METRICS = "metrics.json"  # evaluate
ROC_CURVE = "roc_curve.png"  # evaluate
PRECISION_RECALL_CURVE = "precision_recall_curve.png"  # evaluate
CONFUSION_MATRIX = "confusion_matrix.png"  # evaluate
CALIBRATION_CURVE = "calibration_curve.png"  # evaluate
CHARTS = (ROC_CURVE, PRECISION_RECALL_CURVE, CONFUSION_MATRIX, CALIBRATION_CURVE)  # evaluate: for people
REPORT = "report.md"  # evaluate
EVALUATE_INFO = "evaluate.json"  # evaluate: what it scored and wrote
MANIFEST = "manifest.json"  # upload: checksums, settings, versions
UPLOAD_INFO = "upload.json"  # upload: where the run was published

PRODUCED_BY = {RUN_INFO: "load", RAW: "load", LOAD_INFO: "load", VALIDATION_REPORT: "preprocess", TRAIN: "preprocess",
               TEST: "preprocess", PREPROCESS_INFO: "preprocess", MODEL: "train", TRAIN_INFO: "train",
               METRICS: "evaluate", **dict.fromkeys(CHARTS, "evaluate"), REPORT: "evaluate",
               EVALUATE_INFO: "evaluate", MANIFEST: "upload", UPLOAD_INFO: "upload"}
RECORD_OF = {"load": LOAD_INFO, "preprocess": PREPROCESS_INFO, "train": TRAIN_INFO, "evaluate": EVALUATE_INFO,
             "upload": UPLOAD_INFO}  # each step's record, written last, once its outputs are complete


def require(folder: Path, name: str) -> Path:
    """The run folder's file `name`; if it is missing, an error naming the step that writes it."""
    return require_file(folder / name, PRODUCED_BY[name])


def begin_step(folder: Path, step: str) -> None:
    """Prepare the folder for `step` (call it while holding the folder): remove temporaries a killed writer
    left, and the outputs of this step and of every later one, so that a rerun or a failure of `step` never
    leaves downstream files from an earlier attempt for the next step to pick up."""
    remove_stale_temporaries(folder)
    invalidated = set(STEPS[STEPS.index(step):])
    for name, producer in PRODUCED_BY.items():
        if producer in invalidated:
            (folder / name).unlink(missing_ok=True)


def lineage(folder: Path, inputs: Iterable[str], outputs: Iterable[str]) -> dict[str, dict[str, str]]:
    """The `inputs` / `outputs` part of a step's record: the sha256 of each named file in the folder."""
    return {"inputs": {name: sha256_file(folder / name) for name in inputs},
            "outputs": {name: sha256_file(folder / name) for name in outputs}}


def verify_chain(folder: Path, through: str) -> dict[str, dict[str, Any]]:
    """Check the records of every step up to and including `through`; returns the records by step.

    Each recorded input must be what its producing step recorded as output, and each recorded output must still
    have its recorded sha256 on disk. Raises ArtifactError naming the file and the step to rerun.
    """
    records: dict[str, dict[str, Any]] = {}
    produced: dict[str, str] = {}
    for step in STEPS[:STEPS.index(through) + 1]:
        record = read_json(require(folder, RECORD_OF[step]))
        for name, digest in record.get("inputs", {}).items():
            if produced.get(name) != digest:
                raise ArtifactError(f"{folder / name}: step {step} consumed a version (sha256 {digest[:12]}…) that "
                                    f"is not the one {PRODUCED_BY[name]} recorded: the run's files do not belong "
                                    f"together (a step was rerun, or another process wrote this run); rerun from "
                                    f"{PRODUCED_BY[name]}")
        for name, digest in record.get("outputs", {}).items():
            actual = sha256_file(require(folder, name))
            if actual != digest:
                raise ArtifactError(f"{folder / name} has sha256 {actual[:12]}…, but {step} recorded "
                                    f"{digest[:12]}… when it wrote it: the file changed afterwards; rerun from "
                                    f"{step}")
            produced[name] = digest
        records[step] = record
    return records
