"""Lay a stack of small pictures out as one near-square grid (Caffe's ``vis_square``).

Differences from ``vis_square``, each on purpose:

* any count ``n >= 1``: ``ncols = ceil(sqrt(n))`` and only as many rows as needed, so 7
  tiles make 3 x 3 with two empty slots and 96 make 10 x 10 minus four, not a padded square;
* padding goes *between* tiles only. ``vis_square`` pads after every tile, the last column and
  row included, which leaves a one-sided border; the browser draws any frame it wants;
* the dtype is kept (uint8 palette indices as well as floats), and values are not normalized
  here: :mod:`cnn_widgets.render.normalize` does that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TileLayout:
    """Where each tile of a grid sits; the browser maps a click to a channel with it.

    Attributes
    ----------
    count:
        Number of tiles drawn (slots after the last one are empty).
    ncols, nrows:
        Grid size in tiles.
    tile_h, tile_w:
        Size of one tile in pixels.
    pad:
        Pixels between neighbouring tiles.
    width, height:
        Canvas size in pixels.
    channels:
        The channel shown by each tile (tile ``i`` shows ``channels[i]``), or None when tile
        ``i`` is channel ``i``.
    """

    count: int
    ncols: int
    nrows: int
    tile_h: int
    tile_w: int
    pad: int
    width: int
    height: int
    channels: tuple[int, ...] | None = field(default=None, repr=False)

    def box(self, i: int) -> tuple[int, int, int, int]:
        """Pixel box ``(x, y, w, h)`` of tile ``i`` on the canvas."""
        if not 0 <= i < self.count:
            raise IndexError(f"tile {i} out of range for {self.count} tiles")
        row, col = divmod(i, self.ncols)
        return (
            col * (self.tile_w + self.pad),
            row * (self.tile_h + self.pad),
            self.tile_w,
            self.tile_h,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain ints and lists, ready for JSON and a traitlet."""
        return {
            "count": self.count,
            "ncols": self.ncols,
            "nrows": self.nrows,
            "tile_h": self.tile_h,
            "tile_w": self.tile_w,
            "pad": self.pad,
            "width": self.width,
            "height": self.height,
            "channels": None if self.channels is None else list(self.channels),
        }


def tile_layout(
    n: int,
    h: int,
    w: int,
    pad: int = 1,
    ncols: int | None = None,
    channels: tuple[int, ...] | None = None,
) -> TileLayout:
    """Compute the grid geometry for ``n`` tiles of ``h x w`` pixels.

    Parameters
    ----------
    n:
        Number of tiles, at least 1.
    h, w:
        Tile size in pixels.
    pad:
        Pixels between tiles (not around the grid).
    ncols:
        Tiles per row; default ``ceil(sqrt(n))`` for a near-square picture.
    channels:
        Optional channel id of each tile, stored on the layout (and sent to the browser).

    Returns
    -------
    TileLayout
    """
    if n < 1:
        raise ValueError(f"need at least one tile, got {n}")
    if h < 1 or w < 1:
        raise ValueError(f"tiles must be at least 1x1 pixels, got {h}x{w}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    elif ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    nrows = math.ceil(n / ncols)
    if channels is not None:
        channels = tuple(int(c) for c in channels)
        if len(channels) != n:
            raise ValueError(f"{len(channels)} channel ids for {n} tiles")
    return TileLayout(
        count=n,
        ncols=ncols,
        nrows=nrows,
        tile_h=h,
        tile_w=w,
        pad=pad,
        width=ncols * (w + pad) - pad,
        height=nrows * (h + pad) - pad,
        channels=channels,
    )


def tile(
    images: np.ndarray,
    pad: int = 1,
    pad_value: float | tuple[float, ...] | None = None,
    ncols: int | None = None,
) -> np.ndarray:
    """Tile ``(n, h, w)`` or ``(n, h, w, c)`` pictures into one ``(H, W[, c])`` canvas.

    Parameters
    ----------
    images:
        The stack; any dtype, kept in the output.
    pad:
        Pixels between tiles (none around the grid).
    pad_value:
        Value of gaps and empty slots: a scalar, or one value per colour channel. Default:
        the dtype's maximum for integers (255, white, for uint8), 1.0 for floats (white after
        normalization), as ``vis_square`` does.
    ncols:
        Tiles per row; default ``ceil(sqrt(n))``.

    Returns
    -------
    numpy.ndarray
        Canvas of ``tile_layout(n, h, w, pad, ncols)``'s ``height x width``.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"expected (n, h, w) or (n, h, w, c) images, got shape {images.shape}")
    n, h, w = images.shape[:3]
    layout = tile_layout(n, h, w, pad=pad, ncols=ncols)
    if pad_value is None:
        pad_value = _white(images.dtype)
    canvas = np.empty((layout.height, layout.width, *images.shape[3:]), images.dtype)
    canvas[...] = pad_value

    # A strided view of the canvas indexed [row, y, col, x, ...]: every tile is written by one
    # vectorized copy instead of a Python loop over tiles. All addressed pixels lie inside the
    # canvas (the last tile ends at its last row and column), so the view is safe.
    s_row, s_col = canvas.strides[:2]
    grid = np.lib.stride_tricks.as_strided(
        canvas,
        shape=(layout.nrows, h, layout.ncols, w, *images.shape[3:]),
        strides=(s_row * (h + pad), s_row, s_col * (w + pad), s_col, *canvas.strides[2:]),
        writeable=True,
    )
    full_rows, rest = divmod(n, layout.ncols)
    if full_rows:
        head = images[: full_rows * layout.ncols].reshape(
            full_rows, layout.ncols, *images.shape[1:]
        )
        grid[:full_rows] = head.swapaxes(1, 2)
    if rest:
        grid[full_rows, :, :rest] = images[full_rows * layout.ncols :].swapaxes(0, 1)
    return canvas


def _white(dtype: np.dtype) -> float | int | bool:
    if dtype.kind == "b":
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return 1.0
