"""Names of the files in a run's folder, in one place, so that steps can find each other's outputs without
importing each other (which would also import each other's heavy libraries)."""

from pathlib import Path

from utils.files import RUN_INFO_FILE as RUN_INFO  # written by load: when the run started
from utils.files import require_file

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
CONFUSION_MATRIX = "confusion_matrix.png"  # evaluate
REPORT = "report.md"  # evaluate
MANIFEST = "manifest.json"  # upload: checksums, settings, versions
UPLOAD_INFO = "upload.json"  # upload: where the run was published

PRODUCED_BY = {RUN_INFO: "load", RAW: "load", LOAD_INFO: "load", VALIDATION_REPORT: "preprocess", TRAIN: "preprocess",
               TEST: "preprocess", PREPROCESS_INFO: "preprocess", MODEL: "train", TRAIN_INFO: "train",
               METRICS: "evaluate", ROC_CURVE: "evaluate", CONFUSION_MATRIX: "evaluate", REPORT: "evaluate",
               MANIFEST: "upload", UPLOAD_INFO: "upload"}


def require(folder: Path, name: str) -> Path:
    """The run folder's file `name`; if it is missing, an error naming the step that writes it."""
    return require_file(folder / name, PRODUCED_BY[name])
