"""The pictures the widgets and the CLI draw: filters, feature maps, dense outputs, top-k.

Each view returns a :class:`Rendered`: RGB pixels at their natural size (never upscaled; the
browser enlarges them with ``image-rendering: pixelated``), the tile layout of a grid so a
click maps to a channel, and a ``meta`` dict (channels shown, total, NaN/Inf count, ...).

Single-channel views are rendered as *palette indices* first (see
:func:`~cnn_widgets.render.colormaps.indexed_palette`): the wire image is then one byte per
pixel, and :attr:`Rendered.pixels` is that palette applied, so both show the same colours.
NaN and Inf never raise: they are painted magenta and counted in ``meta["nonfinite"]``.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormaps import (
    GAP_COLOR,
    GAP_INDEX,
    LEVELS,
    NONFINITE_COLOR,
    NONFINITE_INDEX,
    indexed_palette,
)
from .encode import encode_png, encode_wire
from .normalize import _normalized
from .tile import TileLayout, tile, tile_layout

Channels = slice | range | Sequence[int] | np.ndarray | None
RGB = tuple[int, int, int]

_BACKGROUND = (255, 255, 255)
_INK = (40, 40, 40)
_AXIS = (110, 110, 110)
_GRID = (215, 215, 215)
_LINE = (31, 119, 180)
_BAR = (31, 119, 180)


@dataclass(frozen=True, eq=False)
class Rendered:
    """A picture ready to show, save or send.

    Attributes
    ----------
    pixels:
        ``(H, W, 3)`` uint8 RGB at natural size.
    layout:
        Tile geometry for grids (map a click to a channel); None for single pictures and plots.
    meta:
        JSON-friendly facts about the picture: ``shown``, ``total``, ``channels``,
        ``nonfinite`` and view-specific entries.
    indices, palette:
        For single-channel views: ``(H, W)`` uint8 palette indices and the ``(256, 3)``
        palette, with ``pixels == palette[indices]``; encoders send these (a third of the
        bytes). None for RGB pictures.
    """

    pixels: np.ndarray
    layout: TileLayout | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    indices: np.ndarray | None = None
    palette: np.ndarray | None = None

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pixels.shape[0])

    def png(self, compress_level: int = 6) -> bytes:
        """PNG bytes for files and the notebook's static fallback (indexed when possible)."""
        if self.indices is not None:
            return encode_png(self.indices, compress_level, palette=self.palette)
        return encode_png(self.pixels, compress_level)

    def wire(self, fmt: str = "png") -> tuple[str, bytes]:
        """``(format, bytes)`` for the widget front end; see :func:`encode_wire`.

        The gaps between tiles travel transparent, so a dark notebook theme shows through
        instead of white bars: indexed grids through a ``tRNS`` palette entry, RGB grids (filters
        in colour, no spare palette entry) as RGBA with alpha 0 outside the tiles. Saved files
        (:meth:`png`) keep the white gaps.
        """
        if self.indices is not None:
            return encode_wire(self.indices, palette=self.palette, fmt=fmt)
        if fmt == "png" and self.layout is not None and self.pixels.ndim == 3:
            alpha = np.zeros(self.pixels.shape[:2], np.uint8)
            for i in range(self.layout.count):
                x, y, w, h = self.layout.box(i)
                alpha[y : y + h, x : x + w] = 255
            return encode_wire(np.dstack([self.pixels[..., :3], alpha]), fmt=fmt)
        return encode_wire(self.pixels, fmt=fmt)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the picture to a PNG file, at natural size."""
        Path(path).write_bytes(self.png())

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        kind = self.meta.get("kind", "picture")
        return f"Rendered({kind}, {self.width}x{self.height})"


# --------------------------------------------------------------------------- filters


def filter_grid(
    filters: np.ndarray,
    *,
    input_channel: str | int = "auto",
    normalization: str = "symmetric",
    colormap: str = "gray",
    channels: Channels = None,
    pad: int = 1,
    ncols: int | None = None,
    gap_color: RGB = GAP_COLOR,
) -> Rendered:
    """All kernels of a convolution as one grid, one tile per output channel.

    Parameters
    ----------
    filters:
        ``(out, in, kh, kw)`` weights, channels-first (what an adapter returns).
    input_channel:
        ``"auto"``: RGB tiles when ``in == 3`` (first layers see colour), else the mean over
        input channels (channel 0 when ``in == 1``). ``"rgb"``: RGB tiles, needs ``in == 3``.
        ``"mean"``: mean over input channels. An int: that input channel only.
    normalization:
        A :func:`normalize` mode; statistics of ``"layer"``/``"symmetric"`` come from all
        filters, so pages of ``channels`` share one scale.
    colormap:
        For single-channel tiles; RGB tiles show their own colours.
    channels:
        Output channels to show (paging): None for all, a slice, a range or a sequence.
    pad:
        Pixels between tiles.
    ncols:
        Tiles per row; default near-square.
    gap_color:
        Colour of the gaps.

    Returns
    -------
    Rendered
        ``meta``: ``kind``, ``shown``, ``total``, ``channels``, ``nonfinite``,
        ``input_channel`` (what was drawn: ``"rgb"``, ``"mean"`` or an int),
        ``normalization``, ``colormap``.
    """
    weights = _as_array(filters, 4, "filters", "(out, in, kh, kw)")
    out_ch, in_ch = weights.shape[:2]
    choice = _resolve_input_channel(input_channel, in_ch)
    ids, key = _selection(out_ch, channels)
    meta = {"kind": "filters", "input_channel": choice}
    if choice == "rgb":
        stack = weights[key].transpose(0, 2, 3, 1)
        return _render_rgb(
            stack,
            ids=ids,
            total=out_ch,
            reference=weights,
            normalization=normalization,
            pad=pad,
            ncols=ncols,
            gap_color=gap_color,
            meta=meta,
        )
    per_filter = weights.mean(axis=1) if choice == "mean" else weights[:, choice]
    return _render_maps(
        per_filter[key],
        ids=ids,
        total=out_ch,
        reference=per_filter,
        normalization=normalization,
        colormap=colormap,
        pad=pad,
        ncols=ncols,
        gap_color=gap_color,
        meta=meta,
    )


def filter_single(
    filters: np.ndarray,
    index: int,
    *,
    input_channel: str | int = "auto",
    normalization: str = "symmetric",
    colormap: str = "gray",
) -> Rendered:
    """One kernel at its natural size (a 3x3 kernel is 3x3 pixels).

    Parameters
    ----------
    filters:
        ``(out, in, kh, kw)`` weights.
    index:
        Output channel.
    input_channel, normalization, colormap:
        As in :func:`filter_grid`; the scale is the whole layer's, so this picture has exactly
        the colours of its tile in the grid.

    Returns
    -------
    Rendered
        ``layout`` is None; ``meta["index"]`` is the channel.
    """
    grid = filter_grid(
        filters,
        input_channel=input_channel,
        normalization=normalization,
        colormap=colormap,
        channels=[index],
        pad=0,
    )
    return _single(grid, index)


# --------------------------------------------------------------------------- activations


def activation_grid(
    activations: np.ndarray,
    *,
    normalization: str = "layer",
    colormap: str = "viridis",
    channels: Channels = None,
    pad: int = 1,
    ncols: int | None = None,
    gap_color: RGB = GAP_COLOR,
) -> Rendered:
    """The feature maps of one layer as a grid, one tile per channel.

    Parameters
    ----------
    activations:
        ``(C, H, W)`` feature maps of one image.
    normalization:
        A :func:`normalize` mode; ``"layer"`` (default) keeps channels comparable, with
        statistics over all ``C`` channels even when ``channels`` shows a page of them.
    colormap:
        One of ``COLORMAPS``.
    channels:
        Channels to show: None for all, a slice, a range or a sequence.
    pad:
        Pixels between tiles.
    ncols:
        Tiles per row; default near-square.
    gap_color:
        Colour of the gaps.

    Returns
    -------
    Rendered
        ``meta``: ``kind``, ``shown``, ``total``, ``channels``, ``nonfinite``,
        ``normalization``, ``colormap``.
    """
    maps = _as_array(activations, 3, "activations", "(C, H, W)")
    ids, key = _selection(maps.shape[0], channels)
    return _render_maps(
        maps[key],
        ids=ids,
        total=maps.shape[0],
        reference=maps,
        normalization=normalization,
        colormap=colormap,
        pad=pad,
        ncols=ncols,
        gap_color=gap_color,
        meta={"kind": "activations"},
    )


def activation_sum(
    activations: np.ndarray,
    reduce: str = "sum",
    *,
    normalization: str = "layer",
    colormap: str = "viridis",
    channels: Channels = None,
) -> Rendered:
    """All channels of a layer reduced to one picture (where does the layer respond at all?).

    Parameters
    ----------
    activations:
        ``(C, H, W)`` feature maps.
    reduce:
        ``"sum"`` or ``"mean"`` over channels (the same picture, differently scaled numbers).
    normalization, colormap:
        As in :func:`activation_grid`.
    channels:
        Reduce only these channels.

    Returns
    -------
    Rendered
        ``layout`` is None; ``meta["reduce"]`` says which reduction.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean'; got {reduce!r}")
    maps = _as_array(activations, 3, "activations", "(C, H, W)")
    ids, key = _selection(maps.shape[0], channels)
    selected = maps[key]
    # float32 accumulation is plenty for display and keeps half-precision maps from overflowing.
    accumulate = np.float64 if maps.dtype == np.float64 else np.float32
    with np.errstate(invalid="ignore", over="ignore"):
        picture = (selected.sum if reduce == "sum" else selected.mean)(axis=0, dtype=accumulate)
    return _render_maps(
        picture[None],
        ids=ids,
        total=maps.shape[0],
        reference=None,
        normalization=normalization,
        colormap=colormap,
        meta={"kind": "activation_sum", "reduce": reduce},
    )


