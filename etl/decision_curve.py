"""Decision curve analysis (Vickers & Elkin 2006): the net benefit of biopsying by the model's probability, against
biopsying everyone or no one, over the threshold probabilities at which a clinician would biopsy.

A threshold probability pt weighs a missed cancer against an unneeded biopsy: biopsying at pt means an unneeded
biopsy counts pt / (1 - pt) as much harm as a found cancer's benefit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# 1% to 60%: a missed breast cancer weighs far more than a needle biopsy, so clinically relevant thresholds lie well
# below one half; the range runs past 0.5 to show where the model's default threshold falls.
DEFAULT_THRESHOLDS = tuple(round(step / 100, 2) for step in range(1, 61))


def net_benefit(labels: np.ndarray, probabilities: np.ndarray,
                thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """Per threshold probability pt (0 < pt < 1): the model's net benefit TP/n - FP/n * pt/(1 - pt), flagging
    rows whose probability is at least pt, that of treating all (every row flagged) and of treating none (0)."""
    labels, probabilities = np.asarray(labels) == 1, np.asarray(probabilities, dtype=float)
    rows, prevalence = labels.size, float(np.mean(labels))
    table = []
    for threshold in thresholds:
        if not 0 < threshold < 1:
            raise ValueError(f"a threshold probability lies strictly between 0 and 1, not {threshold}")
        odds = threshold / (1 - threshold)
        flagged = probabilities >= threshold
        true_positives, false_positives = int(np.sum(flagged & labels)), int(np.sum(flagged & ~labels))
        table.append({"threshold": float(threshold),
                      "model": true_positives / rows - false_positives / rows * odds,
                      "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": 0.0,
                      "true_positives": true_positives, "false_positives": false_positives, "rows": rows})
    return table
