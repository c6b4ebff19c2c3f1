"""Score samples with the published champion: `python -m etl.predict INPUT.csv [--output predictions.csv]`
(`make predict INPUT=...`).

The model is the run named by RESULTS_DIR/champion.json (or by PREDICT_RUN; with neither, the newest published
run, `results/latest`, and the summary says so): a published run's folder directly inside RESULTS_DIR, never a
path, `..` or a link out; it is loaded from the very bytes whose sha256 matched the pointer and the run's
manifest (joblib runs code). The input is a regular file (a link, a FIFO or a device is refused unread) and
follows the data contract (etl/contract.py) with `Class` optional: when present it gives the
accuracy. Bad input is an error naming the file, line and column, and nothing is written. The output is never
the input, a link, a device or a folder, nor inside the project's state (results, runs, incoming, processed);
it appears whole or not at all, and no cell of it is a spreadsheet formula.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from etl import catalog, champion
from etl.dataset import FEATURES, ID, TARGET
from etl.publishers.local import LATEST_LINK
from utils.config import Settings, load_settings
from utils.errors import ArtifactError, ConfigError, DataValidationError, UnsafeFileError
from utils.files import atomic_path, kind_of, read_json, spreadsheet_cell
from utils.logger import configure_cli_logging, get_logger, run_command
from utils.telemetry import Sample

STEP = "predict"
DEFAULT_THRESHOLD = 0.5  # a plain Pipeline's predict(): the larger class probability
# predicted_class is the decision at operating_threshold (1 when probability_malignant is at least it): a row never
# shows a risk without the rule that labelled it.
PREDICTION_COLUMNS = [ID, "probability_malignant", "predicted_class", "operating_threshold", "model_run_id",
                      "model_sha256"]
IDENTITY_COLUMNS = PREDICTION_COLUMNS[3:]  # the same on every row: the rule and the model
PROBABILITY_DECIMALS = 6
WRITE_CHUNK_ROWS = 100_000
log = get_logger(STEP)


@dataclass(frozen=True)
class PublishedModel:
    """A published run's model, checked and loaded, with where it came from and its training profile."""

    name: str  # the published folder: <stamp>_<run id>
    run_id: str
    sha256: str
    threshold: float
    source: str  # how it was chosen, for people
    model: Any
    profile: dict[str, Any] | None  # None for runs published before training profiles existed

    def describe(self) -> dict[str, Any]:
        """The model's identity for summaries."""
        return {"name": self.name, "run_id": self.run_id, "model_sha256": self.sha256,
                "operating_threshold": self.threshold, "source": self.source}


class ChosenRun(NamedTuple):
    """The published run to score with: its folder (inside RESULTS_DIR), the model sha256 a pointer pins (if
    any), what named it (for errors) and why it was chosen (for people)."""

    folder: Path
    pinned: str | None
    named_by: str
    source: str


def choose_run(settings: Settings) -> ChosenRun:
    """PREDICT_RUN, else the champion, else the newest published run; each name must be a published run's folder
    directly inside RESULTS_DIR (champion.published_folder): a model is never loaded from anywhere else."""
    results = settings.results_dir
    if settings.predict_run:
        return ChosenRun(champion.published_folder(results, settings.predict_run, "PREDICT_RUN"), None,
                         "PREDICT_RUN", f"PREDICT_RUN={settings.predict_run}")
    pointer = champion.read_pointer(results)
    if pointer is not None:
        path = str(champion.pointer_path(results))
        return ChosenRun(champion.published_folder(results, pointer["name"], path), pointer["model_sha256"], path,
                         f"champion ({path})")
    latest = results / LATEST_LINK
    if latest.is_symlink():
        target = latest.resolve()
        if target.parent != results.resolve():
            raise UnsafeFileError(f"{latest} points outside RESULTS_DIR ({results}): no model is loaded from there")
        return ChosenRun(champion.published_folder(results, target.name, str(latest)), None, str(latest),
                         f"newest published run ({latest}): no {catalog.CHAMPION} yet, no run has been promoted")
    raise ArtifactError(f"no published model in RESULTS_DIR={results}: neither {catalog.CHAMPION} "
                        f"nor {LATEST_LINK} exists; publish one with `make run` first")


