"""The one place where floats become bytes, tile gaps become transparent, and small pictures
are enlarged for people.

* :func:`to_uint8` turns pictures with values in ``[0, 1]`` into uint8 (NaN and -Inf give 0,
  +Inf 255), optionally folding a colour axis into something a screen shows (gray, RGB).
  :func:`quantize` is its last step, for values a caller has already scaled to ``[0, 255]``.
* :func:`tile_rgba` and :func:`transparent_gaps` give a grid alpha 0 between and after its
  tiles, so a notebook's dark theme shows through the gaps instead of white bars.
* :func:`upscale` and :func:`readable_scale`: the wire keeps pictures at their natural size
  (the browser enlarges them with ``image-rendering: pixelated``), but a saved file or a
  notebook's static output has no such CSS, so 32 kernels of 3x3 would be a 23 px speck.
  Those get a whole-number nearest-neighbour enlargement: every source pixel becomes an
  exact ``s x s`` block, no smoothing, no half pixels.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from .tile import TileLayout, tile, tile_layout

#: The long side, in pixels, that :func:`readable_scale` brings a small picture near: about
#: half a notebook column, large enough to tell 3x3 kernels apart.
READABLE_SIDE = 512
#: Upscaling beyond this many pixels per side is refused: a typo such as ``scale=1000`` would
#: otherwise allocate gigabytes.
MAX_SIDE = 8192


def to_uint8(images: Any, *, channel_axis: int | None = None) -> np.ndarray:
    """Convert pictures with values in ``[0, 1]`` to uint8 for display.

    Parameters
    ----------
    images:
        Any real array. Values outside ``[0, 1]`` are clipped; NaN and -Inf show as 0, +Inf
        as 255 (display only: the data is not changed).
    channel_axis:
        None: every value is a pixel value and the shape is kept. An axis index: that axis
        holds colour channels and is folded into what a screen shows: 1 channel -> gray (the
        axis is dropped), 3 -> RGB (the axis is moved last), any other count -> the mean
        over channels, gray.

    Returns
    -------
    numpy.ndarray
        uint8, ``round(clip(x, 0, 1) * 255)``.

    Raises
    ------
    TypeError
        For a non-real dtype (complex, strings, objects).
    ValueError
        For a ``channel_axis`` outside the array's dimensions.
    """
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected a real-valued array, got dtype {array.dtype}")
    if channel_axis is not None:
        array = _displayable_channels(array, channel_axis)
    scaled = np.multiply(array, 255.0, dtype=np.float32)
    # NaN would make the uint8 cast undefined (and warn); Inf is clipped like any value.
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return quantize(scaled)


def quantize(scaled: np.ndarray) -> np.ndarray:
    """Round finite float values already in ``[0, 255]`` to the nearest uint8, in place.

    For callers that scale straight to a range of levels (the views normalize to palette
    indices ``0 .. 253`` in one pass) and need only the rounding; ``scaled`` is overwritten.

    Parameters
    ----------
    scaled:
        Floating-point array, finite, in ``[0, 255]``.

    Returns
    -------
    numpy.ndarray
        uint8 of the same shape.
    """
    scaled += 0.5  # the cast truncates: +0.5 makes it round to nearest
    return scaled.astype(np.uint8)


def transparent_gaps(canvas: np.ndarray, layout: TileLayout) -> np.ndarray:
    """RGBA of a tiled uint8 canvas: opaque inside the tiles, transparent in gaps and empty
    slots.

    Parameters
    ----------
    canvas:
        ``(H, W)`` gray or ``(H, W, 3)`` RGB uint8, tiled as ``layout`` says.
    layout:
        Its tile geometry (:func:`~cnn_widgets.render.tile.tile_layout`).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)`` uint8.
    """
    canvas = np.asarray(canvas)
    if canvas.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {canvas.dtype}")
    if canvas.shape[:2] != (layout.height, layout.width) or canvas.ndim not in (2, 3):
        raise ValueError(
            f"expected an (H, W) or (H, W, 3) canvas of {layout.height}x{layout.width} pixels "
            f"(the layout's size), got shape {canvas.shape}"
        )
    rgb = np.repeat(canvas[..., None], 3, axis=-1) if canvas.ndim == 2 else canvas[..., :3]
    # The alpha plane is itself a grid: opaque tiles, transparent padding.
    opaque = np.full((layout.count, layout.tile_h, layout.tile_w), 255, np.uint8)
    alpha = tile(opaque, pad=layout.pad, pad_value=0, ncols=layout.ncols)
    return np.dstack([rgb, alpha])


def tile_rgba(images: np.ndarray, pad: int = 1, ncols: int | None = None) -> np.ndarray:
    """Tile uint8 pictures with transparent gaps (for the widget front end).

    Parameters
    ----------
    images:
        ``(n, h, w)`` gray or ``(n, h, w, 3)`` RGB uint8 (what :func:`to_uint8` returns).
    pad:
        Pixels between tiles.
    ncols:
        Tiles per row; default near-square, as :func:`~cnn_widgets.render.tile.tile`.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)`` uint8; the geometry is ``tile_layout(n, h, w, pad, ncols)``.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"expected (n, h, w) or (n, h, w, 3) images, got shape {images.shape}")
    n, h, w = images.shape[:3]
    canvas = tile(images, pad=pad, pad_value=0, ncols=ncols)
    return transparent_gaps(canvas, tile_layout(n, h, w, pad=pad, ncols=ncols))


