"""The run's charts, drawn as a notebook draws them (scikit-learn's displays, or plain matplotlib where scikit-learn
has none) on matplotlib axes, as PNG bytes.

Each figure is a `matplotlib.figure.Figure` on an Agg canvas, so nothing depends on a display or on pyplot's
registry of open figures. The PNGs carry no software tag and no timestamp: the same input gives the same bytes,
so a retried step writes the same file and the checksum chain can record it.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

SIZE_INCHES, DPI = (5.5, 5.0), 100  # 550 x 500 pixels
MARGIN = 0.12  # inches of white around the drawing
CAPTION_CHARS = 70  # a longer caption (run ids can be long) is wrapped onto further lines
PNG_METADATA = {"Software": None}  # matplotlib's default names its version; PNG has no timestamp unless asked


def captioned_figure(caption: str) -> Figure:
    """A new figure on an Agg canvas with `caption` in small print at the bottom (wrapped to fit)."""
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout=ConstrainedLayoutEngine(w_pad=MARGIN, h_pad=MARGIN))
    FigureCanvasAgg(figure)
    figure.supxlabel(textwrap.fill(caption, CAPTION_CHARS, break_on_hyphens=False), fontsize="small",
                     color="dimgray")
    return figure


def headed(axes: Axes, title: str, grid: bool = True) -> Axes:
    """`axes` headed by `title`, with a light grid unless `grid` is off."""
    axes.set_title(title, fontsize="large", fontweight="bold")
    if grid:
        axes.grid(alpha=0.3)
    return axes


def titled_axes(title: str, caption: str, grid: bool = True) -> Axes:
    """The single axes of a new figure, headed by `title`, with `caption` in small print below."""
    return headed(captioned_figure(caption).add_subplot(), title, grid)


@dataclass(frozen=True)
class ScoredCurve:
    """A scikit-learn curve display with the name of its summary score, shown to 3 decimals in the legend
    (scikit-learn's own label rounds to 2, which shows an AUC of 0.995 as 1.00)."""

    display: type[RocCurveDisplay | PrecisionRecallDisplay]
    title: str
    score_name: str
    score_attribute: str  # the display's attribute that holds the score
    legend_at: str


ROC = ScoredCurve(RocCurveDisplay, "ROC curve", "AUC", "roc_auc", "lower right")
PRECISION_RECALL = ScoredCurve(PrecisionRecallDisplay, "Precision-recall curve", "AP", "average_precision",
                               "lower left")


def scored_curve(curve: ScoredCurve, labels: np.ndarray, probabilities: np.ndarray, model: str,
                 caption: str) -> Figure:
    """`curve` for the positive class (1) with the chance level, the model and its score in the legend."""
    axes = titled_axes(curve.title, caption)
    display = curve.display.from_predictions(labels, probabilities, pos_label=1, name=model, ax=axes,
                                             plot_chance_level=True)
    display.line_.set_label(f"{model} ({curve.score_name} = {getattr(display, curve.score_attribute):.3f})")
    axes.legend(loc=curve.legend_at)
    return axes.figure


def roc_curve(labels: np.ndarray, probabilities: np.ndarray, model: str, caption: str) -> Figure:
    """The ROC curve, with the chance diagonal and the AUC in the legend."""
    return scored_curve(ROC, labels, probabilities, model, caption)


def precision_recall_curve(labels: np.ndarray, probabilities: np.ndarray, model: str, caption: str) -> Figure:
    """The precision-recall curve, with the prevalence line and the average precision in the legend."""
    return scored_curve(PRECISION_RECALL, labels, probabilities, model, caption)


def calibration_curve(curve: list[dict], histogram: list[dict], model: str, caption: str) -> Figure:
    """A reliability diagram: the observed malignant share against the mean predicted probability per bin of
    `curve` (`calibration.reliability_curve`), with its 95% exact interval as error bars, and the diagonal of
    perfect calibration; beneath it, the rows per predicted-risk bin of `histogram`
    (`calibration.predicted_risk_histogram`)."""
    figure = captioned_figure(caption)
    axes, risks = figure.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    headed(axes, "Calibration (reliability diagram)")
    axes.plot([0, 1], [0, 1], linestyle=":", color="gray", label="Perfectly calibrated")
    predicted, observed = ([point[key] for point in curve] for key in ("mean_predicted", "observed"))
    below, above = ([abs(point[bound] - point["observed"]) for point in curve] for bound in ("lower", "upper"))
    axes.errorbar(predicted, observed, yerr=[below, above], fmt="o-", capsize=3, label=f"{model} (95% CI per bin)")
    axes.set(ylim=(-0.02, 1.02), ylabel="Observed malignant share")
    axes.legend(loc="upper left")
    risks.bar([row["from"] for row in histogram], [row["rows"] for row in histogram],
              width=[row["to"] - row["from"] for row in histogram], align="edge", color="tab:blue", alpha=0.6)
    risks.set(xlim=(-0.02, 1.02), xlabel="Predicted probability of malignancy", ylabel="Rows")
    return figure


def decision_curve(table: list[dict], operating_threshold: float, model: str, caption: str) -> Figure:
    """Net benefit against the threshold probability (`decision_curve.net_benefit`): the model, treating all and
    treating none, with the operating threshold marked. The y-axis stops a little below 0, where treating all
    plunges as the threshold grows."""
    axes = titled_axes("Decision curve", caption)
    thresholds = [row["threshold"] for row in table]
    for key, label, style in (("model", model, "-"), ("treat_all", "Biopsy all", "--"),
                              ("treat_none", "Biopsy none", ":")):
        axes.plot(thresholds, [row[key] for row in table], linestyle=style, label=label)
    axes.axvline(operating_threshold, color="gray", linewidth=1,
                 label=f"Operating threshold ({operating_threshold:.3f})")
    highest = max([row["model"] for row in table] + [row["treat_all"] for row in table] + [0.01])
    axes.set(ylim=(-0.1 * highest, 1.1 * highest), xlabel="Threshold probability", ylabel="Net benefit")
    axes.legend(loc="lower left")  # under treat-all's fall: the model's curve runs along the top
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
