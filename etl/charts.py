"""The run's four charts, drawn as a notebook draws them: scikit-learn's displays on matplotlib axes, as PNG bytes.

Each figure is a `matplotlib.figure.Figure` on an Agg canvas, so nothing depends on a display or on pyplot's
registry of open figures. The PNGs carry no software tag and no timestamp: the same input gives the same bytes,
so a retried step writes the same file and the checksum chain can record it.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

SIZE_INCHES, DPI = (5.5, 5.0), 100  # 550 x 500 pixels
MARGIN = 0.12  # inches of white around the drawing
CAPTION_CHARS = 70  # a longer caption (run ids can be long) is wrapped onto further lines
PNG_METADATA = {"Software": None}  # matplotlib's default names its version; PNG has no timestamp unless asked


def titled_axes(title: str, caption: str, grid: bool = True) -> Axes:
    """The single axes of a new figure, headed by `title`, with `caption` in small print below (wrapped to fit)."""
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout=ConstrainedLayoutEngine(w_pad=MARGIN, h_pad=MARGIN))
    FigureCanvasAgg(figure)
    figure.supxlabel(textwrap.fill(caption, CAPTION_CHARS, break_on_hyphens=False), fontsize="small",
                     color="dimgray")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize="large", fontweight="bold")
    if grid:
        axes.grid(alpha=0.3)
    return axes


def label_with_score(axes: Axes, line: Line2D, label: str, legend_at: str) -> None:
    """Name the curve `label` in the legend: scikit-learn's label rounds to 2 decimals, which shows 0.995 as 1.00."""
    line.set_label(label)
    axes.legend(loc=legend_at)


def roc_curve(labels: np.ndarray, probabilities: np.ndarray, model: str, caption: str) -> Figure:
    """The ROC curve of the positive class (1), with the chance diagonal and the AUC in the legend."""
    axes = titled_axes("ROC curve", caption)
    display = RocCurveDisplay.from_predictions(labels, probabilities, pos_label=1, name=model, ax=axes,
                                               plot_chance_level=True)
    label_with_score(axes, display.line_, f"{model} (AUC = {display.roc_auc:.3f})", "lower right")
    return axes.figure


def precision_recall_curve(labels: np.ndarray, probabilities: np.ndarray, model: str, caption: str) -> Figure:
    """The precision-recall curve of the positive class (1), with its average precision and the prevalence line."""
    axes = titled_axes("Precision-recall curve", caption)
    display = PrecisionRecallDisplay.from_predictions(labels, probabilities, pos_label=1, name=model, ax=axes,
                                                      plot_chance_level=True)
    label_with_score(axes, display.line_, f"{model} (AP = {display.average_precision:.3f})", "lower left")
    return axes.figure


def calibration_curve(labels: np.ndarray, probabilities: np.ndarray, model: str, caption: str) -> Figure:
    """The share of positives against the mean predicted probability, in scikit-learn's five equal-width bins."""
    axes = titled_axes("Calibration curve", caption)
    CalibrationDisplay.from_predictions(labels, probabilities, pos_label=1, name=model, ax=axes)
    axes.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    return axes.figure


def confusion_matrix(counts: Sequence[Sequence[int]], class_names: Sequence[str], caption: str) -> Figure:
    """Actual classes as rows, predicted classes as columns, each cell shaded by and labelled with its count."""
    axes = titled_axes("Confusion matrix", caption, grid=False)
    ConfusionMatrixDisplay(np.asarray(counts), display_labels=list(class_names)).plot(
        ax=axes, cmap="Blues", colorbar=False, text_kw={"fontsize": "x-large"})
    return axes.figure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, identical for identical figures."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=PNG_METADATA)
    return buffer.getvalue()
