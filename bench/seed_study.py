"""The seed study of issue 21: does the quality gate judge the model or the split?

For each seed and each data variant it runs load → preprocess → train (every candidate of CANDIDATES) → select →
evaluate in process (no Airflow, no Pushgateway, no alerts) on a copy of the bundled data in a temporary folder,
several runs side by side in a process pool, and prints what the gate decided with the test metrics, as Markdown
tables: a summary per variant, the range of each of the gate's checks per variant (when it records them), a row
per run. The variants: `default`, the bundled data as it is; `weak`, the same
file with a seeded 30% of its labels flipped (a different 30% for each seed), a model the gate must refuse.
Settings are the defaults and the environment's (`.env` is not read); the data, the folders and SEED are the study's.

    python -m bench.seed_study [--seeds 0-19] [--variants default,weak] [--workers 2] [--json rows.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etl import catalog
from etl.dataset import TARGET
from etl.pipeline import execute_for_candidates, execute_step
from etl.run_folder import RunFolder
from etl.steps import STEP
from utils.config import BUNDLED_DATA, Settings, load_settings
from utils.errors import QualityGateError
from utils.files import read_json

STUDIED_STEPS = ("load", "preprocess", "train", "select", "evaluate")  # up to the gate's verdict
DEFAULT_SEEDS = range(20)
WEAK_SHARE = 0.30  # of the labels flipped: too many for any model to pass the gate honestly
# Each label coding the data contract accepts, to its other class (the file keeps its own coding).
OTHER_LABEL = {"0": "1", "1": "0", "2": "4", "4": "2", "benign": "malignant", "malignant": "benign"}
# Facts some versions of metrics.json hold and others not: a column each, empty where absent. The gate's own
# checks, whatever they are, get a column each too (`gate_checks`).
OPTIONAL_FACTS = {"test recall lower": ("intervals", "recall", "lower")}


def swapped_label(line: str, column: int) -> str:
    """`line` with the label in cell `column` replaced by the other class; its quotes, spaces and line ending kept.
    Splitting on commas is exact here: no cell the data contract accepts holds one."""
    body = line.rstrip("\r\n")
    cells = body.split(",")
    label = cells[column].strip().strip('"')
    cells[column] = cells[column].replace(label, OTHER_LABEL[label.lower()])
    return ",".join(cells) + line[len(body):]


def flipped_labels(csv_bytes: bytes, share: float = WEAK_SHARE, *, seed: int) -> bytes:
    """The CSV with the label of round(`share` × rows) data rows, drawn with `seed`, swapped to the other class;
    every other byte as it was."""
    header, *rows = csv_bytes.decode("utf-8").splitlines(keepends=True)
    column = [name.strip() for name in next(csv.reader([header]))].index(TARGET)
    for index in np.random.default_rng(seed).choice(len(rows), size=round(share * len(rows)), replace=False):
        rows[index] = swapped_label(rows[index], column)
    return "".join([header, *rows]).encode("utf-8")


def unchanged(csv_bytes: bytes, *, seed: int) -> bytes:
    """The bundled data as it is, whatever the seed."""
    return csv_bytes


@dataclass(frozen=True)
class Variant:
    """A version of the bundled data the study runs the pipeline on, and what the gate should say of its model."""

    name: str
    data: Callable[..., bytes]  # data(bundled bytes, seed=seed): the CSV the pipeline reads for a seed
    should_pass: bool


VARIANTS = {variant.name: variant for variant in (
    Variant("default", unchanged, should_pass=True),
    Variant("weak", flipped_labels, should_pass=False),
)}


def study_settings(folder: Path, data: Path, seed: int) -> Settings:
    """The defaults (and the environment, not `.env`) with the study's data, seed and folders inside `folder`;
    nothing is pushed, posted or published."""
    return load_settings(env_file=Path(os.devnull), data_url=data.as_uri(), data_allowed_dirs=(folder,),
                         runs_dir=folder / "runs", results_dir=folder / "results", seed=seed,
                         storage_backend="local", pushgateway_url="", alert_webhook_url="", download_retries=0)


def run_steps(run: RunFolder, settings: Settings) -> None:
    """The studied steps in order, in this process; a failed gate is what the study records, not an error:
    evaluate writes metrics.json before it raises."""
    try:
        for name in STUDIED_STEPS:
            step = STEP[name]
            if step.per_candidate:
                execute_for_candidates(step, run, settings)
            else:
                execute_step(step, run, settings)
    except QualityGateError:
        pass


def nested(facts: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in nested dictionaries, or None where a key is missing."""
    for key in path:
        if not isinstance(facts, dict) or key not in facts:
            return None
        facts = facts[key]
    return facts