def check_scale(scale: Any) -> int:
    """``scale`` as an int, or a clear error: a whole number of pixels per source pixel.

    Raises
    ------
    TypeError
        When it is not an integer (``2.5``, ``"2"``, ``True``).
    ValueError
        When it is below 1.
    """
    if isinstance(scale, bool):
        raise TypeError(f"scale must be an int >= 1 (1: natural size), got {scale!r}")
    try:
        factor = operator.index(scale)
    except TypeError:
        raise TypeError(
            f"scale must be an int >= 1 (1: natural size), got {type(scale).__name__} {scale!r}"
        ) from None
    if factor < 1:
        raise ValueError(f"scale must be an int >= 1 (1: natural size), got {factor}")
    return factor


def readable_scale(height: int, width: int, side: int = READABLE_SIDE) -> int:
    """The whole-number factor that brings a picture's long side nearest to ``side`` pixels.

    Pictures at least two thirds of ``side`` long keep their natural size (factor 1): plots
    with text, drawn for reading at 480 px, are not doubled. A 23 px grid of 3x3 kernels gets
    22 (506 px), a 28 px digit map 18 (504 px). A picture shorter than ``side * 2 / 3``
    comes out between ``side * 2 / 3`` and ``side * 4 / 3`` long.

    Parameters
    ----------
    height, width:
        The picture's natural size in pixels.
    side:
        The target long side.

    Returns
    -------
    int
        At least 1.
    """
    long_side = max(int(height), int(width), 1)
    # floor(x + 0.5): round half up, the same on every platform.
    return max(1, math.floor(side / long_side + 0.5))


def pick_scale(height: int, width: int, scale: int | None = None) -> int:
    """``scale`` checked (see :func:`check_scale`), or :func:`readable_scale` of the picture's
    size when it is None: the one rule for "what factor does this picture get"."""
    return readable_scale(height, width) if scale is None else check_scale(scale)


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Enlarge a picture by a whole number: every pixel becomes a ``scale x scale`` block.

    Parameters
    ----------
    pixels:
        ``(H, W)`` or ``(H, W, C)``, any dtype (palette indices stay indices).
    scale:
        An int ``>= 1``; 1 returns ``pixels`` itself.

    Returns
    -------
    numpy.ndarray
        ``(H * scale, W * scale[, C])``.

    Raises
    ------
    TypeError, ValueError
        For a ``scale`` that is not an int ``>= 1``, or one that would make a side longer
        than :data:`MAX_SIDE` pixels.
    """
    factor = check_scale(scale)
    pixels = np.asarray(pixels)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C) pixels, got shape {pixels.shape}")
    long_side = max(pixels.shape[:2])
    if long_side * factor > MAX_SIDE:
        most = max(1, MAX_SIDE // max(long_side, 1))
        raise ValueError(
            f"scale={factor} would make a {long_side * factor} px side (limit {MAX_SIDE}); "
            f"valid for this {pixels.shape[1]}x{pixels.shape[0]} picture: 1..{most}"
        )
    if factor == 1:
        return pixels
    # A broadcast view repeated along two new axes, reshaped once: one copy in all.
    height, width = pixels.shape[:2]
    blocks = np.broadcast_to(
        pixels[:, None, :, None], (height, factor, width, factor, *pixels.shape[2:])
    )
    return blocks.reshape(height * factor, width * factor, *pixels.shape[2:])


def _displayable_channels(array: np.ndarray, channel_axis: int) -> np.ndarray:
    """Move a colour axis last as RGB, drop it for gray, or average other channel counts."""
    if not -array.ndim <= channel_axis < array.ndim:
        raise ValueError(
            f"channel_axis {channel_axis} is out of range for an array of shape {array.shape}"
        )
    channels = array.shape[channel_axis]
    if channels == 3:
        return np.moveaxis(array, channel_axis, -1)
    if channels == 1:
        return np.take(array, 0, axis=channel_axis)
    if array.dtype.kind == "f":
        # Before averaging, like the single values: a NaN channel must not blank the pixel.
        array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
    return array.mean(axis=channel_axis, dtype=np.float32)
