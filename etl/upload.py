"""The upload step: publish the run's artifacts with a manifest, locally (always) and to Google Drive when
STORAGE_BACKEND asks for it. A run whose model failed the quality gate is never published."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from etl import catalog
from etl.publishers import LocalPublisher, RunBundle, remote_publishers
from etl.quality_gate import gated_metrics
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import PROJECT_ROOT, Settings
from utils.files import sha256_file, write_json_atomic
from utils.logger import get_logger
from utils.telemetry import Sample

STEP = "upload"
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


def build_manifest(run: RunFolder, settings: Settings, checksums: dict[str, str], metrics: dict[str, Any],
                   load_info: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to trace a published model back to its data, code, settings and environment."""
    return {"run_id": run.run_id, "run_stamp": run.stamp(), "data": {key: load_info[key] for key in
                                                                     ("source", "location", "sha256", "rows")},
            "settings": settings.public_dict(published=True), "packages": package_versions(),
            "git_commit": git_commit(),
            "metrics": {key: metrics[key] for key in (*catalog.TEST_METRICS, "confusion_matrix", "operating_threshold",
                                                      "intervals", "quality_gate")},
            "files": checksums}


def run(run: RunFolder, settings: Settings) -> StepResult:
    """Publish model, metrics, charts, reports and manifest of a run that passed the quality gate: locally, then
    to every remote backend; `results/latest` moves only when all of them hold the run."""
    metrics = gated_metrics(run)
    published = catalog.PUBLISHED
    checksums = {name: sha256_file(run.file(name)) for name in published}
    manifest = write_json_atomic(run.file(catalog.MANIFEST),
                                 build_manifest(run, settings, checksums, metrics, run.record("load")))
    bundle = RunBundle(run.run_id, run.published_name(), (*map(run.file, published), manifest),
                       {**checksums, catalog.MANIFEST: sha256_file(manifest)})
    local = LocalPublisher(settings.results_dir)
    results = [local.publish(bundle)]
    log.info("published run %s locally to %s", run.run_id, results[0].location)
    for publisher in remote_publishers(settings):  # a bad Drive setting fails here, after the local copy
        results.append(publisher.publish(bundle))
        log.info("published run %s to %s: %s", run.run_id, publisher.name, results[-1].location)
    local.point_latest_at(bundle)  # only now: `latest` names a run that every configured backend holds
    destinations = {result.backend: result.location for result in results}
    return StepResult(record={"name": bundle.name, "destinations": destinations},
                      summary={"name": bundle.name, "destinations": destinations},
                      samples=[Sample("last_success_timestamp_seconds", time.time(),
                                      help="Unix time of the last published run.")])

