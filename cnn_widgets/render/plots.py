"""Pictures of a vector: a dense layer's output as a line plot and histogram, a classifier's
top-k as labelled bars.

Drawn with Pillow at a size chosen for reading (480 px wide by default), unlike the grids of
:mod:`cnn_widgets.render.views`, which keep one pixel per value. NaN and Inf never raise: they
are drawn in magenta and counted in ``meta["nonfinite"]``.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormaps import NONFINITE_COLOR
from .rendered import Rendered

RGB = tuple[int, int, int]

_BACKGROUND = (255, 255, 255)
_INK = (40, 40, 40)
_AXIS = (110, 110, 110)
_GRID = (215, 215, 215)
_LINE = (31, 119, 180)
_BAR = (31, 119, 180)


def dense_plot(
    vector: np.ndarray, *, width: int = 480, height: int = 240, bins: int = 100
) -> Rendered:
    """A dense layer's output: the values as a line (top) and a histogram of the positive ones.

    Parameters
    ----------
    vector:
        ``(N,)`` activations (other shapes are flattened).
    width, height:
        Picture size in pixels (at least 120 x 100).
    bins:
        Histogram bins.

    Returns
    -------
    Rendered
        ``meta``: ``kind``, ``size``, ``min``, ``max``, ``positive`` (count), ``nonfinite``.
        Non-finite positions are drawn as magenta lines in the top panel.
    """
    if width < 120 or height < 100:
        raise ValueError(f"dense_plot needs at least 120x100 pixels, got {width}x{height}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    values = np.asarray(vector, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    good = values[finite]
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()

    left, right = 48, width - 8
    top_box = (left, 6, right, height // 2 - 8)
    bottom_box = (left, height // 2 + 6, right, height - 16)
    _draw_series(draw, font, values, finite, top_box)
    positive = good[good > 0]
    _draw_histogram(draw, font, positive, bins, bottom_box)

    nonfinite = int(values.size - good.size)
    meta = {
        "kind": "dense",
        "size": int(values.size),
        "min": float(good.min()) if good.size else None,
        "max": float(good.max()) if good.size else None,
        "positive": int(positive.size),
        "nonfinite": nonfinite,
    }
    return Rendered(np.asarray(image), None, meta)


def topk_bars(
    probs: np.ndarray,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    k: int = 5,
    *,
    width: int = 480,
) -> Rendered:
    """The ``k`` largest outputs as labelled horizontal bars (a classifier's top-k).

    Parameters
    ----------
    probs:
        ``(N,)`` probabilities (or any scores; flattened).
    labels:
        Class names by index (a sequence or a mapping); missing ones show the index.
    k:
        How many classes.
    width:
        Picture width in pixels (at least 160); the height follows from ``k``.

    Returns
    -------
    Rendered
        ``meta["topk"]``: ``[(index, label, value), ...]`` best first; ``meta["nonfinite"]``
        counts NaN/Inf outputs, which are left out of the ranking and reported in magenta.
    """
    if width < 160:
        raise ValueError(f"topk_bars needs a width of at least 160 pixels, got {width}")
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = np.asarray(probs, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    nonfinite = int(values.size - finite.sum())
    ranked = np.argsort(-np.where(finite, values, -np.inf), kind="stable")
    best = ranked[: min(k, int(finite.sum()))]
    top = [(int(i), _label(labels, int(i)), float(values[i])) for i in best]

    row_h, margin = 20, 6
    note_h = 16 if nonfinite or not top else 0
    height = 2 * margin + max(len(top), 1) * row_h + note_h
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()

    good = values[finite]
    is_probability = good.size > 0 and good.min() >= 0.0 and good.max() <= 1.0
    scale = 1.0 if is_probability else max((abs(v) for _, _, v in top), default=1.0) or 1.0
    label_w = int(width * 0.4)
    value_w = 56
    bar_x0, bar_x1 = label_w + 6, width - value_w - 6
    for row, (_, label, value) in enumerate(top):
        y = margin + row * row_h
        _text(draw, (margin, y + 4), _fit(draw, font, label, label_w - margin - 4), _INK, font)
        length = round(max(value, 0.0) / scale * (bar_x1 - bar_x0))
        draw.rectangle((bar_x0, y + 3, bar_x1, y + row_h - 4), fill=(235, 235, 235))
        if length > 0:
            draw.rectangle((bar_x0, y + 3, bar_x0 + length, y + row_h - 4), fill=_BAR)
        number = f"{value:.1%}" if is_probability else f"{value:.3g}"
        _text(draw, (width - value_w, y + 4), number, _INK, font)
    if note_h:
        note = f"{nonfinite} non-finite value(s) left out" if nonfinite else "no values"
        # A solid swatch as well as the text: anti-aliased text alone has no pure marker pixel.
        y = height - margin - 11
        draw.rectangle((margin, y + 1, margin + 8, y + 9), fill=NONFINITE_COLOR)
        _text(draw, (margin + 14, y), note, NONFINITE_COLOR, font)

    meta = {"kind": "topk", "k": k, "topk": top, "nonfinite": nonfinite, "total": int(values.size)}
    return Rendered(np.asarray(image), None, meta)


def _label(labels: Sequence[str] | Mapping[int, str] | None, index: int) -> str:
    if labels is None:
        return str(index)
    if isinstance(labels, Mapping):
        return str(labels.get(index, index))
    return str(labels[index]) if index < len(labels) else str(index)


_fonts = threading.local()


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # One font per thread: widgets draw on worker threads, and a FreeType face must not be
    # used by two threads at once.
    font = getattr(_fonts, "font", None)
    if font is None:
        font = _fonts.font = ImageFont.load_default()
    return font


def _text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: RGB, font: Any
) -> None:
    try:
        draw.text(xy, text, fill=fill, font=font)
    except UnicodeEncodeError:
        # Pillow's bitmap fallback font (no FreeType) only knows Latin-1.
        draw.text(xy, text.encode("latin-1", "replace").decode("latin-1"), fill=fill, font=font)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> float:
    try:
        return draw.textlength(text, font=font)
    except UnicodeEncodeError:
        return draw.textlength(text.encode("latin-1", "replace").decode("latin-1"), font=font)


def _fit(draw: ImageDraw.ImageDraw, font: Any, text: str, max_width: float) -> str:
    """Shorten ``text`` with '...' until it fits ``max_width`` pixels."""
    if _text_width(draw, text, font) <= max_width:
        return text
    while text and _text_width(draw, text + "...", font) > max_width:
        text = text[:-1]
    return text + "..."


def _draw_series(
    draw: ImageDraw.ImageDraw,
    font: Any,
    values: np.ndarray,
    finite: np.ndarray,
    box: tuple[int, int, int, int],
) -> None:
    """Line plot of ``values`` in ``box``; one column per pixel when there are more values."""
    x0, y0, x1, y1 = box
    span_x = x1 - x0
    draw.line((x0 - 1, y0, x0 - 1, y1), fill=_AXIS)
    draw.line((x0 - 1, y1, x1, y1), fill=_AXIS)
    n = values.size
    if n == 0:
        _text(draw, (x0 + 4, y0 + 2), "empty", _INK, font)
        return
    good = values[finite]
    lo, hi = (float(good.min()), float(good.max())) if good.size else (0.0, 1.0)
    if hi == lo:
        margin = abs(lo) * 0.1 or 0.5
        lo, hi = lo - margin, hi + margin

    def y_of(v: np.ndarray) -> np.ndarray:
        return y1 - (v - lo) / (hi - lo) * (y1 - y0)

    def x_of(i: np.ndarray) -> np.ndarray:
        return x0 + (i * span_x / (n - 1) if n > 1 else np.full(np.shape(i), span_x / 2))

    if lo < 0 < hi:
        zero = float(y_of(np.float64(0.0)))
        draw.line((x0, zero, x1, zero), fill=_GRID)

    if n <= span_x:
        xs, ys = x_of(np.arange(n)), y_of(np.where(finite, values, lo))
        # One polyline per run of finite values: a NaN breaks the line instead of bending it.
        edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.view(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            points = list(zip(xs[start:stop].tolist(), ys[start:stop].tolist(), strict=True))
            if len(points) == 1:
                draw.point(points, fill=_LINE)
            else:
                draw.line(points, fill=_LINE)
    else:
        # More values than pixels: draw each pixel column's min..max (an envelope), stretched
        # to the previous column's last value so the trace stays connected.
        column = np.arange(n) * span_x // n
        starts = np.searchsorted(column, np.arange(span_x))
        low = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
        high = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
        last = np.where(finite, values, np.nan)[np.append(starts[1:], n) - 1]
        previous = np.concatenate(([np.nan], last[:-1]))
        low, high = np.fmin(low, previous), np.fmax(high, previous)
        ys_low, ys_high = y_of(low), y_of(high)
        for c in np.flatnonzero(np.isfinite(low) & np.isfinite(high)).tolist():
            draw.line((x0 + c, ys_high[c], x0 + c, ys_low[c]), fill=_LINE)

    bad = np.flatnonzero(~finite)
    if bad.size:
        for x in np.unique(np.round(x_of(bad))).tolist():
            draw.line((x, y0, x, y1), fill=NONFINITE_COLOR)
        note = f"{bad.size} non-finite"
        _text(draw, (x1 - _text_width(draw, note, font), y0), note, NONFINITE_COLOR, font)
    _text_right(draw, font, f"{hi:.3g}", x0 - 4, y0 - 2)
    _text_right(draw, font, f"{lo:.3g}", x0 - 4, y1 - 10)


def _draw_histogram(
    draw: ImageDraw.ImageDraw,
    font: Any,
    positive: np.ndarray,
    bins: int,
    box: tuple[int, int, int, int],
) -> None:
    """Histogram of the positive values in ``box``, with count and value range labels."""
    x0, y0, x1, y1 = box
    draw.line((x0 - 1, y0, x0 - 1, y1), fill=_AXIS)
    draw.line((x0 - 1, y1, x1, y1), fill=_AXIS)
    if positive.size == 0:
        _text(draw, (x0 + 4, y0 + 2), "no positive values", _INK, font)
        return
    counts, edges = np.histogram(positive, bins=bins)
    tallest = int(counts.max())
    step = (x1 - x0) / bins
    for j in np.flatnonzero(counts).tolist():
        left = x0 + round(j * step)
        right = max(left, x0 + round((j + 1) * step) - 1)
        bar_top = y1 - max(1, round(counts[j] / tallest * (y1 - y0)))
        draw.rectangle((left, bar_top, right, y1 - 1), fill=_BAR)
    _text_right(draw, font, str(tallest), x0 - 4, y0 - 2)
    _text_right(draw, font, "0", x0 - 4, y1 - 10)
    _text(draw, (x0, y1 + 2), f"{edges[0]:.3g}", _INK, font)
    high = f"{edges[-1]:.3g}"
    _text(draw, (x1 - _text_width(draw, high, font), y1 + 2), high, _INK, font)


def _text_right(draw: ImageDraw.ImageDraw, font: Any, text: str, right: float, y: float) -> None:
    _text(draw, (right - _text_width(draw, text, font), y), text, _INK, font)