def activation_single(
    activations: np.ndarray,
    index: int,
    *,
    normalization: str = "layer",
    colormap: str = "viridis",
) -> Rendered:
    """One feature map at its natural size.

    Parameters
    ----------
    activations:
        ``(C, H, W)`` feature maps.
    index:
        The channel.
    normalization, colormap:
        As in :func:`activation_grid`; ``"layer"`` scales by the whole layer, so the picture
        has the colours of its tile in the grid.

    Returns
    -------
    Rendered
        ``layout`` is None; ``meta["index"]`` is the channel.
    """
    grid = activation_grid(
        activations, normalization=normalization, colormap=colormap, channels=[index], pad=0
    )
    return _single(grid, index)


# --------------------------------------------------------------------------- dense outputs


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


# --------------------------------------------------------------------------- helpers


def _render_maps(
    stack: np.ndarray,
    *,
    ids: tuple[int, ...],
    total: int,
    reference: np.ndarray | None,
    normalization: str,
    colormap: str,
    pad: int = 0,
    ncols: int | None = None,
    gap_color: RGB = GAP_COLOR,
    meta: dict[str, Any],
) -> Rendered:
    """Single-channel stack -> palette indices -> tiled canvas (+ its RGB)."""
    palette = indexed_palette(colormap, gap_color)  # validates the name before any work
    scaled, mask = _normalized(stack, normalization, reference=reference, top=LEVELS - 1)
    scaled += 0.5  # round to the nearest level in the cast below
    indices = scaled.astype(np.uint8)
    nonfinite = 0
    if mask is not None:
        nonfinite = int(mask.sum())
        indices[mask] = NONFINITE_INDEX
    canvas = tile(indices, pad=pad, pad_value=GAP_INDEX, ncols=ncols)
    n, h, w = stack.shape
    # A reduction (activation_sum) draws one picture from many channels: no tiles to map.
    layout = tile_layout(n, h, w, pad=pad, ncols=ncols, channels=ids) if len(ids) == n else None
    pixels = np.take(palette, canvas, axis=0)
    meta = {
        **meta,
        **_paging(ids, total),
        "nonfinite": nonfinite,
        "normalization": normalization,
        "colormap": colormap,
    }
    return Rendered(pixels, layout, meta, canvas, palette)


