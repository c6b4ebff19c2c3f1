"""Step 5, upload: publish the run's artifacts with a manifest, locally (always) and to Google Drive when
STORAGE_BACKEND asks for it. A run whose model failed the quality gate is never published."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from etl.evaluate import CONFUSION_FILE, METRICS_FILE, REPORT_FILE, ROC_FILE
from etl.load import LOAD_INFO_FILE
from etl.preprocess import REPORT_FILE as VALIDATION_REPORT_FILE
from etl.publishers import LocalPublisher, RunBundle, remote_publishers
from etl.train import INFO_FILE as TRAIN_INFO_FILE
from etl.train import MODEL_FILE
from utils.config import PROJECT_ROOT, Settings
from utils.errors import QualityGateError
from utils.files import (
    read_json,
    require_file,
    run_dir,
    run_stamp,
    run_started_at,
    sha256_file,
    verify_checksum,
    write_json_atomic,
)
from utils.logger import get_logger
from utils.steps import cli_main
from utils.telemetry import Sample, push_metrics

STEP = "upload"
MANIFEST_FILE = "manifest.json"
UPLOAD_INFO_FILE = "upload.json"
PUBLISHED_FILES = (MODEL_FILE, METRICS_FILE, ROC_FILE, CONFUSION_FILE, REPORT_FILE, VALIDATION_REPORT_FILE)
PRODUCED_BY = {MODEL_FILE: "train", METRICS_FILE: "evaluate", ROC_FILE: "evaluate", CONFUSION_FILE: "evaluate",
               REPORT_FILE: "evaluate", VALIDATION_REPORT_FILE: "preprocess"}
RECORDED_PACKAGES = ("apache-airflow", "pandas", "numpy", "scikit-learn", "pandera", "joblib", "matplotlib")
log = get_logger(STEP)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the model and its numbers."""
    versions = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The project's git commit, or 'unknown' outside a checkout (e.g. in the Docker image)."""
    try:
        result = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def build_manifest(settings: Settings, stamp: str, checksums: dict[str, str], metrics: dict[str, Any],
                   load_info: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to trace a published model back to its data, code, settings and environment."""
    return {"run_id": settings.run_id, "run_stamp": stamp, "data": {key: load_info[key] for key in
                                                                    ("source", "location", "sha256", "rows")},
            "settings": settings.public_dict(), "packages": package_versions(), "git_commit": git_commit(),
            "metrics": {key: metrics[key] for key in ("accuracy", "precision", "recall", "specificity", "f1",
                                                       "roc_auc", "pr_auc", "confusion_matrix", "quality_gate")},
            "files": checksums}


def run(settings: Settings) -> dict[str, Any]:
    """Publish model, metrics, plots, reports and manifest of a run that passed the quality gate."""
    folder = run_dir(settings.runs_dir, settings.run_id)
    files = [require_file(folder / name, PRODUCED_BY[name]) for name in PUBLISHED_FILES]
    metrics = read_json(folder / METRICS_FILE)
    if not metrics.get("quality_gate", {}).get("passed"):
        raise QualityGateError(f"{folder / METRICS_FILE} records a failed quality gate: the run is not published")
    verify_checksum(folder / MODEL_FILE, read_json(folder / TRAIN_INFO_FILE)["model_sha256"])
    remotes = remote_publishers(settings)  # configuration errors surface here, before anything is copied

    stamp = run_stamp(run_started_at(folder))
    checksums = {path.name: sha256_file(path) for path in files}
    manifest = write_json_atomic(folder / MANIFEST_FILE, build_manifest(
        settings, stamp, checksums, metrics, read_json(folder / LOAD_INFO_FILE)))
    bundle = RunBundle(settings.run_id, stamp, (*files, manifest),
                       {**checksums, MANIFEST_FILE: sha256_file(manifest)})
    results = [LocalPublisher(settings.results_dir).publish(bundle)]
    log.info("published run %s locally to %s", settings.run_id, results[0].location)
    for publisher in remotes:
        results.append(publisher.publish(bundle))
        log.info("published run %s to %s: %s", settings.run_id, publisher.name, results[-1].location)
    summary = {"stamp": stamp, "destinations": {r.backend: r.location for r in results},
               "files": sorted(bundle.checksums), "manifest_sha256": bundle.checksums[MANIFEST_FILE]}
    write_json_atomic(folder / UPLOAD_INFO_FILE, summary)
    push_metrics(settings, STEP, [Sample("last_success_timestamp_seconds", time.time(),
                                         help="Unix time of the last published run.")])
    return summary


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, run, argv)


if __name__ == "__main__":
    sys.exit(main())
