"""The data set's columns and accepted encodings, and how a split frame becomes model inputs.

Kept free of pandera and sklearn so that any step can import it cheaply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ID = "Id"
TARGET = "Class"
FEATURES = ["Cl.thickness", "Cell.size", "Cell.shape", "Marg.adhesion", "Epith.c.size", "Bare.nuclei",
            "Bl.cromatin", "Normal.nucleoli", "Mitoses"]
NULLABLE_FEATURES = {"Bare.nuclei"}
EXPECTED_COLUMNS = [ID, *FEATURES, TARGET]
SCORE_MIN, SCORE_MAX = 1, 10
MISSING_MARKERS = {"", "NA", "?"}
LABELS = {"0": 0, "1": 1, "benign": 0, "malignant": 1}
UCI_LABELS = {"2": 0, "4": 1}
CLASS_NAMES = {0: "benign (0)", 1: "malignant (1)"}  # for people: reports and charts


def features_and_labels(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features (float, NaN for missing), labels and Id groups of a train or test split."""
    return frame[FEATURES].astype("float64"), frame[TARGET].to_numpy(dtype=int), frame[ID].to_numpy()