def check_name(check: dict[str, Any]) -> str:
    """How the tables name one check of the gate: the rows it reads, its figure and bound."""
    return f"{check['rows']} {check['figure']} {check['bound']}"


def study_row(variant: str, seed: int, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One run's line of the study, from its metrics.json."""
    gate = metrics["quality_gate"]
    return {"variant": variant, "seed": seed, "model": metrics.get("model"),
            "threshold": metrics["operating_threshold"], "recall": metrics["recall"],
            "specificity": metrics["specificity"], "roc_auc": metrics["roc_auc"],
            **{name: nested(metrics, path) for name, path in OPTIONAL_FACTS.items()},
            "gate_passed": gate["passed"], "gate_failures": gate.get("failures", []),
            "gate_checks": {check_name(check): check for check in gate.get("checks", [])}, "seconds": seconds}


def seed_run(variant: str, seed: int, work: Path) -> dict[str, Any]:
    """Run the studied steps for `seed` on the variant's data in a new folder under `work`; its study row."""
    folder = Path(tempfile.mkdtemp(prefix=f"{variant}-{seed}-", dir=work))
    data = folder / "data.csv"
    data.write_bytes(VARIANTS[variant].data(BUNDLED_DATA.read_bytes(), seed=seed))
    settings = study_settings(folder, data, seed)
    started = time.perf_counter()
    run = RunFolder.open(settings.runs_dir, f"{variant}-{seed}")
    run_steps(run, settings)
    return study_row(variant, seed, read_json(run.file(catalog.METRICS)), time.perf_counter() - started)


def run_study(seeds: Iterable[int], variants: Iterable[str], workers: int = 2) -> list[dict[str, Any]]:
    """Every (variant, seed) run, `workers` at a time, in temporary folders removed after; rows by variant, seed."""
    jobs = [(variant, seed) for variant in variants for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="seed-study-") as work, ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(seed_run, variant, seed, Path(work)) for variant, seed in jobs]
        return [future.result() for future in futures]


