"""What the scoring tests share: a real published run (the in-process pipeline as a process), a champion pointer
made from it, and batches of samples drawn from the bundled rows, drifting or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from etl import catalog
from etl.dataset import FEATURES, ID, TARGET
from tests.support.data import BUNDLED_CSV
from utils.config import PROJECT_ROOT
from utils.files import read_json, write_json_atomic


def pipeline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for the project's commands with their own runs, results, incoming and processed folders."""
    return {**os.environ, "ENV_FILE": str(tmp_path / "none.env"), "RUNS_DIR": str(tmp_path / "runs"),
            "RESULTS_DIR": str(tmp_path / "results"), "INCOMING_DIR": str(tmp_path / "incoming"),
            "PROCESSED_DIR": str(tmp_path / "processed"), "STORAGE_BACKEND": "local",
            "DATA_URL": BUNDLED_CSV.as_uri(), **extra}


def publish_run(env: dict[str, str], run_id: str, **extra: str) -> Path:
    """Run the whole pipeline in one process (`python -m etl.pipeline`) and return the published folder."""
    result = subprocess.run([sys.executable, "-m", "etl.pipeline", "--run-id", run_id], env={**env, **extra},
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(env["RESULTS_DIR"]) / json.loads(result.stdout)["upload"]["name"]


def point_champion_at(published: Path) -> Path:
    """RESULTS_DIR/champion.json naming `published`, in the form of the champion contract."""
    manifest = read_json(published / catalog.MANIFEST)
    metrics = read_json(published / catalog.METRICS)
    return write_json_atomic(published.parent / catalog.CHAMPION, {
        "name": published.name, "run_id": manifest["run_id"], "model_sha256": manifest["files"][catalog.MODEL],
        "promoted_at": "2026-12-01T12:00:00+00:00", "operating_threshold": metrics["operating_threshold"],
        "metrics": {key: metrics[key] for key in catalog.HEADLINE_METRICS}})


def batch(rows: int, seed: int, drift: bool = False, with_class: bool = False) -> pd.DataFrame:
    """Bundled rows resampled with new Ids; `drift` shifts every score of the batch up by 3 (capped at 10)."""
    source = pd.read_csv(BUNDLED_CSV, dtype=str, keep_default_na=False)
    frame = source.iloc[np.random.default_rng(seed).integers(0, len(source), rows)].reset_index(drop=True)
    frame[ID] = np.arange(1, rows + 1) + seed * 1_000_000
    if drift:
        for name in FEATURES:
            scores = pd.to_numeric(frame[name], errors="coerce")
            shifted = scores.add(3).clip(upper=10).fillna(0).astype(int).astype(str)
            frame[name] = shifted.where(scores.notna(), "NA")
    return frame if with_class else frame.drop(columns=[TARGET])


def hand_off_batch(folder: Path, name: str, batch: pd.DataFrame | bytes) -> Path:
    """The batch (a frame, or the file's bytes) as `<folder>/<name>.csv`, handed off as writers must: written as
    `<name>.csv.part`, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    part = path.with_name(f"{path.name}.part")
    if isinstance(batch, bytes):
        part.write_bytes(batch)
    else:
        batch.to_csv(part, index=False)
    part.rename(path)
    return path


write_batch = hand_off_batch  # its earlier name, which the other scoring tests use
