"""The attribution panel: where the model looks for the current image (:func:`cnn_widgets.
attribution`), live. A method menu, the top classes as clickable targets, a layer menu for the
CAM methods, the overlay's opacity, and a compare mode with several methods side by side for
one target. Maps are computed on the panel's lane (long methods report progress and can be
stopped) and cached per image, method, target and layer; the opacity needs no model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import traitlets

from .. import choices as _choices
from ..attribution import CAM_METHODS, Attribution, attribution, cam_layers
from ..render.encode import WIRE_COMPRESS_LEVEL, encode_png
from ..render.pixels import tile_rgba
from ..render.tile import tile_layout
from .frames import jsonable
from .lane import LRU, Cancelled, Ticket
from .selection import SelectionPanel

__all__ = ["COMPARE_METHODS", "TOP_CLASSES", "AttributionPanel", "overlay_strip", "top_classes_of"]

TOP_CLASSES = 5
"""Classes offered as targets: the most probable ones for the image."""
COMPARE_METHODS = ("gradcam", "gradcam++", "layercam", "saliency")
"""The methods shown side by side in compare mode unless ``attr_compare_methods`` says (the
quick ones: one backward pass each)."""
TILE_PAD = 2
CACHE_SIZE = 64
PROGRESS_INTERVAL = 0.1  # seconds between progress messages
_SETTINGS = ("attr_method", "attr_target", "attr_layer", "attr_compare", "attr_compare_methods")


@dataclass(frozen=True)
class AttrRequest:
    """What the attribution view shows: one image, methods, a target and a CAM layer."""

    image_key: str
    methods: tuple[str, ...]
    target: int | None
    layer: str | None

    def key(self, method: str) -> tuple[Any, ...]:
        return (self.image_key, method, self.target, self.layer if method in CAM_METHODS else None)


class AttributionPanel(SelectionPanel):
    """Attribution maps of the current image (see the module docstring); a widget gets its
    image from :class:`~.inputs.ImagePanel`."""

    _writable = frozenset({*_SETTINGS, "attr_alpha", "attr_stop"})

    attr_method = traitlets.Unicode("gradcam").tag(sync=True)
    """The attribution method (:data:`cnn_widgets.choices.ATTRIBUTION_METHODS`)."""
    attr_target = traitlets.Int(-1).tag(sync=True)
    """The target class; -1: the top class of the image."""
    attr_layer = traitlets.Unicode("").tag(sync=True)
    """The layer of the CAM methods (one of ``attr_layers``); empty: chosen automatically."""
    attr_alpha = traitlets.Float(0.5).tag(sync=True)
    """The map's opacity over the image, in [0, 1]."""
    attr_compare = traitlets.Bool(False).tag(sync=True)
    """Show ``attr_compare_methods`` side by side for the same target."""
    attr_compare_methods = traitlets.List(traitlets.Unicode(), list(COMPARE_METHODS)).tag(
        sync=True
    )
    """The methods of compare mode, in order."""
    attr_stop = traitlets.Int(0).tag(sync=True)
    """The browser's "Stop" button: each increment runs :meth:`stop_attribution`."""
    attr_layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The layers a CAM method can use, in forward order (read-only)."""
    attr_classes = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The image's most probable classes: ``{index, label, probability}``, best first
    (read-only)."""
    attr_picture = traitlets.Bytes(b"").tag(sync=True)
    """The map(s) over the image as PNG: one picture, or one tile per method in compare mode
    (read-only)."""
    attr_meta = traitlets.Dict().tag(sync=True)
    """Facts about ``attr_picture``: ``state`` (``"computing"``, ``"done"``, ``"stopped"``,
    ``"error"``), ``target``, ``label``, ``tiles`` (per method: ``method``, ``name``, ``layer``,
    ``score``) and the tile geometry (read-only)."""
    attr_running = traitlets.Bool(False).tag(sync=True)
    """True while maps are computed in the background (read-only)."""
    attr_progress = traitlets.Float(0.0).tag(sync=True)
    """Fraction of the running computation done (read-only)."""

    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._attr_cache = LRU(CACHE_SIZE)
        self._attr_classes_cache = LRU(CACHE_SIZE)
        self._attr_shown: tuple[AttrRequest, list[Attribution]] | None = None
        self._attr_key: AttrRequest | None = None
        self.attribution_lane = self._lane("attribution", on_fail=self._attr_failed)
        """The lane that computes maps (``started`` counts the computations)."""
        try:
            layers = [i.name for i in cam_layers(adapter)]
        except Exception:  # a model without spatial layers: the CAM methods will say so
            layers = []
        state.update(attr_layers=layers)

    # -- validation ----------------------------------------------------------------------------
    @traitlets.validate("attr_alpha")
    def _validate_alpha(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            raise traitlets.TraitError(f"attr_alpha is the map's opacity in [0, 1]; got {value}")
        return value

    @traitlets.validate("attr_compare_methods")
    def _validate_compare(self, proposal: Any) -> list[str]:
        methods = list(proposal["value"])
        if not methods:
            raise traitlets.TraitError("attr_compare_methods needs at least one method")
        for method in methods:
            try:
                _choices.check(_choices.ATTRIBUTION_METHODS, method, "attr_compare_methods")
            except ValueError as exc:
                raise traitlets.TraitError(str(exc)) from None
        return methods

    @traitlets.validate("attr_layer")
    def _validate_attr_layer(self, proposal: Any) -> str:
        name = proposal["value"]
        if name and name not in self.attr_layers:
            shown = ", ".join(repr(n) for n in self.attr_layers[-8:]) or "none"
            raise traitlets.TraitError(
                f"attr_layer must be empty (automatic) or a layer with a (C, H, W) output, "
                f"such as {shown}; got {name!r}"
            )
        return name

    # -- public ------------------------------------------------------------------------------
    @property
    def attributions(self) -> list[Attribution]:
        """The :class:`~cnn_widgets.Attribution` results on screen (one per method shown)."""
        shown = self._attr_shown
        return [] if shown is None else list(shown[1])

    def stop_attribution(self) -> None:
        """Stop the running computation; the last finished maps stay, status "stopped"."""
        if not self.attr_running:
            return
        self.attribution_lane.cancel()

    # -- hooks ---------------------------------------------------------------------------------
    def _update(self, *, detail_only: bool, inline: bool) -> None:
        super()._update(detail_only=detail_only, inline=inline)
        if self.view == "attribution" and not detail_only:
            self._attr_show()

    @traitlets.observe(*_SETTINGS)
    def _on_attr_setting(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        self._new_action()
        if self.view == "attribution":
            self._attr_show()

    @traitlets.observe("attr_alpha")
    def _on_attr_alpha(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        with self._lock:
            shown = self._attr_shown
            if shown is not None:
                picture, meta = overlay_strip(shown[1], self.attr_alpha)
                with self.hold_sync():
                    self.attr_picture = encode_png(picture, WIRE_COMPRESS_LEVEL)
                    self.attr_meta = {**self.attr_meta, **meta}

    @traitlets.observe("attr_stop")
    def _on_attr_stop(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["old"] != change["new"]:
            self.stop_attribution()

    # -- requests ------------------------------------------------------------------------------
    def _attr_request(self) -> AttrRequest | None:
        _, key = self._current_input()
        if not key:
            return None
        methods = tuple(self.attr_compare_methods) if self.attr_compare else (self.attr_method,)
        target = None if self.attr_target < 0 else int(self.attr_target)
        return AttrRequest(key, methods, target, self.attr_layer or None)

    def _attr_show(self) -> None:
        """Show the maps for the image and settings on screen: from the cache at once, else
        computed on the lane."""
        request = self._attr_request()
        lane = self.attribution_lane
        if request is None:
            ticket = lane.request()
            self._attr_key = None
            ticket.publish(lambda: self._attr_clear("no image: choose a sample or open a file"))
            return
        with self._lock:
            if request == self._attr_key:
                return  # on screen, or being computed
            self._attr_key = request
        ticket = lane.request()
        image, _ = self._current_input()
        cached = [self._attr_cache.get(request.key(m)) for m in request.methods]
        classes = self._attr_classes_cache.get(request.image_key)
        if classes is not None and all(c is not None for c in cached):
            ticket.publish(lambda: self._attr_set(request, cached, classes, "done"))
            return
        self._model_needed()  # a running feature visualization yields the model
        with self._lock, self.hold_sync():
            self.attr_running = True
            self.attr_progress = 0.0
            self.attr_meta = {**self.attr_meta, "state": "computing"}
            self.status = f"busy: {', '.join(request.methods)}"
        lane.run(ticket, lambda t: self._attr_compute(request, image, t))

    # -- the work (on the lane's thread) -----------------------------------------------------
    def _attr_compute(self, request: AttrRequest, image: np.ndarray, ticket: Ticket) -> None:
        classes = self._attr_classes_cache.get(request.image_key)
        if classes is None:
            classes = top_classes_of(self._adapter, image)
            self._attr_classes_cache.put(request.image_key, classes)
        ticket.publish(lambda: setattr(self, "attr_classes", classes))
        results: list[Attribution] = []
        total = len(request.methods)
        last = [0.0]

        def progress(done: int, steps: int, index: int) -> None:
            ticket.check()  # a newer request or Stop: leave between batches
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                fraction = (index + done / max(steps, 1)) / total
                ticket.publish(lambda: setattr(self, "attr_progress", fraction))

        try:
            for index, method in enumerate(request.methods):
                key = request.key(method)
                result = self._attr_cache.get(key)
                if result is None:
                    result = attribution(
                        self._adapter,
                        image,
                        method=method,
                        target=request.target,
                        layer=request.layer if method in CAM_METHODS else None,
                        progress=lambda d, s, i=index: progress(d, s, i),
                    )
                    self._attr_cache.put(key, result)
                results.append(result)
                ticket.check()
        except Cancelled:
            if ticket.current:  # Stop was pressed: say so, keep what is on screen

                def stopped() -> None:
                    self._attr_key = None
                    self.attr_running = False
                    self.attr_meta = {**self.attr_meta, "state": "stopped"}
                    self.status = "stopped"

                ticket.publish(stopped)
            raise
        ticket.publish(lambda: self._attr_set(request, results, classes, "done"))

    def _attr_set(
        self, request: AttrRequest, results: list[Attribution], classes: list, state: str
    ) -> None:
        picture, meta = overlay_strip(results, self.attr_alpha)
        first = results[0]
        self._attr_shown = (request, results)
        self.attr_classes = classes
        self.attr_picture = encode_png(picture, WIRE_COMPRESS_LEVEL)
        self.attr_meta = jsonable(
            {**meta, "state": state, "target": first.target, "label": first.label}
        )
        self.attr_running = False
        self.attr_progress = 1.0
        self.busy = False
        self.status = "idle"

    def _attr_clear(self, status: str) -> None:
        self._attr_shown = None
        self.attr_picture, self.attr_meta, self.attr_classes = b"", {}, []
        self.attr_running = False
        self.status = status

    def _attr_failed(self) -> None:
        self._attr_key = None  # the same settings try again
        self.attr_running = False
        self.attr_meta = {**self.attr_meta, "state": "error"}
        self.status = "error"

    def _picture(self) -> Any:
        if self.view != "attribution":
            return super()._picture()
        shown = self._attr_shown
        return None if shown is None else overlay_strip(shown[1], self.attr_alpha)[0][..., :3]


def overlay_strip(results: list[Attribution], alpha: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The overlays of ``results`` side by side (one picture for one result): ``(H, W, 4)``
    uint8 with transparent gaps, and its meta (tile geometry, and per tile the method, its
    name, layer and score)."""
    names = dict(_choices.ATTRIBUTION_METHODS)
    pictures = np.stack([r.render(alpha=alpha).pixels for r in results])
    n, height, width = pictures.shape[:3]
    canvas = tile_rgba(pictures, pad=TILE_PAD, ncols=n)
    tiles = [
        {"method": r.method, "name": names[r.method], "layer": r.layer, "score": r.score}
        for r in results
    ]
    layout = tile_layout(n, height, width, pad=TILE_PAD, ncols=n).to_dict()
    return canvas, jsonable({**layout, "tiles": tiles, "alpha": alpha})


def top_classes_of(adapter: Any, image: np.ndarray, k: int = TOP_CLASSES) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of ``image`` (softmax of the logits): ``{index, label,
    probability}``, best first; empty for a model whose output is not a class vector."""
    logits = adapter.gradients(image[None], (), None, backward=False).logits.reshape(-1)
    if logits.size < 2:
        return []
    values = logits.astype(np.float64)
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    labels = adapter.spec.labels
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        {
            "index": int(i),
            "label": str(labels[i]) if labels and i < len(labels) else f"class {int(i)}",
            "probability": float(probs[i]),
        }
        for i in order
    ]
