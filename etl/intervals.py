"""95% intervals for every reported number: exact binomial intervals for the shares at the operating threshold, and a
cluster bootstrap over patient Ids for the curve and calibration metrics and for the champion/challenger gap.

The bootstrap never calls scikit-learn per replicate. A weighted statistic depends only on the distinct
(label, probability[, second probability]) rows, the *atoms*, and their weights. Ids holding the same multiset of
atoms (their *composition*) are interchangeable, so one replicate is a multinomial draw of G Ids among the
composition types (the same distribution as drawing G of the G Ids with replacement), and its atom weights are
those multiplicities times the composition matrix. Every statistic is then computed for all replicates at once
on a (replicates x atoms) weight matrix, in chunks that bound the memory.

At scale the atoms stay few: probabilities that take more than MAX_EXACT_LEVELS distinct values (the mean of
repeated out-of-fold probabilities over 800k training rows takes about as many) are rounded to
RESOLUTION_DECIMALS decimals first, which moves an AUC, a Brier score or a calibration fit by less than the
rounding itself (1e-4) and bounds the atoms of one model at 2 x 10,001; the record says so ("rounded_to_decimals").
With few distinct values (the bundled data: a few hundred) nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit
from scipy.stats import binomtest

CONFIDENCE = 0.95
BOOTSTRAP_METHOD = "cluster bootstrap over Ids, percentile"
MIN_REPLICATES = 200  # the cap on the work never takes the replicates below this
MAX_CELLS = 20_000_000  # replicates x max(composition types, atoms) one call may compute
CHUNK_CELLS = 4_000_000  # weight-matrix cells held at once (32 MB of float64)
CLIP = 1e-12  # probabilities are clipped to [CLIP, 1 - CLIP] before the logit
NEWTON_ITERATIONS, NEWTON_TOLERANCE = 50, 1e-10
MAX_EXACT_LEVELS = 20_000  # distinct probabilities of one model beyond which they are rounded
RESOLUTION_DECIMALS = 4
NEWTON_REACH = 5.0  # the most one Newton step may move the linear predictor (logit units)

Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def proportion(successes: int, trials: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """`successes` of `trials` with its exact (Clopper-Pearson) interval; no trials gives no estimate (None)."""
    successes, trials = int(successes), int(trials)
    record = {"estimate": None, "lower": None, "upper": None, "successes": successes, "trials": trials,
              "method": "Clopper-Pearson exact"}
    if trials:
        interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
        record |= {"estimate": successes / trials, "lower": float(interval.low), "upper": float(interval.high)}
    return record


def threshold_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                        confidence: float = CONFIDENCE) -> dict[str, dict]:
    """The 2x2 table at `threshold` (positive when the probability is at least it) and every share of it with its
    exact interval: recall (sensitivity), specificity, precision (PPV), npv, accuracy and prevalence."""
    labels, flagged = np.asarray(labels) == 1, np.asarray(probabilities) >= threshold
    tp, fp = int(np.sum(labels & flagged)), int(np.sum(~labels & flagged))
    fn, tn = int(np.sum(labels & ~flagged)), int(np.sum(~labels & ~flagged))
    shares = {"recall": (tp, tp + fn), "specificity": (tn, tn + fp), "precision": (tp, tp + fp),
              "npv": (tn, tn + fn), "accuracy": (tp + tn, labels.size), "prevalence": (tp + fn, labels.size)}
    return {"confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
            **{name: proportion(*counts, confidence) for name, counts in shares.items()}}


# Weighted statistics: `weights` is (replicates x atoms), one row a replicate; each returns one value per row.

def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the statistic is undefined there)."""
    return np.divide(numerator, denominator, out=np.full(np.shape(numerator), np.nan), where=denominator > 0)


