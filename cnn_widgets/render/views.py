"""The pictures of filters and feature maps the widgets and the CLI draw, one pixel per value.

Each view returns a :class:`~cnn_widgets.render.rendered.Rendered`: RGB pixels at their
natural size (the browser enlarges them with ``image-rendering: pixelated``; saved files and
notebook outputs are enlarged by :func:`~cnn_widgets.render.rendered.readable_png`), the tile
layout of a grid so a click maps to a channel, and a ``meta`` dict (channels shown, total,
NaN/Inf count, ...). The pictures of vectors, :func:`dense_plot` and :func:`topk_bars`, live
in :mod:`cnn_widgets.render.plots` and are importable from here too.

Single-channel views are rendered as *palette indices* first (see
:func:`~cnn_widgets.render.colormaps.indexed_palette`): the wire image is then one byte per
pixel, and :attr:`Rendered.pixels` is that palette applied, so both show the same colours.
NaN and Inf never raise: they are painted magenta and counted in ``meta["nonfinite"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .colormaps import (
    GAP_COLOR,
    GAP_INDEX,
    LEVELS,
    NONFINITE_COLOR,
    NONFINITE_INDEX,
    indexed_palette,
)
from .normalize import _normalized
from .pixels import quantize
from .plots import dense_plot, topk_bars
from .rendered import Rendered
from .tile import tile, tile_layout

__all__ = [
    "Rendered",
    "activation_grid",
    "activation_single",
    "activation_sum",
    "dense_plot",
    "filter_grid",
    "filter_single",
    "topk_bars",
]

Channels = slice | range | Sequence[int] | np.ndarray | None
RGB = tuple[int, int, int]


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
    choice = _resolve_input_channel(input_channel, weights.shape[1])
    if choice == "rgb":
        per_filter = weights.transpose(0, 2, 3, 1)  # (out, kh, kw, 3): tiles in colour
    elif choice == "mean":
        per_filter = weights.mean(axis=1)
    else:
        per_filter = weights[:, choice]
    look = {"normalization": normalization, "colormap": None if choice == "rgb" else colormap}
    tiles = {"pad": pad, "ncols": ncols, "gap_color": gap_color}
    return _grid(per_filter, channels, look, tiles, {"kind": "filters", "input_channel": choice})


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
    return _single(grid)


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
    channels, pad, ncols, gap_color:
        Which channels to show (paging) and how to tile them, as in :func:`filter_grid`.

    Returns
    -------
    Rendered
        ``meta`` as for :func:`filter_grid`, without ``input_channel``.
    """
    maps = _as_array(activations, 3, "activations", "(C, H, W)")
    look = {"normalization": normalization, "colormap": colormap}
    tiles = {"pad": pad, "ncols": ncols, "gap_color": gap_color}
    return _grid(maps, channels, look, tiles, {"kind": "activations"})


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
    look = {"normalization": normalization, "colormap": colormap}
    tiles = {"pad": 0, "ncols": None, "gap_color": GAP_COLOR}
    meta = {"kind": "activation_sum", "reduce": reduce}
    return _render(picture[None], ids, maps.shape[0], None, look, tiles, meta)


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
    return _single(grid)


# --------------------------------------------------------------------------- helpers


def _grid(
    pictures: np.ndarray,
    channels: Channels,
    look: dict[str, Any],
    tiles: dict[str, Any],
    meta: dict[str, Any],
) -> Rendered:
    """A grid of the ``channels`` of a stack, on the scale of the whole stack (so every page of
    a layer has the same colours). ``look``: ``normalization`` and ``colormap``."""
    ids, key = _selection(len(pictures), channels)
    return _render(pictures[key], ids, len(pictures), pictures, look, tiles, meta)


def _render(
    stack: np.ndarray,
    ids: tuple[int, ...],
    total: int,
    reference: np.ndarray | None,
    look: dict[str, Any],
    tiles: dict[str, Any],
    meta: dict[str, Any],
) -> Rendered:
    """Normalize, quantize, mark NaN/Inf and tile a stack of pictures.

    ``look``: ``normalization`` and ``colormap``. ``colormap=None``: ``stack`` is
    ``(n, h, w, 3)`` colour, drawn as its own RGB; otherwise it is ``(n, h, w)``
    single-channel, drawn as palette indices (see the module docstring). ``tiles``: the
    ``pad``, ``ncols`` and ``gap_color`` of the grid. ``ids``: the channel of each picture
    (of ``total``); a reduction has more ids than pictures and gets no tile layout.
    """
    normalization, colormap = look["normalization"], look["colormap"]
    indexed = colormap is not None
    # Built first: it validates the colormap's name before any work.
    palette = indexed_palette(colormap, tiles["gap_color"]) if indexed else None
    top = LEVELS - 1 if indexed else 255.0
    scaled, mask = _normalized(stack, normalization, reference=reference, top=top)
    levels = quantize(scaled)
    nonfinite = 0
    if mask is not None:
        nonfinite = int(mask.sum())
        levels[mask] = NONFINITE_INDEX if indexed else NONFINITE_COLOR
    gap = GAP_INDEX if indexed else tiles["gap_color"]
    canvas = tile(levels, pad=tiles["pad"], pad_value=gap, ncols=tiles["ncols"])
    n, h, w = stack.shape[:3]
    # A reduction (activation_sum) draws one picture from many channels: no tiles to map.
    layout = (
        tile_layout(n, h, w, pad=tiles["pad"], ncols=tiles["ncols"], channels=ids)
        if len(ids) == n
        else None
    )
    meta = {
        **meta,
        **_paging(ids, total),
        "nonfinite": nonfinite,
        "normalization": normalization,
        "colormap": colormap,
    }
    if palette is None:
        return Rendered(canvas, layout, meta)
    return Rendered(np.take(palette, canvas, axis=0), layout, meta, canvas, palette)


def _single(grid: Rendered) -> Rendered:
    """A one-tile grid as a single picture: no layout, ``meta["index"]`` names its channel."""
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
