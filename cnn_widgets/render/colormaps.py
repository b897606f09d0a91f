"""Colour lookup tables, built from a few anchor colours without matplotlib.

Two kinds of table:

* :func:`lut` — 256 colours, for :func:`apply_colormap` on values in ``[0, 1]``.
* :func:`indexed_palette` — the 256-entry palette of an *indexed* picture: 254 colour levels,
  then the gap colour between tiles and the non-finite marker. Views render single-channel
  maps as palette indices, so the wire image is one byte per pixel and the browser applies
  the colours while decoding the PNG (no table in JavaScript). 254 levels instead of 256 are
  not visible.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .. import choices
from .pixels import to_uint8

COLORMAPS = choices.values(choices.COLORMAPS)

#: Loud on every colormap here (none of them contains magenta): NaN / Inf pixels.
NONFINITE_COLOR = (255, 0, 255)
#: vis_square pads with ones, i.e. white.
GAP_COLOR = (255, 255, 255)

#: Palette layout of indexed pictures (see :func:`indexed_palette`).
LEVELS = 254
GAP_INDEX = 254
NONFINITE_INDEX = 255

# viridis (van der Walt & Smith, CC0) sampled at 33 evenly spaced points; linear interpolation
# between them stays within 3 levels of matplotlib's 256-entry table.
_VIRIDIS = (
    0x440154, 0x470D60, 0x48186A, 0x482374, 0x472D7B, 0x453781, 0x424086, 0x3E4989,
    0x3B528B, 0x375B8D, 0x33638D, 0x2F6B8E, 0x2C728E, 0x297A8E, 0x26828E, 0x23898E,
    0x21918C, 0x1F988B, 0x1FA088, 0x22A785, 0x28AE80, 0x32B67A, 0x3FBC73, 0x4EC36B,
    0x5EC962, 0x70CF57, 0x84D44B, 0x98D83E, 0xADDC30, 0xC2DF23, 0xD8E219, 0xECE51B,
    0xFDE725,
)  # fmt: skip

# Blue - white - red, the ColorBrewer RdBu scheme read from blue to red: for signed values
# shown with the "symmetric" normalization, where 0.5 (zero) lands on the near-white middle.
_DIVERGING = (
    0x053061, 0x2166AC, 0x4393C3, 0x92C5DE, 0xD1E5F0, 0xF7F7F7,
    0xFDDBC7, 0xF4A582, 0xD6604D, 0xB2182B, 0x67001F,
)  # fmt: skip

_GRAY = (0x000000, 0xFFFFFF)

_ANCHORS = {"gray": _GRAY, "viridis": _VIRIDIS, "diverging": _DIVERGING}


def lut(name: str) -> np.ndarray:
    """The 256-colour table of a colormap.

    Parameters
    ----------
    name:
        One of :data:`COLORMAPS`.

    Returns
    -------
    numpy.ndarray
        ``(256, 3)`` uint8, read-only (shared between calls).
    """
    return _table(_check_name(name), 256)


def apply_colormap(x01: np.ndarray, name: str = "gray") -> np.ndarray:
    """Colour values in ``[0, 1]`` through a 256-entry lookup table.

    Parameters
    ----------
    x01:
        Any shape, values in ``[0, 1]`` (what :func:`normalize` returns); values outside are
        clipped, NaN and -Inf take the first colour and +Inf the last (views mark them in
        magenta instead, from the mask the normalizer returns).
    name:
        One of :data:`COLORMAPS`.

    Returns
    -------
    numpy.ndarray
        uint8 of shape ``x01.shape + (3,)``.
    """
    # np.take is several times faster than fancy indexing table[idx] for this gather.
    return np.take(lut(name), to_uint8(x01), axis=0)


def indexed_palette(name: str, gap_color: tuple[int, int, int] = GAP_COLOR) -> np.ndarray:
    """The palette of an indexed picture.

    Parameters
    ----------
    name:
        One of :data:`COLORMAPS`.
    gap_color:
        RGB colour of the gaps between tiles (entry :data:`GAP_INDEX`).

    Returns
    -------
    numpy.ndarray
        ``(256, 3)`` uint8: entries ``0 .. LEVELS - 1`` run through the colormap,
        :data:`GAP_INDEX` is ``gap_color``, :data:`NONFINITE_INDEX` is magenta.
    """
    palette = np.empty((256, 3), np.uint8)
    palette[:LEVELS] = _table(_check_name(name), LEVELS)
    palette[GAP_INDEX] = gap_color
    palette[NONFINITE_INDEX] = NONFINITE_COLOR
    return palette


@cache
def _table(name: str, size: int) -> np.ndarray:
    anchors = np.array(
        [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in _ANCHORS[name]], np.float64
    )
    where = np.linspace(0.0, 1.0, len(anchors))
    at = np.linspace(0.0, 1.0, size)
    table = np.stack([np.interp(at, where, anchors[:, k]) for k in range(3)], axis=1)
    table = np.rint(table).astype(np.uint8)
    table.flags.writeable = False
    return table


def _check_name(name: str) -> str:
    if name not in _ANCHORS:
        raise ValueError(f"colormap must be one of {COLORMAPS}; got {name!r}")
    return name
