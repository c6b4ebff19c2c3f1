"""Grouped, stratified cross-validation folds in vectorised numpy: sklearn's StratifiedGroupKFold does Python work
per group and per fold (minutes on a million rows); this does a few sorts and array passes over all the rows.

Each group (an Id) takes the class of its worst row (the largest label, malignant for 0/1), as the preprocess
split does. Within each class, groups of several rows are dealt first, largest first, and the one-row groups
(most of them) then even out the folds: each fold gets a k-th of each class's rows, off by one row when there are
enough one-row groups, as sklearn's greedy StratifiedGroupKFold achieves with a Python loop over the groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.dataset import CLASS_NAMES
from utils.errors import DataValidationError

Fold = tuple[np.ndarray, np.ndarray]


def group_codes(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row's group as 0..G-1 (in order of first appearance; hashing, not sorting) and G."""
    codes, uniques = pd.factorize(np.asarray(groups), use_na_sentinel=False)
    return codes, len(uniques)


def class_counts(label_codes: np.ndarray, codes: np.ndarray, groups: int, classes: int) -> np.ndarray:
    """Rows of each class in each group, a groups x classes matrix."""
    return np.bincount(codes * classes + label_codes, minlength=groups * classes).reshape(groups, classes)


def group_classes(counts: np.ndarray) -> np.ndarray:
    """Each group's class: the largest label code it has rows of."""
    return counts.shape[1] - 1 - np.argmax(counts[:, ::-1] > 0, axis=1)


def require_groups_per_class(classes: np.ndarray, names: np.ndarray, n_splits: int) -> None:
    """An error naming each class that has fewer groups than folds (a fold would have no row of that class)."""
    per_class = np.bincount(classes, minlength=len(names))
    short = [f"class {CLASS_NAMES.get(name, name)} has {count} group(s)"
             for name, count in zip(names, per_class, strict=True) if count < n_splits]
    if short:
        raise DataValidationError(f"cannot make {n_splits} grouped stratified folds: {'; '.join(short)} "
                                  f"(a group counts for its largest label); each class needs at least {n_splits}")


def fill(loads: np.ndarray, count: int) -> np.ndarray:
    """How many of `count` one-row groups each fold takes so that the folds' rows come out as even as possible:
    the least loaded folds are filled up to a common level (water-filling over the k folds)."""
    order = np.argsort(loads, kind="stable")
    ordered = loads[order]
    for filled in range(1, len(loads) + 1):
        level = (count + ordered[:filled].sum()) // filled
        if filled == len(loads) or level <= ordered[filled]:
            break
    quotas = np.zeros(len(loads), dtype=np.int64)
    quotas[:filled] = level - ordered[:filled]
    quotas[:count - quotas.sum()] += 1  # the rounding remainder, fewer than `filled`, to the least loaded
    placed = np.empty_like(quotas)
    placed[order] = quotas
    return placed


def back_and_forth(count: int, n_splits: int) -> np.ndarray:
    """Folds 0..k-1, k-1..0, 0..k-1, ... for `count` items: dealt largest first, they even out."""
    turn, seat = np.divmod(np.arange(count), n_splits)
    return np.where(turn % 2 == 0, seat, n_splits - 1 - seat)


def deal(counts: np.ndarray, classes: np.ndarray, n_splits: int, rng: np.random.Generator) -> np.ndarray:
    """The fold of each group from its rows per class (`counts`, groups x classes) and its class. Per class,
    groups of several rows go first, largest first (ties shuffled), back and forth; then the one-row groups of
    each class, shuffled, bring every fold's rows of that class to within one of each other.
    A class whose folds would not all get one of its groups (few groups, far larger than the rest) is dealt
    round-robin instead. The loops run over the classes, never over the groups."""
    sizes = counts.sum(axis=1)
    order = rng.permutation(len(sizes))
    folds = np.empty(len(sizes), dtype=np.intp)
    several = order[sizes[order] > 1]
    several = several[np.lexsort((-sizes[several], classes[several]))]  # by class, then largest first
    for label in range(counts.shape[1]):
        members = several[classes[several] == label]
        folds[members] = back_and_forth(len(members), n_splits)
    loads = np.stack([np.bincount(folds[several], weights=counts[several, label], minlength=n_splits)
                      for label in range(counts.shape[1])], axis=1).astype(np.int64)
    for label in range(counts.shape[1]):
        single = order[(sizes[order] == 1) & (classes[order] == label)]
        folds[single] = np.repeat(np.arange(n_splits), fill(loads[:, label], len(single)))
        members = order[classes[order] == label]
        if np.bincount(folds[members], minlength=n_splits).min() == 0:
            folds[members] = np.arange(len(members)) % n_splits
    return folds


def grouped_stratified_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[Fold]:
    """(train_index, test_index) pairs usable as sklearn's `cv=`: each group in exactly one test fold, each
    fold's class shares close to the whole data's; the same inputs and seed give the same folds."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError(f"labels and groups must be 1-D and of one length, got shapes {labels.shape} and "
                         f"{groups.shape}")
    label_codes, names = pd.factorize(labels, sort=True)
    codes, count = group_codes(groups)
    counts = class_counts(label_codes, codes, count, len(names))
    classes = group_classes(counts)
    require_groups_per_class(classes, names, n_splits)
    row_folds = deal(counts, classes, n_splits, np.random.default_rng(seed))[codes]
    return [(np.flatnonzero(row_folds != fold), np.flatnonzero(row_folds == fold)) for fold in range(n_splits)]