def load_published(settings: Settings) -> PublishedModel:
    """The chosen run's model, loaded from the very bytes whose sha256 matched the pointer's and the manifest's."""
    chosen = choose_run(settings)
    remedy = "publish the run again, or choose another with PREDICT_RUN"
    model, sha256 = champion.published_model(chosen.folder.parent, chosen.folder.name, remedy, chosen.pinned,
                                             chosen.named_by)
    manifest = read_json(chosen.folder / catalog.MANIFEST)
    profile_path = chosen.folder / catalog.TRAINING_PROFILE
    return PublishedModel(name=chosen.folder.name, run_id=str(manifest.get("run_id", chosen.folder.name)),
                          sha256=sha256, threshold=float(getattr(model, "threshold", DEFAULT_THRESHOLD)),
                          source=chosen.source, model=model,
                          profile=read_json(profile_path) if profile_path.is_file() else None)


def read_samples(path: Path) -> pd.DataFrame:
    """The samples of `path` (a regular file, never read through a link), typed, after the training data's cell
    rules (`Class` optional); an error naming the file, and the first lines and columns that break them."""
    from etl import contract

    clean, violations = contract.read_typed(path, optional=(TARGET,))
    if violations:
        raise DataValidationError(contract.failure_message(path, None, violations, []))
    return clean


def check_output(output: Path, source: Path, settings: Settings) -> None:
    """Refuse, naming the path and why, an output that would overwrite what it must not: anything that exists
    and is not a regular file (a link, a device, a FIFO, a folder), the input itself, or the project's state
    (RESULTS_DIR, RUNS_DIR, INCOMING_DIR, PROCESSED_DIR, the bundled data)."""
    try:
        mode: int | None = os.lstat(output).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"the output {output} cannot be used: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UnsafeFileError(f"the output {output} is {kind_of(mode)}: refused; expected a new file, or a regular "
                              "file to replace")
    if mode is not None and source.exists() and os.path.samefile(output, source):
        raise ConfigError(f"the output {output} is the input itself: refused; write the predictions elsewhere")
    written = output.resolve()
    for variable, kept in (("RESULTS_DIR", settings.results_dir), ("RUNS_DIR", settings.runs_dir),
                           ("INCOMING_DIR", settings.incoming_dir), ("PROCESSED_DIR", settings.processed_dir),
                           ("BUNDLED_DATA_PATH", settings.bundled_data_path)):
        if written.is_relative_to(kept.resolve()):
            raise ConfigError(f"the output {output} is inside {variable} ({kept}): the project's state is never "
                              "overwritten; write the predictions elsewhere")


def predict(published: PublishedModel, samples: pd.DataFrame) -> pd.DataFrame:
    """One row per sample: Id, probability of malignant, label at the operating threshold, the threshold and the
    model's identity."""
    features = samples[FEATURES].astype("float64")
    return pd.DataFrame({ID: samples[ID].to_numpy(),
                         "probability_malignant": published.model.predict_proba(features)[:, 1],
                         "predicted_class": np.asarray(published.model.predict(features), dtype="int64"),
                         "operating_threshold": published.threshold, "model_run_id": published.run_id,
                         "model_sha256": published.sha256},
                        columns=PREDICTION_COLUMNS)


