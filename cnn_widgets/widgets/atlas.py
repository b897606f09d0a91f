"""The atlas browser: a store written by :func:`cnn_widgets.atlas`, browsed without the model
(the "atlas" view).

It publishes the traits the front end's grid source already draws — ``layers``/``layer``,
``channel``/``page``, ``grid`` (the page's pictures tiled, channels in ``grid_layout``),
``detail`` (the selected channel's PNG as stored) and ``detail_stats`` (its record) — plus
``atlas_info`` for the atlas panel. Reading is a handful of small files, so it happens inline;
:meth:`AtlasBrowser.refresh` (the panel's "Refresh" button, or every ``refresh_every``
seconds) reads the store again, so a store that is still being written shows what is there.
"""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import traitlets
from PIL import Image

from .. import choices as _choices
from ..atlas.store import ATLAS_FILE, MANIFEST, Store, atlas_fingerprints, read_json
from ..render.rendered import Rendered
from ..render.tile import tile, tile_layout
from .base import WidgetBase

__all__ = ["AtlasBrowser"]

_VIEWS = ("atlas",)
MISSING_GRAY = 0.8
"""Tile of a channel not rendered yet: light gray (gaps between tiles are transparent)."""


class AtlasBrowser(WidgetBase):
    """Browse an atlas: layer menu, the layer's channels as a grid, one channel's record.

    Parameters
    ----------
    out:
        The store directory given to :func:`cnn_widgets.atlas` (or one model's
        ``out/<fingerprint>`` directory in it).
    fingerprint:
        Which model's atlas, when ``out`` holds several.
    layer:
        The layer shown first (default: the first listed).
    page_size:
        Channels per page of the grid.
    refresh_every:
        Seconds between automatic re-reads of the store (None: only on "Refresh" /
        :meth:`refresh`).

    Never loads the model; a store still being written shows what is there so far (missing
    channels as gray tiles).
    """

    _writable = frozenset({"layer", "channel", "page", "atlas_refresh"})

    views = traitlets.List(traitlets.Unicode(), default_value=list(_VIEWS)).tag(sync=True)
    """The views: ``["atlas"]``."""
    view = traitlets.Unicode("atlas").tag(sync=True)
    """Always ``"atlas"``."""
    choices = traitlets.Dict().tag(sync=True)
    """Choice lists for the front end (:func:`cnn_widgets.choices.for_frontend`)."""
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Every layer of the atlas, in the model's order: ``{name, shape, done, complete, ...}``
    (``done`` channels written so far, ``complete`` once the manifest is there)."""
    layer = traitlets.Unicode("").tag(sync=True)
    """The layer shown; an unknown name is refused (``error``) and the layer stays."""
    channel = traitlets.Int(0).tag(sync=True)
    """The selected channel; the page follows it."""
    channel_count = traitlets.Int(0).tag(sync=True)
    """Channels of the layer (read-only)."""
    page = traitlets.Int(0).tag(sync=True)
    """Page of channels in the grid (setting it selects the page's first channel)."""
    page_size = traitlets.Int(64).tag(sync=True)
    """Channels per page."""
    grid = traitlets.Bytes(b"").tag(sync=True)
    """The page's pictures, tiled (read-only)."""
    grid_format = traitlets.Unicode("png").tag(sync=True)
    grid_layout = traitlets.Dict().tag(sync=True)
    """Tile geometry of ``grid``, with the channel of each tile (read-only)."""
    grid_meta = traitlets.Dict().tag(sync=True)
    """``width``, ``height``, ``page``, ``pages``, ``text`` of the grid (read-only)."""
    detail = traitlets.Bytes(b"").tag(sync=True)
    """The selected channel's picture, the PNG as stored (read-only)."""
    detail_format = traitlets.Unicode("png").tag(sync=True)
    detail_stats = traitlets.Dict().tag(sync=True)
    """The selected channel's record: ``channel``, ``shape``, ``activation``, ``rank`` and
    ``of`` (when the layer is complete), ``steps``, ``seed``; ``missing`` when not there yet."""
    atlas_info = traitlets.Dict().tag(sync=True)
    """The store: ``out``, ``fingerprint``, ``framework``, ``layers`` and ``complete`` counts,
    ``channels`` and ``done`` counts (read-only)."""
    atlas_refresh = traitlets.Int(0).tag(sync=True)
    """The browser's "Refresh" button: each increment reads the store again."""
    status = traitlets.Unicode("idle").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        out: str | Path,
        fingerprint: str | None = None,
        *,
        layer: str | None = None,
        page_size: int = 64,
        refresh_every: float | None = None,
    ) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be an int >= 1, got {page_size!r}")
        if refresh_every is not None and (
            isinstance(refresh_every, bool) or not isinstance(refresh_every, (int, float))
            or refresh_every <= 0
        ):
            raise ValueError(f"refresh_every must be seconds > 0 or None, got {refresh_every!r}")
        self._root = _atlas_root(Path(out), fingerprint)
        self._quiet = True
        super().__init__(choices=_choices.for_frontend(_VIEWS), page_size=page_size)
        self._read()
        if layer is not None:
            self.layer = layer  # checked like any later change, but raising here
            if self.error:
                raise ValueError(self.error.split(": ", 1)[1])
        self._quiet = False
        self._draw()
        self._stop = threading.Event()
        if refresh_every is not None:
            threading.Thread(
                target=self._poll, args=(float(refresh_every),), daemon=True,
                name="cnnw-atlas-refresh",
            ).start()

    # -- public ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The model's directory in the store, ``out/<fingerprint>``."""
        return self._root

    def refresh(self) -> None:
        """Read the store again and redraw (what other processes wrote since shows up)."""
        with self._lock, self.hold_sync():
            self._quiet = True
            try:
                self._read()
            finally:
                self._quiet = False
            self._draw()

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        super().close()

    def __repr__(self) -> str:
        return f"<AtlasBrowser {str(self._root)!r} layer={self.layer!r} channel={self.channel}>"

    # -- reading the store -------------------------------------------------------------------
    def _read(self) -> None:
        info = read_json(self._root / ATLAS_FILE) or {}
        store = Store(self._root.parent, self._root.name)
        entries, done_total, channels_total, complete = [], 0, 0, 0
        for index, entry in enumerate(info.get("layers", [])):
            name, shape = str(entry["name"]), list(entry.get("shape") or [0])
            directory = store.layer_path(name)
            done = sum(1 for _ in directory.glob("[0-9]*.json")) if directory.is_dir() else 0
            finished = (directory / MANIFEST).is_file()
            complete += finished
            done_total += done
            channels_total += int(shape[0])
            entries.append({
                "index": index, "name": name, "type": f"{done}/{shape[0]} done", "shape": shape,
                "kind": "other", "has_filters": False, "ran": True, "vector": False,
                "views": list(_VIEWS), "done": done, "complete": finished,
            })
        self._store = store
        self._shapes = {e["name"]: e["shape"] for e in entries}
        self.layers = entries
        self.atlas_info = {
            "out": str(self._root.parent), "fingerprint": self._root.name,
            "framework": info.get("framework", ""), "layers": len(entries),
            "complete": complete, "channels": channels_total, "done": done_total,
        }
        if entries and self.layer not in self._shapes:
            self.layer = entries[0]["name"]
        self.status = "idle" if entries else "empty: no atlas.json yet (refresh later)"

    # -- validation and reactions --------------------------------------------------------------
    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        shapes = getattr(self, "_shapes", {})
        # Validators may run inside hold_trait_notifications, where the trait already reads
        # the proposed value: the last accepted one is kept here instead.
        accepted = self.__dict__.setdefault("_accepted", {"layer": "", "channel": 0})
        if value not in shapes and (shapes or value):
            names = ", ".join(repr(n) for n in list(shapes)[:12])
            self._report(ValueError(f"no layer {value!r} in this atlas; layers: {names}"))
            return accepted["layer"]
        accepted["layer"] = value
        return value

    @traitlets.validate("channel")
    def _valid_channel(self, proposal: dict[str, Any]) -> int:
        value, count = proposal["value"], self._count()
        accepted = self.__dict__.setdefault("_accepted", {"layer": "", "channel": 0})
        if not 0 <= value < max(count, 1):
            self._report(ValueError(f"channel {value} is out of range 0..{max(count - 1, 0)}"))
            return accepted["channel"]
        accepted["channel"] = value
        return value

    @traitlets.validate("page")
    def _valid_page(self, proposal: dict[str, Any]) -> int:
        return min(max(0, proposal["value"]), max(0, self._pages() - 1))

    @traitlets.observe("layer")
    def _on_layer(self, change: dict[str, Any]) -> None:
        if change["old"] != change["new"]:
            self.channel, self.page = 0, 0
        self._redraw()

    @traitlets.observe("channel")
    def _on_channel(self, change: dict[str, Any]) -> None:
        page = change["new"] // self.page_size
        if page != self.page:
            self.page = page  # draws the grid and the detail
        else:
            self._redraw(grid=False)

    @traitlets.observe("page")
    def _on_page(self, change: dict[str, Any]) -> None:
        first = change["new"] * self.page_size
        if not first <= self.channel < first + self.page_size:
            self.channel = first
        self._redraw()

    @traitlets.observe("atlas_refresh")
    def _on_refresh(self, change: dict[str, Any]) -> None:
        self.refresh()

    def _redraw(self, grid: bool = True) -> None:
        if not self._quiet:
            self._draw(grid)

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception as exc:  # a store moved away: say so, keep polling
                self._report(exc)

    # -- drawing -------------------------------------------------------------------------------
    def _count(self) -> int:
        shape = getattr(self, "_shapes", {}).get(self.layer)
        return int(shape[0]) if shape else 0

    def _pages(self) -> int:
        return max(1, math.ceil(self._count() / self.page_size))

    def _draw(self, grid: bool = True) -> None:
        with self._lock, self.hold_sync():
            self.channel_count = self._count()
            if grid:
                self._draw_grid()
            self._draw_detail()

    def _draw_grid(self) -> None:
        count = self._count()
        first = self.page * self.page_size
        channels = list(range(first, min(count, first + self.page_size)))
        pictures = {c: _load(self._store.layer_path(self.layer) / f"{c}.png") for c in channels}
        rendered = _grid(channels, pictures)
        self._grid = rendered
        if rendered is None:
            self.grid, self.grid_layout, self.grid_meta = b"", {}, {}
            return
        done = sum(p is not None for p in pictures.values())
        self.grid_format, self.grid = rendered.wire()
        self.grid_layout = {**rendered.layout.to_dict(), "offset": first}  # type: ignore[union-attr]
        self.grid_meta = {
            "view": "atlas", "layer": self.layer, "width": rendered.width,
            "height": rendered.height, "first": first, "page": self.page,
            "pages": self._pages(), "text": f"{done} of {len(channels)} here",
        }

    def _draw_detail(self) -> None:
        directory = self._store.layer_path(self.layer) if self.layer else None
        channel = self.channel
        png = _read_bytes(directory / f"{channel}.png") if directory else None
        record = read_json(directory / f"{channel}.json") if directory else None
        if png is None or not isinstance(record, dict):
            self.detail, self.detail_stats = b"", {"channel": channel, "missing": True}
            return
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
        stats: dict[str, Any] = {
            "channel": channel, "shape": [height, width],
            "activation": record.get("activation"), "seed": record.get("seed"),
            "steps": (record.get("settings") or {}).get("steps"),
        }
        manifest = read_json(directory / MANIFEST)  # type: ignore[operator]
        if isinstance(manifest, dict):
            ranks = {e.get("channel"): e.get("rank") for e in manifest.get("channels", [])}
            if channel in ranks:
                stats.update(rank=ranks[channel], of=len(ranks))
        self.detail_format, self.detail, self.detail_stats = "png", png, stats

    def _picture(self) -> Rendered | None:
        return getattr(self, "_grid", None)


