"""A data set of any size drawn from the bundled CSV, for benchmarks: `python bench/make_data.py ROWS OUT [--seed S]`.

Whole Id groups are drawn with replacement, per class (a group's class is its worst label, as preprocess splits),
so each class keeps its share of the rows; every drawn group gets a fresh Id, so repeated draws are distinct
patients with the same rows. Cells are copied as text, so the features' distributions, the NA of `Bare.nuclei`
and the repeated-Id groups keep their bundled rates. The last group drawn for a class is cut to hit the row count
exactly. The rows come out shuffled, the same for the same seed, and the file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/make_data.py`

from etl.dataset import ID, TARGET  # noqa: E402
from utils.config import BUNDLED_DATA  # noqa: E402
from utils.files import atomic_path  # noqa: E402

FIRST_NEW_ID = 10_000_000  # above every bundled Id (at most 7 digits), so no generated Id is a bundled one


def read_source(path: Path) -> pd.DataFrame:
    """The source CSV as text cells (NA stays the string it is in the file), rows ordered by Id group."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    return frame.iloc[np.argsort(pd.factorize(frame[ID])[0], kind="stable")].reset_index(drop=True)


def draw_groups(sizes: np.ndarray, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Group indices drawn with replacement until they hold `rows` rows, and each one's row count (the last cut)."""
    drawn = np.empty(0, dtype=np.intp)
    while sizes[drawn].sum() < rows:
        drawn = np.concatenate([drawn, rng.integers(len(sizes), size=int(rows / sizes.mean() * 1.05) + 1)])
    ends = np.cumsum(sizes[drawn])
    drawn = drawn[:np.searchsorted(ends, rows) + 1]
    taken = sizes[drawn].copy()
    taken[-1] -= ends[len(drawn) - 1] - rows
    return drawn, taken


def generate(rows: int, seed: int, source: Path = BUNDLED_DATA) -> pd.DataFrame:
    """`rows` rows resampled by Id group, per class, from `source`, with fresh Ids, shuffled; same seed, same rows."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    frame = read_source(source)
    codes, _ = pd.factorize(frame[ID])
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_class = frame[TARGET].astype(int).groupby(codes).max().to_numpy()
    rng = np.random.default_rng(seed)
    picks, counts = [], []
    classes = np.unique(group_class)
    class_rows = np.bincount(group_class[codes], minlength=classes.max() + 1)[classes]
    targets = np.round(rows * class_rows / class_rows.sum()).astype(int)
    targets[-1] = rows - targets[:-1].sum()
    for label, target in zip(classes, targets, strict=True):
        if target == 0:
            continue
        members = np.flatnonzero(group_class == label)
        drawn, taken = draw_groups(sizes[members], int(target), rng)
        picks.append(members[drawn])
        counts.append(taken)
    picked, taken = np.concatenate(picks), np.concatenate(counts)
    offsets = np.arange(taken.sum()) - np.repeat(np.cumsum(taken) - taken, taken)
    result = frame.iloc[np.repeat(starts[picked], taken) + offsets].reset_index(drop=True)
    result[ID] = np.repeat(FIRST_NEW_ID + rng.permutation(len(picked)), taken).astype(str)
    return result.iloc[rng.permutation(len(result))].reset_index(drop=True)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write the generated rows as CSV atomically (readers never see a partial file)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, help="rows to generate")
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    write(generate(args.rows, args.seed), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
