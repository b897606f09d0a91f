"""The picture panel: a layer's filters or feature maps as a grid, and the selected channel
enlarged (the "filters" and "activations" views).

How a change travels: a setting changes (from Python or the browser); the selection settles
(:mod:`.selection`); this panel reads a :class:`~.frames.Request` from the traits. When the
data it needs (the layer's weights, or its feature maps for this image) is cached and the
lane is idle, the picture is drawn at once on the calling thread; otherwise the request goes
to the lane, ``busy`` turns on, and a newer request supersedes it. Moving the channel within
the page redraws only the detail, from the cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import traitlets

from .. import choices
from ..analysis import filter_responses
from ..backends import LayerInfo
from .frames import Frame, Request, render
from .lane import LRU, Ticket
from .selection import SelectionPanel, is_vector

__all__ = ["CACHE_SIZE", "PicturePanel"]

CACHE_SIZE = 8
"""Layers' data kept per widget: feature maps per (image, layer), weights per layer."""

_VIEWS = ("filters", "activations")
_SETTINGS = (
    "normalization",
    "colormap",
    "input_channel",
    "activation_mode",
    "vector_mode",
    "top_k",
)


class PicturePanel(SelectionPanel):
    """Draws the "filters" and "activations" views (see the module docstring)."""

    _writable = frozenset(_SETTINGS)
    _DEFAULT_COLORMAP = "viridis"

    # -- how it is drawn -------------------------------------------------------------------
    normalization = traitlets.Unicode("layer").tag(sync=True)
    """``"layer"`` (one scale for the layer: channels stay comparable), ``"channel"`` (each
    stretched on its own), ``"symmetric"`` (zero in the middle; for signed weights) or
    ``"std"`` (the Keras ``deprocess_image`` recipe)."""
    colormap = traitlets.Unicode("viridis").tag(sync=True)
    """``"gray"``, ``"viridis"`` or ``"diverging"`` (blue - white - red, for signed values)."""
    input_channel = traitlets.CUnicode("auto").tag(sync=True)
    """Filters view: which input channel of each kernel to draw: ``"auto"`` (RGB for 3 inputs,
    else the mean), ``"rgb"``, ``"mean"`` or an index (``"0"``, ``"1"``, ...)."""
    activation_mode = traitlets.Unicode("grid").tag(sync=True)
    """Feature maps as a ``"grid"`` of channels, reduced to one picture by ``"sum"`` or
    ``"mean"`` over channels, or ``"kernel x image"``: for the selected channel of a conv
    layer, the layer's input convolved with that filter input channel by input channel (one
    tile each, the first ``page_size``) and their sum as the detail picture
    (:func:`cnn_widgets.filter_responses`)."""
    vector_mode = traitlets.Unicode("auto").tag(sync=True)
    """Layers that output a vector: ``"dense"`` (values and histogram), ``"probabilities"``
    (top-k classes) or ``"auto"`` (probabilities for the output layer)."""
    top_k = traitlets.Int(5).tag(sync=True)
    """How many classes the probabilities view lists."""

    # -- the pictures ------------------------------------------------------------------------
    grid = traitlets.Bytes(b"").tag(sync=True)
    """The current picture at its natural size (never upscaled: the browser enlarges it),
    encoded as ``grid_format``."""
    grid_format = traitlets.Unicode("png").tag(sync=True)
    """Encoding of ``grid``: ``"png"`` or ``"jpeg"`` (the browser's MIME subtype)."""
    grid_layout = traitlets.Dict().tag(sync=True)
    """Tile geometry of ``grid`` (``TileLayout.to_dict()``) plus ``offset``, the channel of the
    first tile; empty for single pictures. The browser maps clicks to channels with it."""
    grid_meta = traitlets.Dict().tag(sync=True)
    """Facts about ``grid``: ``shown``, ``total``, ``first``, ``page``, ``pages``, ``text``
    ("64 of 2048 shown"), ``nonfinite``, ``kind`` and view-specific entries."""
    detail = traitlets.Bytes(b"").tag(sync=True)
    """The selected channel alone at its natural size (the browser enlarges it)."""
    detail_format = traitlets.Unicode("png").tag(sync=True)
    """Encoding of ``detail``."""
    detail_stats = traitlets.Dict().tag(sync=True)
    """``min``, ``max``, ``mean``, ``shape`` and ``nonfinite`` of the selected channel."""
    predictions = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Probabilities view: ``{index, label, value}`` best first; empty otherwise."""

    # -- construction --------------------------------------------------------------------------
    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        options.setdefault("colormap", self._DEFAULT_COLORMAP)
        self._cache = LRU(CACHE_SIZE)
        self._frame: Frame | None = None
        # True when ``error`` describes a failed picture (cleared by the next good one); input
        # errors stay until the next user action.
        self._render_error = False
        self.picture_lane = self._lane("picture", on_fail=self._picture_failed)
        """The lane that computes pictures in the background (its counters are public)."""

    # -- validation (the choice lists: SelectionPanel._validate_choice) -------------------
    @traitlets.validate("input_channel")
    def _validate_input_channel(self, proposal: Any) -> str:
        # Overrides the choice-list rule: a channel index is valid too.
        value = proposal["value"].strip().lower()
        if value in choices.values(choices.INPUT_CHANNEL_WORDS) or value.isdigit():
            return value
        raise traitlets.TraitError(
            f"{type(self).__name__}.input_channel must be 'auto', 'rgb', 'mean' or a channel "
            f"index; got {proposal['value']!r}"
        )

    # -- observers -----------------------------------------------------------------------------
    @traitlets.observe(*_SETTINGS)
    def _on_setting(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        self._new_action()
        self._refresh()

    def _on_new_layer(self) -> None:
        super()._on_new_layer()
        if self.input_channel not in ("auto", "mean"):
            self.input_channel = "auto"  # "rgb" or an index may not fit the new layer

    # -- drawing -------------------------------------------------------------------------------
    def _picture_request(self) -> Request:
        info = self._infos[self.layer]
        image, key = self._current_input()
        return Request(
            is_output=info.name == self._output_name,
            is_vector=is_vector(info),
            labels=self._adapter.spec.labels,
            view=self.view,
            layer=self.layer,
            channel=self.channel,
            page=self.page,
            page_size=self.page_size,
            normalization=self.normalization,
            colormap=self.colormap,
            input_channel=self.input_channel,
            activation_mode=self.activation_mode,
            vector_mode=self.vector_mode,
            top_k=self.top_k,
            image_key=key,
            image=image,
        )

    def _update(self, *, detail_only: bool, inline: bool) -> None:
        super()._update(detail_only=detail_only, inline=inline)
        if self.view not in _VIEWS:
            return
        try:
            request = self._picture_request()
        except Exception as exc:
            self._report(exc)
            self._render_error = True
            return
        lane = self.picture_lane
        ticket = lane.request()
        if request.data_key is None:
            self._publish(ticket, None, status="no image: choose a sample or open a file")
            return
        responses = request.renderer == "responses"
        if responses and not self._infos[request.layer].has_filters:
            self._refuse_responses(ticket, self._infos[request.layer])
            return
        cached = self._cache.get(request.data_key)
        previous = self._frame
        # Only the detail changes when everything but the channel is what is on screen (in
        # kernel x image, the whole grid belongs to the channel).
        detail_only = (
            detail_only
            and not responses
            and cached is not None
            and previous is not None
            and dataclasses.replace(previous.request, channel=request.channel) == request
        )
        cheap = cached is not None or request.view == "filters"
        if inline or (cheap and not lane.busy):
            # Cached data (or weights, which need no forward pass) draw in milliseconds: no
            # thread hop, and the caller sees the result as soon as the setter returns.
            try:
                frame = self._draw_now(request, cached, previous, detail_only, wait=inline)
            except Exception as exc:
                ticket.fail(exc)
                return
            if frame is not None:
                self._publish(ticket, frame)
                return
        what = "filters" if request.view == "filters" else "feature maps"
        if responses:
            what = f"kernel x image responses of filter {request.channel}"
        self._model_needed()
        with self._lock, self.hold_sync():
            self.busy = True
            self.status = f"busy: computing the {what} of {request.layer!r}"
        lane.run(ticket, lambda t: self._draw(request, t))

    def _draw_now(
        self,
        request: Request,
        cached: Any,
        previous: Frame | None,
        detail_only: bool,
        *,
        wait: bool,
    ) -> Frame | None:
        """The frame drawn on the calling thread; None when the data needs the model and
        the model is busy in the background (the caller then uses the lane)."""
        if cached is None:
            self._model_needed()
            lock = self._adapter.lock
            if not lock.acquire(blocking=wait):  # never block the kernel on a long job
                return None
            try:
                cached = self._fetch(request)
            finally:
                lock.release()
        return render(request, cached, previous=previous, detail_only=detail_only)

    def _draw(self, request: Request, ticket: Ticket) -> None:
        """Runs on the picture lane."""
        data = self._cache.get(request.data_key) if request.data_key else None
        if data is None:
            data = self._fetch(request)
        ticket.check()
        self._publish(ticket, render(request, data, stop=ticket.stop))

    def _fetch(self, request: Request) -> Any:
        adapter = self._adapter
        if request.view == "filters":
            data = adapter.filters(request.layer)
        elif request.renderer == "responses":
            assert request.image is not None
            # HWC floats in [0, 1] are read back unchanged (CHW of one channel is not).
            image = np.moveaxis(request.image, 0, -1)
            data = filter_responses(adapter, image, request.layer, request.channel)
        else:
            assert request.image is not None
            data = adapter.activations(request.image[None], [request.layer])[request.layer][0]
        self._cache.put(request.data_key, data)
        return data

    def _publish(self, ticket: Ticket, frame: Frame | None, *, status: str = "idle") -> bool:
        """Send a picture unless a newer request was made meanwhile; one message."""

        def apply() -> None:
            if frame is None:
                self.grid, self.grid_layout, self.grid_meta = b"", {}, {}
                self.detail, self.detail_stats, self.predictions = b"", {}, []
            else:
                if frame.grid is not (self._frame.grid if self._frame else None):
                    self.grid_format, self.grid = frame.grid_wire
                    self.grid_layout = frame.layout
                    self.grid_meta = frame.meta
                    self.predictions = frame.predictions
                self.detail_format, self.detail = frame.detail_wire
                self.detail_stats = frame.detail_stats
                self._frame = frame
            if self._render_error:
                self.error, self._render_error = "", False
            self.busy = False
            self.status = status

        return ticket.publish(apply)

    def _picture_failed(self) -> None:
        self._render_error = True
        self.busy = False
        self.status = "error"

    def _refuse_responses(self, ticket: Ticket, info: LayerInfo) -> None:
        """Kernel x image on a layer without filters: say so, and show no stale picture."""
        convs = [i.name for i in self._order if i.has_filters]
        hint = f" ({', '.join(repr(n) for n in convs[:4])})" if convs else ""
        message = (
            f"kernel x image needs a convolution, but layer {info.name!r} is a {info.type} "
            f"without filters: choose a conv layer{hint} or another 'Show' mode"
        )
        with self._lock, self.hold_sync():
            if not self._publish(ticket, None, status="kernel x image: not a conv layer"):
                return
            self._report(message)
            self._render_error = True

    def _picture(self) -> Any:
        if self.view not in (*_VIEWS, "table"):
            return super()._picture()
        # The last picture drawn, also in the table view (which draws none).
        return self._frame.grid if self._frame is not None else None
