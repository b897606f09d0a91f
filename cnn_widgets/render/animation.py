"""Animated GIFs of a feature-visualization run (``feature_viz(..., record_every=k)``).

Each frame is the page of images tiled as the widget tiles them, enlarged by a whole number
(:func:`~cnn_widgets.render.pixels.readable_scale`) so that 28-pixel digits are visible on a
slide. GIF holds 256 colours per frame; Pillow picks an adaptive palette for each frame, which
is enough for these smooth pictures. Gray images stay gray (a one-channel palette).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .pixels import pick_scale, to_uint8, upscale
from .tile import tile

__all__ = ["animation_frames", "save_animation"]

GAP = 2
"""Pixels between the tiles of a frame (the gaps are black: GIF has no partial alpha)."""


def animation_frames(frames: Any, scale: int | None = None) -> list[Image.Image]:
    """The pictures of an animation: one tiled, enlarged PIL image per frame.

    Parameters
    ----------
    frames:
        ``(T, n, H, W, C)`` (what ``record_every`` returns) or ``(T, H, W, C)`` (one image),
        values in [0, 1], ``C`` 1 or 3.
    scale:
        Whole-number enlargement; default: :func:`~cnn_widgets.render.readable_scale` of a
        frame's size.
    """
    array = np.asarray(frames)
    if array.ndim == 4:
        array = array[:, None]
    if array.ndim != 5 or array.shape[-1] not in (1, 3) or array.shape[0] < 1:
        raise ValueError(
            "frames must be (T, n, H, W, C) or (T, H, W, C) with C 1 or 3 and T >= 1, as "
            f"feature_viz(..., record_every=k) returns; got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"frames must hold real numbers in [0, 1], got dtype {array.dtype}")
    pixels = to_uint8(array, channel_axis=-1)  # (T, n, H, W[, 3])
    tiled = [tile(page, pad=GAP, pad_value=0) for page in pixels]
    factor = pick_scale(tiled[0].shape[0], tiled[0].shape[1], scale)
    mode = "L" if tiled[0].ndim == 2 else "RGB"
    return [Image.fromarray(np.ascontiguousarray(upscale(t, factor)), mode) for t in tiled]


def save_animation(
    frames: Any,
    path: str | os.PathLike[str] | io.IOBase,
    *,
    fps: float = 10.0,
    loop: int = 0,
    hold_last: float = 1.0,
    scale: int | None = None,
) -> None:
    """Write ``frames`` as an animated GIF.

    Parameters
    ----------
    frames:
        ``(T, n, H, W, C)`` from ``feature_viz(..., record_every=k)`` (each frame shows the
        n images tiled) or ``(T, H, W, C)``; values in [0, 1].
    path:
        File path (``.gif``), or a binary file object.
    fps:
        Frames per second (> 0).
    loop:
        How often the GIF repeats; 0: forever.
    hold_last:
        Seconds the last frame stays on screen before the loop starts again.
    scale:
        Whole-number enlargement; default: readable on a page (about 512 px).
    """
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
        raise ValueError(f"fps must be a number > 0, got {fps!r}")
    if not isinstance(hold_last, (int, float)) or not hold_last >= 0:
        raise ValueError(f"hold_last must be a number of seconds >= 0, got {hold_last!r}")
    if isinstance(loop, bool) or not isinstance(loop, int) or loop < 0:
        raise ValueError(f"loop must be an int >= 0 (0: forever), got {loop!r}")
    images = animation_frames(frames, scale)
    step_ms = max(20, round(1000.0 / fps))  # browsers treat shorter GIF delays as 100 ms
    durations = [step_ms] * len(images)
    durations[-1] = max(step_ms, round(1000.0 * hold_last))
    target = path if isinstance(path, io.IOBase) else Path(path)
    images[0].save(
        target,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=durations,
        loop=loop,
        optimize=False,
        disposal=1,
    )