def _render_rgb(
    stack: np.ndarray,
    *,
    ids: tuple[int, ...],
    total: int,
    reference: np.ndarray,
    normalization: str,
    pad: int,
    ncols: int | None,
    gap_color: RGB,
    meta: dict[str, Any],
) -> Rendered:
    """Colour stack ``(n, h, w, 3)`` -> uint8 RGB tiles; no colormap."""
    scaled, mask = _normalized(stack, normalization, reference=reference, top=255.0)
    scaled += 0.5
    rgb = scaled.astype(np.uint8)
    nonfinite = 0
    if mask is not None:
        nonfinite = int(mask.sum())
        rgb[mask] = NONFINITE_COLOR
    pixels = tile(rgb, pad=pad, pad_value=gap_color, ncols=ncols)
    n, h, w = stack.shape[:3]
    layout = tile_layout(n, h, w, pad=pad, ncols=ncols, channels=ids)
    meta = {
        **meta,
        **_paging(ids, total),
        "nonfinite": nonfinite,
        "normalization": normalization,
        "colormap": None,
    }
    return Rendered(pixels, layout, meta)


def _single(grid: Rendered, index: int) -> Rendered:
    meta = {**grid.meta, "index": grid.meta["channels"][0]}
    return dataclasses.replace(grid, layout=None, meta=meta)