def _zero_if_undefined(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's `zero_division=0`)."""
    return np.nan_to_num(_ratio(numerator, denominator), nan=0.0)


def level_sums(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct probability, in ascending probability (ties pooled)."""
    order = np.argsort(probabilities, kind="stable")
    ordered = probabilities[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sorted_weights, positive = weights[:, order], labels[order] == 1
    sums = np.where(positive, sorted_weights, 0.0), np.where(positive, 0.0, sorted_weights)
    if starts.size == ordered.size:  # no ties: pooling would only copy
        return sums
    return tuple(np.add.reduceat(weight, starts, axis=1) for weight in sums)


def roc_auc_of_levels(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """The area under the ROC curve from `level_sums`: the weighted share of (positive, negative) pairs ranked
    right, ties counting one half."""
    negatives_below = np.cumsum(negative, axis=1) - negative
    pairs_right = np.sum(positive * (negatives_below + 0.5 * negative), axis=1)
    return _ratio(pairs_right, positive.sum(axis=1) * negative.sum(axis=1))


def average_precision_of_levels(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Average precision from `level_sums`: the precision at each distinct threshold (descending), weighted by
    the recall it adds."""
    positives_below, negatives_below = np.cumsum(positive, axis=1), np.cumsum(negative, axis=1)
    positives_above = positives_below[:, -1:] - positives_below + positive  # at or above each level
    flagged_above = positives_above + negatives_below[:, -1:] - negatives_below + negative
    precision = np.divide(positives_above, flagged_above, out=np.zeros_like(positives_above),
                          where=flagged_above > 0)
    return _ratio(np.sum(positive * precision, axis=1), positive.sum(axis=1))


def weighted_roc_auc(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """scikit-learn's `roc_auc_score` with `sample_weight`, per row of `weights`."""
    return roc_auc_of_levels(*level_sums(weights, labels, probabilities))


def weighted_average_precision(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """scikit-learn's `average_precision_score` with `sample_weight`, per row of `weights`."""
    return average_precision_of_levels(*level_sums(weights, labels, probabilities))


def weighted_brier_score(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The weighted mean squared gap between probability and label."""
    return _ratio(weights @ (probabilities - labels) ** 2, weights.sum(axis=1))


def weighted_counts(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                    threshold: float) -> dict[str, np.ndarray]:
    """The weighted 2x2 table at `threshold` (positive when the probability is at least it), one per row."""
    positive, flagged = labels == 1, probabilities >= threshold
    return {"tp": weights @ (positive & flagged), "fp": weights @ (~positive & flagged),
            "fn": weights @ (positive & ~flagged), "tn": weights @ (~positive & ~flagged)}


def _recall(counts: dict[str, np.ndarray]) -> np.ndarray:
    return _zero_if_undefined(counts["tp"], counts["tp"] + counts["fn"])


def _specificity(counts: dict[str, np.ndarray]) -> np.ndarray:
    return _zero_if_undefined(counts["tn"], counts["tn"] + counts["fp"])


LABEL_METRICS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "recall": _recall,
    "specificity": _specificity,
    "precision": lambda c: _zero_if_undefined(c["tp"], c["tp"] + c["fp"]),
    "accuracy": lambda c: _ratio(c["tp"] + c["tn"], c["tp"] + c["tn"] + c["fp"] + c["fn"]),
    "f1": lambda c: _zero_if_undefined(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
    "balanced_accuracy": lambda c: (_recall(c) + _specificity(c)) / 2,
}
CURVE_METRICS: dict[str, Statistic] = {"roc_auc": weighted_roc_auc, "pr_auc": weighted_average_precision,
                                       "brier_score": weighted_brier_score}


def logit(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of p clipped to [CLIP, 1 - CLIP]."""
    clipped = np.clip(probabilities, CLIP, 1 - CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def weighted_logistic_fit(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                          fit_slope: bool) -> tuple[np.ndarray, np.ndarray]:
    """Intercept a and slope b of the weighted logistic regression P(label) = sigmoid(a + b * scores), one fit per
    row of `weights`, by Newton's method from a = 0, b = 1 (a calibrated model), each step moving the linear
    predictor by at most NEWTON_REACH (a full step from afar overshoots on extreme logits). Without `fit_slope`,
    b stays 1 (`scores` is an offset). A row whose fit has not converged after NEWTON_ITERATIONS (e.g. perfectly
    separated rows, where no maximum exists) gets NaN."""
    intercept, slope = np.zeros(len(weights)), np.ones(len(weights))
    largest_score = np.abs(scores).max()
    converged = np.zeros(len(weights), dtype=bool)
    for _ in range(NEWTON_ITERATIONS):
        residual = slope[:, None] * scores  # in place from here on: these arrays are the size of `weights`
        residual += intercept[:, None]
        fitted = expit(residual, out=residual)
        curvature = 1 - fitted
        curvature *= fitted
        curvature *= weights
        residual = np.subtract(labels, fitted, out=fitted)
        residual *= weights
        gradient_a, hessian_aa = residual.sum(axis=1), curvature.sum(axis=1)
        if fit_slope:
            gradient_b, hessian_ab, hessian_bb = residual @ scores, curvature @ scores, curvature @ scores ** 2
            determinant = hessian_aa * hessian_bb - hessian_ab ** 2
            step_a = _ratio(hessian_bb * gradient_a - hessian_ab * gradient_b, determinant)
            step_b = _ratio(hessian_aa * gradient_b - hessian_ab * gradient_a, determinant)
        else:
            step_a, step_b = _ratio(gradient_a, hessian_aa), np.zeros_like(gradient_a)
        shrink = NEWTON_REACH / np.maximum(np.abs(step_a) + np.abs(step_b) * largest_score, NEWTON_REACH)
        step_a, step_b = step_a * shrink, step_b * shrink
        intercept, slope = intercept + step_a, slope + step_b
        converged = np.abs(step_a) + np.abs(step_b) < NEWTON_TOLERANCE
        if converged.all():
            break
    return np.where(converged, intercept, np.nan), np.where(converged, slope, np.nan)


def weighted_weak_calibration(weights: np.ndarray, labels: np.ndarray,
                              probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibration intercept (calibration-in-the-large: the intercept with logit(p) as offset) and calibration
    slope (the slope on logit(p)) per row of `weights` (Van Calster et al. 2019, "Calibration: the Achilles heel")."""
    scores = logit(probabilities)
    intercept, _ = weighted_logistic_fit(weights, labels, scores, fit_slope=False)
    _, slope = weighted_logistic_fit(weights, labels, scores, fit_slope=True)
    return intercept, slope


def curve_and_calibration_metrics(weights: np.ndarray, labels: np.ndarray,
                                  probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """`bootstrap_intervals`' five statistics per row of `weights`."""
    levels = level_sums(weights, labels, probabilities)
    intercept, slope = weighted_weak_calibration(weights, labels, probabilities)
    return {"roc_auc": roc_auc_of_levels(*levels), "pr_auc": average_precision_of_levels(*levels),
            "brier_score": weighted_brier_score(weights, labels, probabilities),
            "calibration_intercept": intercept, "calibration_slope": slope}


def metric_statistic(metric: str, threshold: float) -> Statistic:
    """The weighted statistic named `metric`: a curve metric, or a label metric at `threshold`."""
    if metric in CURVE_METRICS:
        return CURVE_METRICS[metric]
    if metric in LABEL_METRICS:
        return lambda w, y, p: LABEL_METRICS[metric](weighted_counts(w, y, p, threshold))
    raise ValueError(f"unknown metric {metric!r}: expected one of {sorted(CURVE_METRICS | LABEL_METRICS)}")


# The cluster bootstrap.

@dataclass(frozen=True)
class Atoms:
    """The distinct (label, probabilities...) rows of a data set, and how its Ids are made of them."""

    labels: np.ndarray  # (atoms,)
    probabilities: np.ndarray  # (models, atoms)
    atoms_per_type: sparse.csr_matrix  # (atoms, types): how many rows of each atom an Id of each type holds
    type_counts: np.ndarray  # (types,): how many Ids are of each type
    rounded_to_decimals: int | None = None  # the probabilities' resolution when they were rounded (at scale)

    @property
    def clusters(self) -> int:
        return int(self.type_counts.sum())

    @property
    def width(self) -> int:
        """The larger of atoms and types: a replicate's cost is proportional to it."""
        return max(self.atoms_per_type.shape)

    def weights(self, multiplicities: np.ndarray) -> np.ndarray:
        """(replicates, atoms) weights of (replicates, types) Id multiplicities."""
        return np.ascontiguousarray((self.atoms_per_type @ np.ascontiguousarray(multiplicities.T, dtype=float)).T)


def _unique_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `table`, sorted by the last column first, and each row's index among them."""
    order = np.lexsort(table.T)
    ordered = table[order]
    is_new = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)]
    index = np.empty(len(table), dtype=np.intp)
    index[order] = np.cumsum(is_new) - 1
    return ordered[is_new], index


def at_resolution(probabilities: list[np.ndarray]) -> tuple[list[np.ndarray], int | None]:
    """The probabilities as given, or all rounded to RESOLUTION_DECIMALS when one model's take more than
    MAX_EXACT_LEVELS distinct values; and the decimals they were rounded to (None: not rounded)."""
    arrays = [np.asarray(p, dtype=float) for p in probabilities]
    if all(np.unique(array).size <= MAX_EXACT_LEVELS for array in arrays):
        return arrays, None
    return [np.round(array, RESOLUTION_DECIMALS) for array in arrays], RESOLUTION_DECIMALS


def composition_types(sorted_atoms: np.ndarray, id_starts: np.ndarray) -> np.ndarray:
    """Each Id's composition type, 0..T-1, from its rows' atoms (sorted by Id, then atom; `id_starts` where each
    Id begins). One-row Ids (nearly all, at scale) are typed by their atom without a Python loop; only Ids of
    several rows are compared as tuples."""
    sizes = np.diff(np.r_[id_starts, sorted_atoms.size])
    single = sizes == 1
    single_types, type_of_id = np.unique(sorted_atoms[id_starts[single]], return_inverse=True)
    types = np.empty(id_starts.size, dtype=np.intp)
    types[single] = type_of_id
    type_index: dict[tuple[int, ...], int] = {}
    types[~single] = [single_types.size + type_index.setdefault(tuple(sorted_atoms[start:start + size].tolist()),
                                                                len(type_index))
                      for start, size in zip(id_starts[~single].tolist(), sizes[~single].tolist(), strict=True)]
    return types


def atoms_of(labels: np.ndarray, probabilities: list[np.ndarray], groups: np.ndarray) -> Atoms:
    """The atoms of rows `labels` x `probabilities` (one array per model) and the composition types of `groups`."""
    resolved, decimals = at_resolution(probabilities)
    table = np.column_stack([np.asarray(labels, dtype=float), *resolved])
    values, atom_of_row = _unique_rows(table)
    _, id_of_row = np.unique(np.asarray(groups), return_inverse=True)
    order = np.lexsort((atom_of_row, id_of_row))
    sorted_atoms, sorted_ids = atom_of_row[order], id_of_row[order]
    id_starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    type_of_id = composition_types(sorted_atoms, id_starts)
    spelled_out = np.isin(sorted_ids, np.unique(type_of_id, return_index=True)[1])  # the first Id of each type
    atoms_per_type = sparse.csr_matrix(
        (np.ones(spelled_out.sum()), (sorted_atoms[spelled_out], type_of_id[sorted_ids[spelled_out]])),
        shape=(len(values), int(type_of_id.max()) + 1))
    return Atoms(values[:, 0], values[:, 1:].T, atoms_per_type, np.bincount(type_of_id).astype(float), decimals)


def affordable_replicates(atoms: Atoms, replicates: int) -> int:
    """`replicates`, or fewer (never below MIN_REPLICATES) when replicates x max(types, atoms) exceeds MAX_CELLS."""
    return min(replicates, max(MIN_REPLICATES, MAX_CELLS // atoms.width))


def replicate_weights(atoms: Atoms, replicates: int, seed: int) -> Iterator[np.ndarray]:
    """The atom weights of `replicates` cluster-bootstrap replicates, in chunks of rows (replicates x atoms):
    G Ids drawn with replacement among the G, as one multinomial draw over the composition types."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // atoms.width)
    shares = atoms.type_counts / atoms.clusters
    for start in range(0, replicates, chunk):
        yield atoms.weights(rng.multinomial(atoms.clusters, shares, size=min(chunk, replicates - start)))


def _json_number(value: float) -> float | None:
    """A float, or None for NaN (JSON has no NaN)."""
    return None if np.isnan(value) else float(value)


def _percentile_record(estimate: float, values: np.ndarray, confidence: float) -> dict[str, Any]:
    """The estimate with the percentile interval of its replicate `values` (undefined replicates left out)."""
    tail = (1 - confidence) / 2
    defined = values[~np.isnan(values)]
    lower, upper = np.quantile(defined, [tail, 1 - tail]) if defined.size else (np.nan, np.nan)
    return {"estimate": _json_number(estimate), "lower": _json_number(lower), "upper": _json_number(upper),
            "undefined_replicates": int(values.size - defined.size)}


def cluster_bootstrap(atoms: Atoms, statistics: Callable[[np.ndarray], dict[str, np.ndarray]], *, replicates: int,
                      seed: int, confidence: float) -> dict[str, dict]:
    """Each of `statistics` (named arrays, one value per row of a weight matrix) on the data as given, with its
    percentile interval over the cluster-bootstrap replicates."""
    used = affordable_replicates(atoms, replicates)
    original = atoms.weights(atoms.type_counts[None, :])
    per_chunk = [statistics(weights) for weights in replicate_weights(atoms, used, seed)]
    common = {"method": BOOTSTRAP_METHOD, "replicates": used, "replicates_requested": replicates,
              "clusters": atoms.clusters, "seed": seed, "rounded_to_decimals": atoms.rounded_to_decimals}
    return {name: {**_percentile_record(estimate[0], np.concatenate([values[name] for values in per_chunk]),
                                        confidence), **common}
            for name, estimate in statistics(original).items()}


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, *, replicates: int,
                        seed: int, confidence: float = CONFIDENCE) -> dict[str, dict]:
    """roc_auc, pr_auc, brier_score, calibration_intercept and calibration_slope, each with its estimate on the data
    as given and a percentile interval from a cluster bootstrap over `groups` (patient Ids).

    Cost: replicates x max(composition types, atoms) cells. Integer-featured probabilities have a few hundred
    atoms and 1000 replicates are cheap; with many types (e.g. 200k distinct continuous probabilities) the
    replicates are reduced to MAX_CELLS / types, never below MIN_REPLICATES: "replicates" records how many were
    drawn, "replicates_requested" how many were asked for. Replicates where a statistic is undefined (no
    positives, a calibration fit that does not converge) are left out of its interval and counted in
    "undefined_replicates"."""
    atoms = atoms_of(labels, [probabilities], groups)
    return cluster_bootstrap(atoms, lambda weights: curve_and_calibration_metrics(weights, atoms.labels,
                                                                                   atoms.probabilities[0]),
                             replicates=replicates, seed=seed, confidence=confidence)


def paired_difference(labels: np.ndarray, challenger: np.ndarray, champion: np.ndarray, groups: np.ndarray, *,
                      metric: str, thresholds: tuple[float, float], replicates: int, seed: int,
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """`metric` of the challenger minus that of the champion on the same rows, with a paired cluster-bootstrap
    percentile interval (both models scored on the same resampled Ids in every replicate). Label metrics are taken
    at each model's own threshold, `thresholds` = (challenger's, champion's). Cost and cap as
    `bootstrap_intervals`'."""
    atoms = atoms_of(labels, [challenger, champion], groups)
    statistics = [metric_statistic(metric, threshold) for threshold in thresholds]

    def both_and_difference(weights: np.ndarray) -> dict[str, np.ndarray]:
        challenger_value, champion_value = (statistic(weights, atoms.labels, model_probabilities)
                                            for statistic, model_probabilities in zip(statistics,
                                                                                      atoms.probabilities,
                                                                                      strict=True))
        return {"challenger": challenger_value, "champion": champion_value,
                "difference": challenger_value - champion_value}

    records = cluster_bootstrap(atoms, both_and_difference, replicates=replicates, seed=seed, confidence=confidence)
    difference = records["difference"]
    return {"metric": metric, "challenger": records["challenger"]["estimate"],
            "champion": records["champion"]["estimate"], "difference": difference.pop("estimate"), **difference}