def spread(values: list[float]) -> str:
    """`mean [min–max]` of `values`, three decimals."""
    return f"{statistics.mean(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown table, its columns padded to line up in a terminal too."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    padded = [[cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
              for cells in [header, ["-" * width for width in widths], *lines]]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in padded)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per variant: what the gate should say and how often it passed; recall (and its seeds at 1.0), specificity,
    ROC-AUC, the thresholds."""
    lines = []
    for variant in dict.fromkeys(row["variant"] for row in rows):
        runs = {name: [row[name] for row in rows if row["variant"] == variant] for name in rows[0]}
        count = len(runs["seed"])
        lines.append([variant, "pass" if VARIANTS[variant].should_pass else "fail",
                      f"{sum(runs['gate_passed'])}/{count}", spread(runs["recall"]),
                      f"{runs['recall'].count(1.0)}/{count}", spread(runs["specificity"]), spread(runs["roc_auc"]),
                      f"{min(runs['threshold']):.4f}–{max(runs['threshold']):.4f}"])
    return markdown_table(["variant", "gate should", "gate passed", "recall mean [min–max]", "recall = 1.0",
                           "specificity mean [min–max]", "ROC-AUC mean [min–max]", "threshold min–max"], lines)


def readme_figures(rows: list[dict[str, Any]]) -> list[str]:
    """The study's figures as the READMEs quote them beside the one-split headline: the default model's ranges of
    test sensitivity, specificity and ROC-AUC over the seeds, and how often each variant passed the gate."""
    default = [row for row in rows if VARIANTS[row["variant"]].should_pass]
    ranges = [f"{min(row[name] for row in default):.3f}–{max(row[name] for row in default):.3f}"
              for name in ("recall", "specificity", "roc_auc")]
    variants = dict.fromkeys(row["variant"] for row in rows)
    passes = [f"{sum(row['gate_passed'] for row in rows if row['variant'] == variant)}/"
              f"{sum(row['variant'] == variant for row in rows)}" for variant in variants]
    return [*ranges, *passes]


def check_names(rows: list[dict[str, Any]]) -> list[str]:
    """Every gate check the rows hold, in the order the gate made them."""
    return list(dict.fromkeys(name for row in rows for name in row["gate_checks"]))


def check_table(rows: list[dict[str, Any]]) -> str:
    """Per variant and check of the gate: on how many seeds it passed, the range of its value, its minimum."""
    lines = []
    for variant in dict.fromkeys(row["variant"] for row in rows):
        runs = [row for row in rows if row["variant"] == variant]
        for name in check_names(runs):
            checks = [row["gate_checks"][name] for row in runs if name in row["gate_checks"]]
            values = [check["value"] for check in checks if check["value"] is not None]
            lines.append([variant, name, f"{sum(check['passed'] for check in checks)}/{len(checks)}",
                          f"{min(values):.3f}–{max(values):.3f}" if values else "none",
                          optional_cell(checks[0]["minimum"])])
    return markdown_table(["variant", "gate check", "passed", "value min–max", "minimum"], lines)


def check_cell(check: dict[str, Any] | None) -> str:
    """One check of a run's gate: its value, marked ✗ when it failed; empty when the gate had no such check."""
    if check is None:
        return ""
    return f"{optional_cell(check['value']) or 'none'}{'' if check['passed'] else ' ✗'}"


def optional_cell(value: Any) -> str:
    """A fact metrics.json may lack: a number to three decimals, anything else as it is, nothing as empty."""
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, int | float) else str(value)


def seed_table(rows: list[dict[str, Any]]) -> str:
    """A line per run: the model, its threshold, test metrics, the optional facts, each check of the gate and its
    verdict (its reasons in words are in the JSON rows)."""
    checks = check_names(rows)
    return markdown_table(
        ["variant", "seed", "model", "threshold", "recall", "specificity", "ROC-AUC", *OPTIONAL_FACTS, *checks,
         "gate", "seconds"],
        [[row["variant"], str(row["seed"]), str(row["model"]), f"{row['threshold']:.4f}", f"{row['recall']:.3f}",
          f"{row['specificity']:.3f}", f"{row['roc_auc']:.3f}",
          *(optional_cell(row[name]) for name in OPTIONAL_FACTS),
          *(check_cell(row["gate_checks"].get(name)) for name in checks), "pass" if row["gate_passed"] else "FAIL",
          f"{row['seconds']:.1f}"] for row in rows])


def seed_range(text: str) -> list[int]:
    """`0-19` or `0,3,5-7` as the seeds it names, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def variant_names(text: str) -> list[str]:
    """`default,weak` as variant names, each one of VARIANTS."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the study and print its tables and wall time; exit status 0 whatever the gate said."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed_study", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_range, default=list(DEFAULT_SEEDS),
                        help="e.g. 0-19 (the default) or 0,3,5-7")
    parser.add_argument("--variants", type=variant_names, default=list(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="runs side by side (default 2)")
    parser.add_argument("--json", type=Path, help="also write the rows, one object a run, to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run_study(args.seeds, args.variants, args.workers)
    wall = time.perf_counter() - started
    tables = [summary_table(rows), check_table(rows) if check_names(rows) else "", seed_table(rows),
              "README figures (sensitivity, specificity, ROC-AUC ranges; gate passes per variant): "
              + "; ".join(readme_figures(rows))]
    print(*filter(None, tables), sep="\n\n")
    print(f"\n{len(rows)} runs in {wall:.0f} s wall time with {args.workers} workers "
          f"({statistics.mean(row['seconds'] for row in rows):.1f} s a run)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