def _atlas_root(out: Path, fingerprint: str | None) -> Path:
    """``out/<fingerprint>``: the one atlas in ``out``, or the one asked for."""
    if (out / ATLAS_FILE).is_file() and fingerprint in (None, out.name):
        return out  # one model's directory given directly
    if not out.is_dir():
        raise ValueError(f"no atlas store at {str(out)!r} (not a directory)")
    found = atlas_fingerprints(out)
    if fingerprint is not None:
        if fingerprint not in found:
            raise ValueError(
                f"no atlas with fingerprint {fingerprint!r} in {str(out)!r}; there: "
                f"{', '.join(found) or 'none'}"
            )
        return out / fingerprint
    if len(found) > 1:
        raise ValueError(
            f"{str(out)!r} holds the atlases of {len(found)} models: pass fingerprint= one of "
            f"{', '.join(found)}"
        )
    if not found:
        raise ValueError(
            f"no atlas in {str(out)!r} yet (no <fingerprint>/atlas.json): run "
            "cnn_widgets.atlas(model, out) first"
        )
    return out / found[0]


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _load(path: Path) -> np.ndarray | None:
    """A stored picture as ``(H, W, 3)`` float in [0, 1], or None when missing/unreadable."""
    data = _read_bytes(path)
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    except OSError:  # a file from elsewhere that is not a PNG
        return None


def _grid(channels: list[int], pictures: dict[int, np.ndarray | None]) -> Rendered | None:
    """The page's pictures tiled (missing ones gray), or None when none is there yet."""
    present = [p for p in pictures.values() if p is not None]
    if not channels or not present:
        return None
    h, w = present[0].shape[:2]
    stack = np.full((len(channels), h, w, 3), MISSING_GRAY, np.float32)
    for i, channel in enumerate(channels):
        picture = pictures[channel]
        if picture is not None and picture.shape[:2] == (h, w):
            stack[i] = picture
    canvas = np.round(tile(stack, pad=1) * 255).astype(np.uint8)
    layout = tile_layout(len(channels), h, w, pad=1, channels=tuple(channels))
    return Rendered(canvas, layout=layout, meta={"shown": len(present), "total": len(channels)})
