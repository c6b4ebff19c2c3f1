"""Step 5, upload: publish the run's artifacts with a manifest, locally (always) and to Google Drive when
STORAGE_BACKEND asks for it. A run whose model failed the quality gate is never published."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from etl import artifacts
from etl.publishers import LocalPublisher, RunBundle, remote_publishers
from utils.config import PROJECT_ROOT, Settings
from utils.errors import QualityGateError
from utils.files import (
    read_json,
    run_dir,
    run_stamp,
    run_started_at,
    sha256_file,
    write_json_atomic,
)
from utils.logger import get_logger
from utils.steps import cli_main
from utils.telemetry import Sample, push_metrics

STEP = "upload"
PUBLISHED_FILES = (artifacts.MODEL, artifacts.METRICS, *artifacts.CHARTS, artifacts.REPORT,
                   artifacts.VALIDATION_REPORT)
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
    records = artifacts.verify_chain(folder, through="evaluate")  # raw data -> splits -> model -> metrics
    files = [folder / name for name in PUBLISHED_FILES]
    metrics = read_json(folder / artifacts.METRICS)
    if not metrics.get("quality_gate", {}).get("passed"):
        raise QualityGateError(f"{folder / artifacts.METRICS} records a failed quality gate: the run is not published")
    stamp = run_stamp(run_started_at(folder))
    recorded = {name: digest for record in records.values() for name, digest in record["outputs"].items()}
    checksums = {name: recorded[name] for name in PUBLISHED_FILES}
    manifest = write_json_atomic(folder / artifacts.MANIFEST, build_manifest(
        settings, stamp, checksums, metrics, records["load"]))
    bundle = RunBundle(settings.run_id, stamp, (*files, manifest),
                       {**checksums, artifacts.MANIFEST: sha256_file(manifest)})
    local = LocalPublisher(settings.results_dir)
    results = [local.publish(bundle)]
    log.info("published run %s locally to %s", settings.run_id, results[0].location)
    for publisher in remote_publishers(settings):  # a bad Drive setting fails here, after the local copy
        results.append(publisher.publish(bundle))
        log.info("published run %s to %s: %s", settings.run_id, publisher.name, results[-1].location)
    local.point_latest_at(bundle)  # only now: `latest` names a run that every configured backend holds
    summary = {"stamp": stamp, "destinations": {r.backend: r.location for r in results},
               "files": sorted(bundle.checksums), "manifest_sha256": bundle.checksums[artifacts.MANIFEST]}
    write_json_atomic(folder / artifacts.UPLOAD_INFO, {
        **summary, "inputs": checksums, "outputs": {artifacts.MANIFEST: bundle.checksums[artifacts.MANIFEST]}})
    push_metrics(settings, STEP, [Sample("last_success_timestamp_seconds", time.time(),
                                         help="Unix time of the last published run.")])
    return summary


def main(argv: list[str] | None = None) -> int:
    return cli_main(STEP, run, argv)


if __name__ == "__main__":
    sys.exit(main())
