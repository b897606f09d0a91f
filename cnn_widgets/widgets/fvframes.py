"""Feature-visualization pictures for the widgets: settings, tiling, encoding and throttling.

Nothing here touches traits or threads: the widget reads a :class:`FvRequest` from its traits,
runs :func:`cnn_widgets.featureviz.feature_viz` on its worker thread, and turns the ``(n, H,
W, C)`` images of each step into wire bytes with :func:`fv_picture`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..featureviz import MAX_STEPS_ENV
from ..render.encode import WIRE_COMPRESS_LEVEL, encode_jpeg, encode_png
from ..render.pixels import tile_rgba, to_uint8
from ..render.tile import tile, tile_layout

__all__ = [
    "FvRequest",
    "Throttle",
    "effective_steps",
    "fv_file_picture",
    "fv_picture",
    "fv_single_png",
]

_GAP_GRAY = 128  # JPEG has no alpha: a mid gray gap reads in light and dark themes alike


@dataclass(frozen=True)
class FvRequest:
    """Everything one feature-visualization result depends on (its cache key)."""

    layer: str
    channels: tuple[int, ...]
    """The channels (units, classes) optimized, one image each; empty for ``"layer"``."""
    objective: str
    steps: int
    size: int
    """Image side in pixels; 0 lets :func:`feature_viz` choose."""
    recipe: str

    def describe(self) -> str:
        """A short text for the status line."""
        what = self.objective if self.objective != "layer" else "layer (DeepDream)"
        return f"{what} of {self.layer!r}"


def effective_steps(steps: int) -> int:
    """``steps`` after the ``CNN_WIDGETS_MAX_STEPS`` cap that :func:`feature_viz` applies."""
    cap = os.environ.get(MAX_STEPS_ENV, "").strip()
    try:
        return max(1, min(steps, int(cap))) if cap else steps
    except ValueError:  # feature_viz itself reports the bad value when the run starts
        return steps


class Throttle:
    """Says whether enough time passed since the last frame that went out.

    Parameters
    ----------
    interval:
        Seconds between frames.
    clock:
        Monotonic time source (tests pass a fake one).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        """True (and the clock restarts) when a frame may go out now."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """``(n, H, W, C)`` floats in [0, 1] -> ``(n, H, W)`` gray or ``(n, H, W, 3)`` uint8."""
    array = np.asarray(images, np.float32)
    if array.ndim != 4:
        raise ValueError(f"expected (n, H, W, C) images, got shape {array.shape}")
    return to_uint8(array, channel_axis=-1)


def fv_picture(
    images: np.ndarray, channels: tuple[int, ...], *, fmt: str = "png"
) -> tuple[str, bytes, dict[str, Any]]:
    """Tile feature-visualization images for the browser.

    Parameters
    ----------
    images:
        ``(n, H, W, C)`` in [0, 1]; gray models (``C == 1``) give gray tiles.
    channels:
        The channel of each image (the browser maps clicks through it); empty for one
        image that stands for the whole layer.
    fmt:
        ``"jpeg"`` for streamed frames (fast, small), ``"png"`` for the final picture (its
        gaps are transparent so a dark theme shows through).

    Returns
    -------
    tuple[str, bytes, dict]
        Format, encoded bytes and the tile layout (``TileLayout.to_dict()``).
    """
    pixels = _to_uint8(images)
    n, h, w = pixels.shape[:3]
    ids = tuple(int(c) for c in channels) if len(channels) == n else None
    layout = tile_layout(n, h, w, pad=1, channels=ids)
    if fmt == "jpeg":
        canvas = tile(pixels, pad=1, pad_value=_GAP_GRAY)
        return "jpeg", encode_jpeg(canvas, 85), layout.to_dict()
    if fmt != "png":
        raise ValueError(f"fmt must be 'png' or 'jpeg'; got {fmt!r}")
    rgba = tile_rgba(pixels, pad=1)
    return "png", encode_png(rgba, WIRE_COMPRESS_LEVEL), layout.to_dict()


def fv_single_png(images: np.ndarray, index: int) -> bytes:
    """One image of the stack as PNG (gray for gray models)."""
    return encode_png(_to_uint8(images[index : index + 1])[0], WIRE_COMPRESS_LEVEL)


def fv_file_picture(images: np.ndarray) -> np.ndarray:
    """The tiled images for a file or a notebook output (white gaps, as saved grids have)."""
    return tile(_to_uint8(images), pad=1)
