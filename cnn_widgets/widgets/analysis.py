"""The analyses of :mod:`cnn_widgets.analysis` as widget state: image sets, health marks and
the strip of top-activating images.

Nothing here touches traits or threads: the widget validates ``images`` with
:func:`image_set`, runs :func:`~cnn_widgets.health_report` and
:func:`~cnn_widgets.top_images` on a worker thread, and turns their results into the JSON and
bytes it publishes with :func:`health_entries` and :func:`top_strip`.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..analysis.health import HealthReport
from ..analysis.top_images import ImageSet, TopImages
from ..backends import Adapter
from ..render.encode import WIRE_COMPRESS_LEVEL, encode_png
from ..render.tile import tile, tile_layout
from .frames import jsonable

__all__ = [
    "KIND_LABELS",
    "TOP_K",
    "default_health_images",
    "health_entries",
    "health_summary",
    "image_set",
    "top_strip",
]

log = logging.getLogger(__name__)

TOP_K = 9
"""Images in the strip of top-activating images (fewer when the set is smaller)."""
STRIP_PAD = 2

KIND_LABELS = {
    "dead_filter": "dead filter",
    "dead_channel": "dead channel",
    "constant_channel": "constant channel",
    "nonfinite_weights": "NaN/Inf weights",
    "nonfinite_activations": "NaN/Inf values",
}
"""Words for :data:`cnn_widgets.analysis.health.KINDS` in the widget's list."""


def image_set(adapter: Adapter, images: Any) -> ImageSet:
    """``images`` as an :class:`ImageSet` that can be read more than once, checked on its
    first image.

    Parameters
    ----------
    adapter:
        The model the images are for (its channels and input size).
    images:
        A folder, an ``(N, H, W[, C])`` array, a list of images or paths, or an
        :class:`ImageSet` of known length.

    Raises
    ------
    ValueError, TypeError
        For an empty set, a folder without images, a shape that is not a stack of images, or
        a first image that cannot be read.
    """
    if isinstance(images, ImageSet):
        result = images
    else:
        value = images
        one_file = isinstance(value, (str, os.PathLike, bytes, Image.Image))
        array_like = isinstance(value, np.ndarray) or hasattr(value, "__array__")
        lazy = isinstance(value, Iterable) and not isinstance(value, Sequence)
        if lazy and not (one_file or array_like):
            # A generator is read once, but every channel's top images read the set again.
            value = list(value)
        result = ImageSet(value)
    if result.count is None:
        raise ValueError(
            "the image set must have a known length (a folder, an array or a list), because "
            "each channel's top images read it again"
        )
    # Reading the first image catches most mistakes (a wrong path, a shape that is no image)
    # now, when the user sets ``images``, not later on the worker thread.
    next(iter(result.batches(adapter.spec.channels, adapter.spec.spatial, 1)))
    return result


def default_health_images(adapter: Adapter, current: np.ndarray | None) -> list[np.ndarray]:
    """The images a health check uses when the user gave none: the current input image and
    every bundled sample whose channel count is the model's (the digits for a gray model, the
    photos for an RGB one).

    With no fixed input size, only images of the first one's size are kept (the statistics
    need maps of one size).
    """
    chosen: list[np.ndarray] = []
    if current is not None:
        chosen.append(np.moveaxis(current, 0, -1))  # HWC floats in [0, 1]: read as they are
    zoo = importlib.import_module("cnn_widgets.zoo")
    for name in zoo.list_samples():
        try:
            picture = zoo.sample_image(name)
        except ImportError as exc:  # the photos need scikit-image; the digits do not
            log.info("sample %s left out of the health check: %s", name, exc)
            continue
        channels = 1 if picture.ndim == 2 else picture.shape[-1]
        if channels == adapter.spec.channels:
            chosen.append(picture)
    if adapter.spec.spatial is None and chosen:
        size = chosen[0].shape[:2]
        chosen = [picture for picture in chosen if picture.shape[:2] == size]
    return chosen


def _layer_findings(report: HealthReport, layer: str) -> list[Any]:
    return [
        f for f in report.findings if f.layer == layer or layer in report.followers.get(f.layer, ())
    ]


def health_entries(report: HealthReport, layer: str) -> tuple[dict[str, list[str]], list[dict]]:
    """The marks and the list of one layer: ``({"4": [kind, ...]}, [{channel, kind, label,
    message, where}, ...])``, JSON-ready (dict keys are strings on the wire)."""
    flags = {str(channel): kinds for channel, kinds in report.flagged(layer).items()}
    rows = [
        {
            "channel": f.channel,
            "kind": f.kind,
            "label": KIND_LABELS.get(f.kind, f.kind),
            "message": f.message,
            "where": f.where,
        }
        for f in _layer_findings(report, layer)
    ]
    return flags, jsonable(rows)


def health_summary(report: HealthReport, layer: str, source: str) -> str:
    """One line about the report, from the point of view of ``layer``."""
    checked = report.layers
    followers = {name for names in report.followers.values() for name in names}
    seen = f"{report.images} image(s), {source}" if report.images else "weights only"
    total = f"{len(report)} finding(s) in {len(checked)} conv layer(s) ({seen})"
    if layer not in checked and layer not in followers:
        return f"{layer!r} is not a conv layer (or a layer right after one): {total}"
    flagged = len(report.flagged(layer))
    if not flagged:
        return f"no problems in {layer!r} · {total}"
    plural = "s" if flagged != 1 else ""
    return f"{flagged} flagged channel{plural} in {layer!r} · {total}"


def top_strip(result: TopImages, count: int) -> tuple[str, bytes, dict[str, Any]]:
    """``(format, bytes, meta)`` of a strip of top-activating images, best first.

    The gaps are transparent (RGBA), so they take the page's colour in light and dark themes.
    ``meta`` holds the tile geometry (``count`` is the number of tiles, ``images`` the size
    of the set), the ``scores``, ``indices`` and file names.
    """
    pixels = np.clip(np.nan_to_num(result.images, nan=0.0), 0.0, 1.0)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    opaque = np.ones((*pixels.shape[:3], 1), pixels.dtype)
    rgba = (np.concatenate([pixels, opaque], axis=-1) * 255.0 + 0.5).astype(np.uint8)
    k, height, width = rgba.shape[:3]
    strip = tile(rgba, pad=STRIP_PAD, pad_value=(0, 0, 0, 0), ncols=k)
    layout = tile_layout(k, height, width, pad=STRIP_PAD, ncols=k).to_dict()
    names = [None if s is None else os.path.basename(s) for s in result.sources]
    meta = {
        **layout,
        "layer": result.layer,
        "channel": result.channel,
        "k": k,
        "images": count,
        "scores": [float(s) for s in result.scores],
        "indices": [int(i) for i in result.indices],
        "sources": names,
        "state": "done",
    }
    return "png", encode_png(strip, WIRE_COMPRESS_LEVEL), jsonable(meta)
