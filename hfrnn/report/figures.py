"""Saving the report's figures: PNG (200 dpi), SVG and PDF side by side, nothing clipped.

Every figure is laid out with matplotlib's constrained layout; before saving, :func:`fit_to_canvas`
draws it, measures every text that was drawn (titles, legends, axis labels, tick labels,
annotations) and widens or heightens the figure until all of them lie inside the canvas (a long
title over a single panel, a legend wider than its panels). :func:`text_outside` is the check the
tests run.
"""
from __future__ import annotations

import textwrap
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

DPI = 200                         # PNG resolution (SVG and PDF are vector)
FORMATS = ("png", "svg", "pdf")   # every figure is written in each, beside each other
_formats = list(FORMATS)          # what save_figure writes now (``use_formats``)
TOLERANCE_PX = 0.5                # a text may touch the canvas edge
# Reproducible, editable files: TrueType fonts in PDF, fixed SVG ids, no creation dates.
RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "hfrnn-report"}
METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}


@contextmanager
def _recording(boxes: list[tuple[Text, Bbox]]):
    """While active, every :class:`Text` drawn with visible, non-empty text is appended with its extent."""
    original = Text.draw

    def draw(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            boxes.append((self, self.get_window_extent(renderer)))

    Text.draw = draw
    try:
        yield boxes
    finally:
        Text.draw = original


def drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """Draw ``fig`` and return each text drawn with its window extent (pixels of the figure's canvas)."""
    boxes: list[tuple[Text, Bbox]] = []
    with _recording(boxes):
        fig.canvas.draw()
    return boxes


def text_outside(fig: Figure, tol: float = TOLERANCE_PX) -> list[str]:
    """The texts of ``fig`` that reach outside its canvas (empty when nothing would be clipped)."""
    w, h = fig.bbox.width, fig.bbox.height
    return [f"{t.get_text()!r} at ({b.x0:.0f}, {b.y0:.0f})-({b.x1:.0f}, {b.y1:.0f}) outside {w:.0f}x{h:.0f}"
            for t, b in drawn_texts(fig)
            if b.x0 < -tol or b.y0 < -tol or b.x1 > w + tol or b.y1 > h + tol]


def fit_to_canvas(fig: Figure, rounds: int = 6, margin_in: float = 0.08) -> None:
    """Grow ``fig`` until every drawn text lies inside its canvas (constrained layout re-flows the panels)."""
    for _ in range(rounds):
        boxes = [b for _, b in drawn_texts(fig)]
        if not boxes:
            return
        w, h = fig.bbox.width, fig.bbox.height
        over_w = max(0.0, -min(b.x0 for b in boxes)) + max(0.0, max(b.x1 for b in boxes) - w)
        over_h = max(0.0, -min(b.y0 for b in boxes)) + max(0.0, max(b.y1 for b in boxes) - h)
        if over_w <= TOLERANCE_PX and over_h <= TOLERANCE_PX:
            return
        wi, hi = fig.get_size_inches()
        fig.set_size_inches(wi + (over_w / fig.dpi + margin_in if over_w > TOLERANCE_PX else 0.0),
                            hi + (over_h / fig.dpi + margin_in if over_h > TOLERANCE_PX else 0.0))


def wrap_title(text: str, fig: Figure, fontsize: float) -> str:
    """``text`` broken into lines that fit the figure's width (DejaVu Sans: about 0.6 em a character)."""
    chars = max(24, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """The figure's title, wrapped to its width (:func:`fit_to_canvas` still grows the figure if needed)."""
    fig.suptitle(wrap_title(text, fig, fontsize), fontsize=fontsize)


@contextmanager
def use_formats(formats: list[str] | tuple[str, ...]):
    """While active, :func:`save_figure` writes only ``formats`` (PNG always; ``hfrnn report --formats``)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown figure format(s) {sorted(unknown)}; expected some of {FORMATS}")
    saved = _formats[:]
    _formats[:] = [f for f in FORMATS if f == "png" or f in formats]
    try:
        yield
    finally:
        _formats[:] = saved


def save_figure(fig: Figure, png: Path) -> list[Path]:
    """Fit ``fig`` to its canvas and write ``png`` (at :data:`DPI`) and its SVG and PDF twins
    (see :func:`use_formats`); returns the paths written, the PNG first."""
    png = Path(png)
    written = []
    with matplotlib.rc_context(RC):
        fit_to_canvas(fig)
        for fmt in list(_formats):
            path = png.with_suffix(f".{fmt}")
            fig.savefig(path, format=fmt, dpi=DPI, metadata=METADATA.get(fmt))  # fitted: no bbox_inches="tight"
            written.append(path)
    return written
