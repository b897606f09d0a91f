"""The top-images panel: with an image set (``widget.images = ...``), the images that excite
the selected channel most, cropped to its receptive field, in a strip beside the detail. The
strip follows the selection; rankings are computed in the background and cached per layer
and channel."""

from __future__ import annotations

import os
from typing import Any

import traitlets

from ..analysis import top_images
from ..analysis.top_images import ImageSet, TopImages
from ..render.encode import WIRE_COMPRESS_LEVEL, encode_png
from ..render.pixels import tile_rgba, to_uint8
from ..render.tile import tile_layout
from .frames import jsonable
from .inputs import ImageSetPanel
from .lane import LRU, Ticket

__all__ = ["TOP_K", "TopImagesPanel", "top_strip"]

TOP_K = 9
"""Images in the strip of top-activating images (fewer when the set is smaller)."""
STRIP_PAD = 2
CACHE_SIZE = 32


class TopImagesPanel(ImageSetPanel):
    """Ranks :attr:`images` for the selected channel (see the module docstring)."""

    top_strip = traitlets.Bytes(b"").tag(sync=True)
    """The images of :attr:`images` that excite the selected channel most, best first, cropped
    to its receptive field and tiled in one row (read-only)."""
    top_format = traitlets.Unicode("png").tag(sync=True)
    """Encoding of ``top_strip``."""
    top_meta = traitlets.Dict().tag(sync=True)
    """Facts about ``top_strip``: ``layer``, ``channel``, ``k``, ``images``, ``scores``,
    ``indices``, ``sources``, the tile geometry, and ``state`` (``"computing"``, ``"done"``,
    ``"error"``) (read-only)."""

    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._top_cache = LRU(CACHE_SIZE)
        self._top_key: tuple[Any, ...] | None = None
        self._images_generation = 0
        self.top_images_lane = self._lane("top-images", on_fail=self._top_failed)
        """The lane that ranks images (``started`` counts the rankings computed)."""

    def _images_changed(self) -> None:
        super()._images_changed()
        self.top_images_lane.retire()  # a ranking of the old set is no longer wanted
        with self._lock, self.hold_sync():
            self._images_generation += 1
            self._top_key = None
            self._top_cache.clear()
            self.top_strip, self.top_meta = b"", {}
        self._top_show()

    def _update(self, *, detail_only: bool, inline: bool) -> None:
        super()._update(detail_only=detail_only, inline=inline)
        self._top_show()

    def _top_show(self) -> None:
        """Show the selected channel's top images: from the cache, else ranked on the lane."""
        chosen = self._images
        if chosen is None or self.view == "table":
            return
        lane = self.top_images_lane
        if self._infos[self.layer].output_shape is None:  # the layer did not run
            ticket = lane.request()
            self._top_key = None
            ticket.publish(lambda: self._set_strip("png", b"", {}))
            return
        key = (self._images_generation, self.layer, self.channel)
        with self._lock:
            if key == self._top_key:
                return  # on screen, or being ranked
            self._top_key = key
        ticket = lane.request()
        cached = self._top_cache.get(key)
        if cached is not None:
            ticket.publish(lambda: self._set_strip(*cached))
            return
        count = int(chosen.count or 0)
        k = min(TOP_K, count)
        with self._lock, self.hold_sync():
            # The old strip stays until the new one comes; its meta says what is coming.
            self.top_meta = {
                "state": "computing",
                "layer": self.layer,
                "channel": self.channel,
                "k": k,
                "images": count,
            }
        lane.run(ticket, lambda t: self._rank(key, chosen, k, t))

    def _rank(self, key: tuple[Any, ...], chosen: ImageSet, k: int, ticket: Ticket) -> None:
        """Runs on the top-images lane."""
        _, layer, channel = key
        try:
            result = top_images(self._adapter, layer, channel, chosen, k=k, progress=False)
            wire = top_strip(result, int(chosen.count or 0))
        except Exception as exc:
            failed = {"state": "error", "layer": layer, "channel": channel}
            ticket.fail(exc, lambda: setattr(self, "top_meta", failed))
            return
        self._top_cache.put(key, wire)
        ticket.publish(lambda: self._set_strip(*wire))

    def _top_failed(self) -> None:
        self._top_key = None  # selecting the channel again tries again

    def _set_strip(self, fmt: str, data: bytes, meta: dict[str, Any]) -> None:
        self.top_format, self.top_strip, self.top_meta = fmt, data, meta


def top_strip(result: TopImages, count: int) -> tuple[str, bytes, dict[str, Any]]:
    """``(format, bytes, meta)`` of a strip of top-activating images, best first.

    The gaps are transparent (RGBA), so they take the page's colour in light and dark themes.
    ``meta`` holds the tile geometry (``count`` is the number of tiles, ``images`` the size
    of the set), the ``scores``, ``indices`` and file names.
    """
    k, height, width = result.images.shape[:3]
    strip = tile_rgba(to_uint8(result.images, channel_axis=-1), pad=STRIP_PAD, ncols=k)
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
