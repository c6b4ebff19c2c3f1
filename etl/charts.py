"""The run's two charts, a ROC curve and a confusion matrix, drawn with Pillow as PNG bytes.

Pillow rather than matplotlib: the charts are fixed and simple, and importing matplotlib alone takes longer than
everything else the evaluate step adds to pandas and sklearn (see `make bench`). Each chart is drawn at
`SUPERSAMPLE` times its size and scaled down, which smooths lines the way an anti-aliasing renderer would.
The output is byte-for-byte the same for the same input (no timestamps), so a retried step writes the same file.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 3
INK, GRID, CURVE, CHANCE = (33, 33, 33), (225, 225, 225), (31, 119, 180), (150, 150, 150)
LIGHTEST_CELL, DARKEST_CELL = (247, 251, 255), (8, 48, 107)  # the ends of a white-to-blue scale
TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

Box = tuple[float, float, float, float]  # left, top, right, bottom in output pixels


class Canvas:
    """A white image addressed in output pixels, drawn at SUPERSAMPLE times that size."""

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.image = Image.new("RGB", (width * SUPERSAMPLE, height * SUPERSAMPLE), "white")
        self.draw = ImageDraw.Draw(self.image)

    @staticmethod
    @functools.cache
    def font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        """Pillow's bundled font at `size` output pixels (loaded once per size)."""
        return ImageFont.load_default(size=size * SUPERSAMPLE)

    @staticmethod
    def scaled(*points: tuple[float, float]) -> list[tuple[float, float]]:
        return [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]

    def line(self, points: Sequence[tuple[float, float]], color: tuple[int, int, int], width: float = 1) -> None:
        self.draw.line(self.scaled(*points), fill=color, width=round(width * SUPERSAMPLE), joint="curve")

    def dashed(self, start: tuple[float, float], end: tuple[float, float], color: tuple[int, int, int],
               dash: float = 6) -> None:
        def at(share: float) -> tuple[float, float]:
            return start[0] + share * (end[0] - start[0]), start[1] + share * (end[1] - start[1])

        steps = max(1, int(math.dist(start, end) // dash))
        for index in range(0, steps, 2):
            self.line([at(index / steps), at(min(1.0, (index + 1) / steps))], color)

    def rectangle(self, box: Box, fill: tuple[int, int, int] | None = None,
                  outline: tuple[int, int, int] | None = None) -> None:
        left, top, right, bottom = box
        self.draw.rectangle([*self.scaled((left, top)), *self.scaled((right, bottom))], fill=fill, outline=outline,
                            width=SUPERSAMPLE)

    def text(self, xy: tuple[float, float], text: str, size: float = 11, anchor: str = "mm",
             color: tuple[int, int, int] = INK) -> None:
        """`anchor` as in Pillow: two letters, horizontal (l/m/r) then vertical (t/m/b)."""
        self.draw.text(self.scaled(xy)[0], text, fill=color, font=self.font(size), anchor=anchor)

    def title(self, x: float, y: float, text: str, size: float = 13) -> None:
        """A centred heading, made smaller until it fits the image's width (run ids can be long)."""
        while size > 7 and self.font(size).getlength(text) > (self.size[0] - 20) * SUPERSAMPLE:
            size -= 0.5
        self.text((x, y), text, size=size)

    def vertical_text(self, xy: tuple[float, float], text: str, size: float = 11) -> None:
        """Text reading bottom to top, centred on `xy` (a y-axis label)."""
        font = self.font(size)
        left, top, right, bottom = font.getbbox(text)
        label = Image.new("RGB", (right - left, bottom - top), "white")
        ImageDraw.Draw(label).text((-left, -top), text, fill=INK, font=font)
        label = label.transpose(Image.Transpose.ROTATE_90)
        x, y = self.scaled(xy)[0]
        self.image.paste(label, (round(x - label.width / 2), round(y - label.height / 2)))

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.resize(self.size, Image.Resampling.LANCZOS).save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()


def roc_curve_png(false_positive_rate: Sequence[float], true_positive_rate: Sequence[float], roc_auc: float,
                  title: str) -> bytes:
    """The ROC curve on a unit square, with the chance diagonal and the AUC in the legend."""
    canvas = Canvas(550, 550)
    left, top, right, bottom = plot = (75, 50, 525, 485)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + x * (right - left), bottom - y * (bottom - top)

    for tick in TICKS:
        canvas.line([at(tick, 0), at(tick, 1)], GRID)
        canvas.line([at(0, tick), at(1, tick)], GRID)
        canvas.text((at(tick, 0)[0], bottom + 6), f"{tick:.1f}", anchor="mt")
        canvas.text((left - 6, at(0, tick)[1]), f"{tick:.1f}", anchor="rm")
    canvas.dashed(at(0, 0), at(1, 1), CHANCE)
    canvas.line([at(x, y) for x, y in zip(false_positive_rate, true_positive_rate, strict=True)], CURVE, width=2)
    canvas.rectangle(plot, outline=INK)

    legend = (right - 215, bottom - 62, right - 12, bottom - 12)
    canvas.rectangle(legend, fill=(255, 255, 255), outline=GRID)
    canvas.line([(legend[0] + 10, legend[1] + 15), (legend[0] + 38, legend[1] + 15)], CURVE, width=2)
    canvas.text((legend[0] + 46, legend[1] + 15), f"model (ROC-AUC = {roc_auc:.3f})", anchor="lm")
    canvas.dashed((legend[0] + 10, legend[1] + 35), (legend[0] + 38, legend[1] + 35), CHANCE)
    canvas.text((legend[0] + 46, legend[1] + 35), "chance", anchor="lm")

    canvas.title((left + right) / 2, 25, title)
    canvas.text(((left + right) / 2, bottom + 40), "False positive rate (benign flagged)")
    canvas.vertical_text((22, (top + bottom) / 2), "True positive rate (malignant found)")
    return canvas.png()


def cell_color(count: int, largest: int) -> tuple[int, int, int]:
    """White for 0, dark blue for the largest count, linear in between."""
    share = count / largest if largest else 0.0
    return tuple(round(light + share * (dark - light))  # type: ignore[return-value]
                 for light, dark in zip(LIGHTEST_CELL, DARKEST_CELL, strict=True))


def confusion_matrix_png(counts: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> bytes:
    """A square matrix, actual classes as rows and predicted classes as columns, each cell with its count."""
    classes = len(class_names)
    canvas = Canvas(550, 495)
    left, top, cell = 165, 55, 170
    largest = max(max(row) for row in counts)
    for row, actual in enumerate(class_names):
        for column in range(classes):
            box = (left + column * cell, top + row * cell, left + (column + 1) * cell, top + (row + 1) * cell)
            color = cell_color(counts[row][column], largest)
            canvas.rectangle(box, fill=color, outline=(255, 255, 255))
            text_color = (255, 255, 255) if sum(color) < 3 * 140 else INK
            canvas.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), str(counts[row][column]), size=22,
                        color=text_color)
        canvas.text((left - 10, top + (row + 0.5) * cell), actual, anchor="rm")
    for column, predicted in enumerate(class_names):
        canvas.text((left + (column + 0.5) * cell, top + classes * cell + 8), predicted, anchor="mt")
    canvas.title(left + classes * cell / 2, 27, title)
    canvas.text((left + classes * cell / 2, top + classes * cell + 45), "Predicted label")
    canvas.vertical_text((left - 125, top + classes * cell / 2), "True label")
    return canvas.png()