def _paging(ids: tuple[int, ...], total: int) -> dict[str, Any]:
    return {"shown": len(ids), "total": total, "channels": list(ids)}


def _selection(total: int, channels: Channels) -> tuple[tuple[int, ...], slice | np.ndarray]:
    """Channel ids to show and the cheapest indexer for them (a slice is a view, no copy)."""
    if channels is None:
        ids: Sequence[int] = range(total)
    elif isinstance(channels, slice):
        ids = range(*channels.indices(total))
    elif isinstance(channels, range):
        ids = channels
    elif isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        ids = [int(channels)]
    else:
        ids = [_as_index(c) for c in np.asarray(channels).ravel().tolist()]
    resolved = tuple(c + total if c < 0 else c for c in ids)
    if not resolved:
        raise ValueError(f"no channels selected (of {total})")
    bad = [c for c in resolved if not 0 <= c < total]
    if bad:
        raise ValueError(
            f"channel {bad[0]} out of range: the layer has {total} channels (valid 0..{total - 1})"
        )
    first = resolved[0]
    if resolved == tuple(range(first, first + len(resolved))):
        return resolved, slice(first, first + len(resolved))
    return resolved, np.asarray(resolved)


def _as_index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"channels must be integers, got {value!r}")
    return value


def _resolve_input_channel(input_channel: str | int, in_channels: int) -> str | int:
    choices = f"'auto', 'rgb' (needs 3 input channels), 'mean' or an int in [0, {in_channels})"
    if isinstance(input_channel, str):
        if input_channel == "auto":
            if in_channels == 3:
                return "rgb"
            return 0 if in_channels == 1 else "mean"
        if input_channel == "rgb":
            if in_channels != 3:
                raise ValueError(
                    f"input_channel='rgb' needs filters with 3 input channels, these have "
                    f"{in_channels}; choose {choices}"
                )
            return "rgb"
        if input_channel == "mean":
            return "mean"
    elif (
        isinstance(input_channel, (int, np.integer))
        and not isinstance(input_channel, bool)
        and 0 <= input_channel < in_channels
    ):
        return int(input_channel)
    raise ValueError(f"input_channel must be {choices}; got {input_channel!r}")


def _as_array(array: np.ndarray, ndim: int, what: str, shape: str) -> np.ndarray:
    result = np.asarray(array)
    if result.ndim != ndim:
        hint = " (dense outputs are drawn by dense_plot)" if result.ndim == 1 else ""
        raise ValueError(f"expected {what} of shape {shape}, got shape {result.shape}{hint}")
    if 0 in result.shape:
        raise ValueError(f"{what} are empty: shape {result.shape}")
    return result


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