def csv_fields(*values: str) -> str:
    """Values as one CSV row's fields, quoted where CSV needs it and never a formula, without the line end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(map(spreadsheet_cell, values))
    return buffer.getvalue()


def write_predictions(predictions: pd.DataFrame, target: Path) -> Path:
    """The predictions as CSV at `target`, atomically, the probability with PROBABILITY_DECIMALS decimals.

    Written row by row from plain integers, in chunks: pandas' to_csv takes ten seconds on a million rows, most
    of them formatting the floats."""
    scale = 10**PROBABILITY_DECIMALS
    micro = np.rint(predictions["probability_malignant"].to_numpy() * scale).astype("int64")
    ids, labels = predictions[ID].to_numpy().tolist(), predictions["predicted_class"].to_numpy().tolist()
    identity = (csv_fields(*map(str, predictions.loc[:, IDENTITY_COLUMNS].iloc[0])) if len(predictions) else "")
    with writing(target), atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        out.write(csv_fields(*PREDICTION_COLUMNS) + "\n")
        for start in range(0, len(ids), WRITE_CHUNK_ROWS):
            out.writelines(f"{i},{m // scale}.{m % scale:0{PROBABILITY_DECIMALS}d},{label},{identity}\n"
                           for i, m, label in zip(ids[start:start + WRITE_CHUNK_ROWS],
                                                  micro[start:start + WRITE_CHUNK_ROWS].tolist(),
                                                  labels[start:start + WRITE_CHUNK_ROWS], strict=True))
    return target


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """Turn an OSError while `target` is written (a parent that is a file, a full disk) into one clear line."""
    try:
        yield
    except OSError as exc:
        raise ArtifactError(f"cannot write {target}: {exc.strerror or exc}") from None


def summarise(path: Path, samples: pd.DataFrame, predictions: pd.DataFrame, published: PublishedModel,
              settings: Settings) -> dict[str, Any]:
    """Counts, the model, the accuracy when the input has `Class`, and the drift against the training rows."""
    from etl.drift import drift_summary

    labels = predictions["predicted_class"].to_numpy()
    share = float(labels.mean())
    summary: dict[str, Any] = {"input": str(path), "rows": len(samples), "model": published.describe(),
                               "predicted_malignant": int(labels.sum()), "predicted_malignant_share": round(share, 6)}
    if TARGET in samples:
        summary["accuracy"] = round(float((samples[TARGET].to_numpy(dtype="int64") == labels).mean()), 6)
    summary["drift"] = (drift_summary(published.profile, samples, share, settings.drift_psi_threshold)
                        if published.profile else
                        {"note": f"run {published.name} has no {catalog.TRAINING_PROFILE}: republish it to measure "
                                 "drift"})
    return summary


def drift_samples(summary: dict[str, Any]) -> list[Sample]:
    """The batch's drift as gauges: each feature's PSI and the PSI chance gives at the batch's size, the threshold,
    and both malignant shares. A feature drifted when its PSI is above both the threshold and its chance PSI: the
    ScoringBatchDrift alert compares these very gauges."""
    drift = summary["drift"]
    if "psi" not in drift:
        return []
    return [*(Sample("scoring_feature_psi", value, {"feature": name},
                     "Population stability index of the feature, last scored batch against the training rows.")
              for name, value in drift["psi"].items()),
            *(Sample("scoring_feature_chance_psi", value, {"feature": name},
                     "The PSI of the feature that chance alone exceeds with probability below the per-feature alpha "
                     "in a batch of the last one's size drawn from the training rows.")
              for name, value in drift["chance_psi"].items()),
            Sample("scoring_psi_threshold", drift["threshold"], help="DRIFT_PSI_THRESHOLD."),
            Sample("scoring_predicted_malignant_share", drift["predicted_malignant_share"],
                   help="Share of the last scored batch predicted malignant."),
            Sample("scoring_training_malignant_share", drift["training_malignant_share"],
                   help="Share of malignant rows among the champion's training rows."),
            Sample("scoring_rows", summary["rows"], help="Rows of the last scored batch."),
            Sample("scoring_last_batch_timestamp_seconds", time.time(), help="Unix time of the last scored batch.")]


def score_file(path: Path, output: Path, published: PublishedModel, settings: Settings) -> dict[str, Any]:
    """Validate and score `path` into `output` (atomically); returns the summary and pushes its drift gauges."""
    from utils.telemetry import push_metrics

    started = time.perf_counter()
    samples = read_samples(path)
    predictions = predict(published, samples)
    write_predictions(predictions, output)
    summary = {**summarise(path, samples, predictions, published, settings), "output": str(output),
               "seconds": round(time.perf_counter() - started, 3)}
    push_metrics(settings, "scoring", drift_samples(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    """The command line: score INPUT, print the summary as JSON, or one error line (exit status 1)."""
    parser = argparse.ArgumentParser(prog="python -m etl.predict", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="CSV with Id and the nine features (Class optional)")
    parser.add_argument("--output", type=Path, default=Path(catalog.PREDICTIONS),
                        help=f"where to write the predictions (default: ./{catalog.PREDICTIONS})")
    parser.add_argument("--run", default=None, help="a published run's folder name under RESULTS_DIR to score "
                        "with instead of the champion (default: PREDICT_RUN, else the champion)")
    args = parser.parse_args(argv)

    def work() -> dict[str, Any]:
        settings = load_settings(predict_run=args.run)
        configure_cli_logging(settings.log_level)
        check_output(args.output, args.input, settings)
        published = load_published(settings)
        log.info("scoring %s with run %s (%s)", args.input, published.name, published.source)
        return score_file(args.input, args.output, published, settings)

    return run_command(log, work)

if __name__ == "__main__":
    sys.exit(main())
