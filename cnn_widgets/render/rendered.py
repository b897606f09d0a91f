"""What every view returns: :class:`Rendered`, and :func:`readable_png`, the rule that makes a
natural-size picture big enough for a person (saved files, notebook outputs, static fallbacks).

A picture has two audiences. The widget's front end gets it at natural size
(:meth:`Rendered.wire`) and enlarges it itself with ``image-rendering: pixelated``. A PNG file,
a notebook output or a notebook exported to HTML has no such CSS: JupyterLab's sanitizer
drops ``image-rendering`` from untrusted HTML outputs, so an ``<img width=...>`` would be
smoothed into a blur. Those get real pixels instead, enlarged by a whole number with nearest
neighbours (:func:`~cnn_widgets.render.pixels.readable_scale`), which look the same
everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .encode import encode_png, encode_wire
from .pixels import pick_scale, transparent_gaps, upscale
from .tile import TileLayout


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
        """PNG bytes at natural size (indexed when possible); :func:`readable_png` enlarges."""
        if self.indices is not None:
            return encode_png(self.indices, compress_level, palette=self.palette)
        return encode_png(self.pixels, compress_level)

    def wire(self, fmt: str = "png") -> tuple[str, bytes]:
        """``(format, bytes)`` for the widget front end, at natural size; see
        :func:`encode_wire`.

        The gaps between tiles travel transparent, so a dark notebook theme shows through
        instead of white bars: indexed grids through a ``tRNS`` palette entry, RGB grids (filters
        in colour, no spare palette entry) as RGBA with alpha 0 outside the tiles. Saved files
        (:meth:`png`, :meth:`save`) keep the white gaps.
        """
        if self.indices is not None:
            return encode_wire(self.indices, palette=self.palette, fmt=fmt)
        if fmt == "png" and self.layout is not None and self.pixels.ndim == 3:
            return encode_wire(transparent_gaps(self.pixels, self.layout), fmt=fmt)
        return encode_wire(self.pixels, fmt=fmt)

    def save(self, path: str | os.PathLike[str], scale: int | None = None) -> None:
        """Write the picture to a PNG file, enlarged so a person can see it.

        Parameters
        ----------
        path:
            The file to write.
        scale:
            Pixels per source pixel, a whole number (nearest neighbour, no smoothing). None
            (default): :func:`~cnn_widgets.render.pixels.readable_scale`, the factor that
            brings the long side nearest to 512 px (1 for pictures of 342 px and more).
            1: natural size.
        """
        Path(path).write_bytes(readable_png(self, scale))

    def _repr_png_(self) -> bytes:
        # Notebook outputs have no pixelated CSS either (see the module docstring).
        return readable_png(self)

    def __repr__(self) -> str:
        kind = self.meta.get("kind", "picture")
        return f"Rendered({kind}, {self.width}x{self.height})"


def readable_png(
    picture: Rendered | np.ndarray, scale: int | None = None, compress_level: int = 6
) -> bytes:
    """PNG bytes of a natural-size picture, enlarged by a whole number so a person can see it.

    The one rule for every picture people look at outside the live widget: saved files
    (:meth:`Rendered.save`, the CLI), notebook outputs (``_repr_png_``) and the widgets'
    static ``image/png`` fallback.

    Parameters
    ----------
    picture:
        A :class:`Rendered` (indexed pictures stay indexed: small files), or uint8 pixels
        ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.
    scale:
        Pixels per source pixel. None (default): the factor that brings the long side nearest
        to 512 px (:func:`~cnn_widgets.render.pixels.readable_scale`), so 32 kernels of 3x3
        (23 px) become 506 px and a 480 px plot stays as drawn. 1: natural size.
    compress_level:
        zlib level 0..9 (Pillow's adaptive filters; nearest-neighbour blocks compress well).

    Returns
    -------
    bytes

    Raises
    ------
    TypeError
        For a picture that is neither, a non-uint8 array, or a ``scale`` that is not an int.
    ValueError
        For a ``scale`` below 1 or one that would exceed
        :data:`~cnn_widgets.render.pixels.MAX_SIDE` pixels per side.
    """
    if isinstance(picture, Rendered):
        # Indexed pictures stay indexed: a third of the bytes, the same colours.
        indexed = picture.indices is not None
        pixels = picture.indices if indexed else picture.pixels
        palette = picture.palette if indexed else None
    elif isinstance(picture, np.ndarray):
        if picture.ndim not in (2, 3):
            raise ValueError(f"expected (H, W) or (H, W, 3|4) pixels, got shape {picture.shape}")
        pixels, palette = picture, None
    else:
        raise TypeError(
            f"expected a Rendered or a uint8 numpy array, got {type(picture).__name__}"
        )
    factor = pick_scale(pixels.shape[0], pixels.shape[1], scale)
    return encode_png(upscale(pixels, factor), compress_level, palette=palette)
