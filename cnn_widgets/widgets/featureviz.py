"""The feature-visualization panel: gradient ascent on the page of channels on screen, its
frames streamed while it runs (the "featureviz" view).

A run is a request on the panel's lane: "Run" (``fv_run``, :meth:`run_feature_viz`) takes a
ticket and starts :func:`cnn_widgets.feature_viz` on the lane's thread; each step's images
are published (JPEG, at most ten a second) while the ticket is current, the last one as PNG.
A newer run, "Stop", or another panel that needs the model retires the ticket. Finished runs
are cached per layer, channels and settings, so coming back to them is instant.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets

from .. import choices
from .. import featureviz as _featureviz
from ..render import save_animation
from .frames import jsonable
from .fvframes import (
    FvRequest,
    Throttle,
    effective_steps,
    fv_file_picture,
    fv_picture,
    fv_single_png,
)
from .lane import LRU, Cancelled, Ticket
from .selection import SelectionPanel

__all__ = ["FRAME_INTERVAL", "FV_PAGE_SIZE", "FeatureVizPanel"]

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.1
"""Seconds between streamed frames (at most ~10 per second; the final frame always goes)."""
FV_PAGE_SIZE = 16
"""Channels per page (and per run) of :class:`FeatureVisualizer`: optimizing is slow."""
CACHE_SIZE = 8
"""Finished runs kept per widget."""
GIF_FRAMES = 32
"""Frames kept of a run for "Save GIF" (evenly spaced steps, and the last); as 8-bit pixels,
a 16-channel page of 128 px takes 0.8 MB a frame."""
_SETTINGS = ("fv_steps", "fv_size", "fv_recipe", "fv_objective")


class FeatureVizPanel(SelectionPanel):
    """Runs feature visualization for the current layer and page (see the module docstring)."""

    _writable = frozenset({*_SETTINGS, "fv_run", "fv_stop", "fv_save_gif"})

    fv_steps = traitlets.Int(256).tag(sync=True)
    """Optimization steps of a run (``CNN_WIDGETS_MAX_STEPS`` caps them)."""
    fv_size = traitlets.Int(0).tag(sync=True)
    """Image side in pixels; 0 lets :func:`~cnn_widgets.feature_viz` choose (128, or the
    model's own input size when smaller)."""
    fv_recipe = traitlets.Unicode("lucid").tag(sync=True)
    """``"lucid"`` (interpretable pictures) or ``"naive"`` (plain pixel ascent)."""
    fv_objective = traitlets.Unicode("auto").tag(sync=True)
    """``"auto"`` (``"channel"`` minus a soft maximum of the layer's other channels, so that
    each picture makes its channel the layer's most active one; near a linear first layer,
    where a channel's mean is maximized by a flat saturated image, each unit's kernel; see
    :func:`~cnn_widgets.feature_viz`), ``"channel"``, ``"neuron"`` (the centre position),
    ``"layer"`` (DeepDream, one image), ``"class"`` (the logit of each unit of the layer) or
    ``"diversity"`` (as ``"channel"`` here, where a page shows each channel once)."""
    fv_run = traitlets.Int(0).tag(sync=True)
    """The browser's "Run" button: each increment starts a run for the current page of
    channels (a running one is stopped first). Python code calls :meth:`run_feature_viz`."""
    fv_stop = traitlets.Int(0).tag(sync=True)
    """The browser's "Stop" button: each increment stops the run; its picture stays."""
    fv_running = traitlets.Bool(False).tag(sync=True)
    """True while a feature-visualization run streams frames (read-only)."""
    fv_progress = traitlets.Float(0.0).tag(sync=True)
    """Share of the run's steps done, 0 to 1 (read-only)."""
    fv_step = traitlets.Int(0).tag(sync=True)
    """Steps done by the run on screen (read-only)."""
    fv_image = traitlets.Bytes(b"").tag(sync=True)
    """The images of the run (one tile per channel), JPEG while running, PNG when done."""
    fv_format = traitlets.Unicode("png").tag(sync=True)
    """Encoding of ``fv_image``."""
    fv_layout = traitlets.Dict().tag(sync=True)
    """Tile geometry of ``fv_image`` (``TileLayout.to_dict()``, ``channels`` per tile)."""
    fv_meta = traitlets.Dict().tag(sync=True)
    """Facts about ``fv_image``: ``layer``, ``objective``, ``recipe``, ``channels``,
    ``step``, ``steps``, ``size`` (pixels), ``state`` (``"running"``, ``"done"``,
    ``"stopped"``, ``"cached"``) and ``values`` (the objective per image)."""
    fv_detail = traitlets.Bytes(b"").tag(sync=True)
    """The selected channel's image alone (PNG), when the run on screen includes it."""
    fv_save_gif = traitlets.Int(0).tag(sync=True)
    """The browser's "Save GIF" button: each increment puts the animation of the run on
    screen into ``fv_gif``, which the browser then downloads."""
    fv_gif = traitlets.Bytes(b"").tag(sync=True)
    """The animated GIF of the run on screen, after a "Save GIF" (read-only)."""
    fv_gif_ready = traitlets.Bool(False).tag(sync=True)
    """True when the run on screen has frames for "Save GIF" (read-only)."""

    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._fv_cache = LRU(CACHE_SIZE)
        # The images on screen with the request that made them; the request being optimized.
        self._fv_shown: tuple[FvRequest, np.ndarray] | None = None
        self._fv_active: FvRequest | None = None
        self._fv_frames = LRU(CACHE_SIZE)  # id of a run's final images -> its frames
        self._fv_started = False
        self.featureviz_lane = self._lane("featureviz", on_fail=self._fv_failed)
        """The lane that runs optimizations (its counters are public)."""

    # -- validation (steps, recipe, objective: SelectionPanel's choice and range rules) -----
    @traitlets.validate("fv_size")
    def _validate_fv_size(self, proposal: Any) -> int:
        low, high = choices.LIMITS["fv_size"]
        value = proposal["value"]
        if value != 0 and not low <= value <= high:
            raise traitlets.TraitError(
                f"fv_size must be 0 (automatic) or in {low}..{high} pixels; got {value}"
            )
        return value

    # -- public ------------------------------------------------------------------------------
    def run_feature_viz(self, channels: Sequence[int] | None = None) -> None:
        """Start synthesizing the images that excite the current layer, in the background.

        Parameters
        ----------
        channels:
            Channels (units, classes) to optimize, one image each; default: the page of the
            layer on screen. Not used by ``fv_objective="layer"`` (one image).

        Notes
        -----
        The settings come from ``fv_steps``, ``fv_size``, ``fv_recipe`` and ``fv_objective``.
        A run that is still going is stopped first. Frames stream into ``fv_image`` (JPEG, at
        most about ten a second) and the last one is a PNG; finished runs are cached per layer,
        channels and settings. Problems land in ``error``. :meth:`wait` blocks until the run
        ends, :meth:`stop_feature_viz` ends it early.
        """
        self._new_action()
        try:
            request = self._fv_request(channels)
        except Exception as exc:
            self._report(exc)
            return
        total = effective_steps(request.steps)
        lane = self.featureviz_lane
        ticket = lane.request()
        with self._lock:
            self._fv_active = request
            self._fv_started = False
            with self.hold_sync():
                self.fv_running = True
                self.fv_progress = 0.0
                self.fv_step = 0
                self.status = f"busy: feature visualization, {request.describe()}"
        lane.run(ticket, lambda t: self._optimize(request, total, t))

    def stop_feature_viz(self) -> None:
        """Stop the running feature visualization; its last images stay, status "stopped"."""
        with self._lock:
            if self._fv_active is None:
                return
            generation, started = self.featureviz_lane.generation, self._fv_started
        self.featureviz_lane.cancel()
        if started:
            return  # the run sees its stop event and publishes its last picture itself
        with self._lock:  # it never started: nobody else will say that it ended
            if generation == self.featureviz_lane.generation and not self._fv_started:
                self._fv_active = None
                with self.hold_sync():
                    self.fv_running = False
                    self.status = "stopped"

    @property
    def feature_viz_images(self) -> np.ndarray | None:
        """The ``(n, H, W, C)`` images on screen in the feature-visualization view (the last
        frame of a run that was stopped), or None."""
        shown = self._fv_shown
        return None if shown is None else shown[1]

    # -- requests ------------------------------------------------------------------------------
    def _fv_request(self, channels: Sequence[int] | None = None) -> FvRequest:
        info = self._infos[self.layer]
        objective = self.fv_objective
        if info.output_shape is None:
            raise ValueError(
                f"layer {info.name!r} did not run in the model's forward pass: nothing to "
                "visualize there"
            )
        if objective == "neuron" and not info.is_spatial:
            raise ValueError(
                f"objective 'neuron' needs a layer with a spatial output (C, H, W), but layer "
                f"{info.name!r} outputs shape {tuple(info.output_shape)}; use 'channel' for a "
                "unit of a dense layer"
            )
        if objective == "layer":
            chosen: tuple[int, ...] = ()
        elif channels is None:
            total = self._channel_total(info)
            first = min(self.page * self.page_size, total - 1)
            chosen = tuple(range(first, min(total, first + self.page_size)))
        else:
            chosen = tuple(int(c) for c in channels)  # feature_viz checks the range
            if not chosen:
                raise ValueError("channels is empty: ask for at least one channel")
        return FvRequest(
            layer=self.layer,
            channels=chosen,
            objective=objective,
            steps=self.fv_steps,
            size=self.fv_size,
            recipe=self.fv_recipe,
        )

    @staticmethod
    def _selection_of(request: FvRequest) -> tuple[Any, ...]:
        """What a picture shows, settings aside: pictures of one selection may stand in for
        each other until the next run."""
        return (request.layer, request.channels, request.objective)

    # -- the run (on the lane's thread) -----------------------------------------------------
    def _optimize(self, request: FvRequest, total: int, ticket: Ticket) -> None:
        with self._lock:
            if not ticket.current:
                raise Cancelled
            self._fv_started = True
        throttle = Throttle(FRAME_INTERVAL)
        last: dict[str, Any] = {"step": 0, "values": None}
        frames: list[np.ndarray] = []
        frame_every = max(1, -(-total // GIF_FRAMES))

        def on_step(step: int, images: np.ndarray, values: np.ndarray) -> None:
            last["step"], last["values"] = step, values
            if step >= frame_every * (len(frames) + 1) and step < total:
                frames.append(_pixels(images))
            # The final frame goes out below as a PNG; in between, at most one per interval.
            if step < total and throttle.ready():
                self._fv_publish(ticket, request, images, values, step, total, "running")

        # feature_viz holds the model lock (adapter.protect) for the whole run.
        images = _featureviz.feature_viz(
            self._adapter,
            request.layer,
            None if request.objective == "layer" else list(request.channels),
            objective=request.objective,
            steps=request.steps,
            size=request.size or None,
            recipe=request.recipe,
            callback=on_step,
            callback_every=max(1, total // 200),
            stop=ticket.stop,
        )
        complete = last["step"] >= total
        state = "done" if complete else "stopped"
        self._fv_frames.put(id(images), (images, [*frames, _pixels(images)]))
        meta = self._fv_publish(ticket, request, images, last["values"], last["step"], total, state)
        if complete and meta is not None:
            self._fv_cache.put(request, (images, {**meta, "state": "cached"}))

    def _fv_publish(
        self,
        ticket: Ticket,
        request: FvRequest,
        images: np.ndarray,
        values: np.ndarray | None,
        step: int,
        total: int,
        state: str,
    ) -> dict[str, Any] | None:
        """Send a frame unless the run was retired; its meta, or None when dropped."""
        running = state == "running"
        # Encode before taking the lock: the kernel thread never waits for an encoder.
        kind, data, layout = fv_picture(images, request.channels, fmt="jpeg" if running else "png")
        meta = jsonable(
            {
                "layer": request.layer,
                "objective": request.objective,
                "recipe": request.recipe,
                "channels": list(request.channels),
                "step": step,
                "steps": total,
                "size": list(images.shape[1:3]),
                "state": state,
                "values": None if values is None else [float(v) for v in values],
            }
        )
        # The detail streams too: a figure that appears only at the end would shift the grid.
        detail = self._fv_detail_png(request, images)

        def apply() -> None:
            self._fv_shown = (request, images)
            self.fv_gif_ready = not running and self._fv_frames.get(id(images)) is not None
            self.fv_format, self.fv_image = kind, data
            self.fv_layout, self.fv_meta = layout, meta
            self.fv_step = step
            self.fv_progress = min(1.0, step / max(total, 1))
            self.fv_detail = detail
            if running:
                self.status = f"busy: feature visualization, step {step} of {total}"
            else:
                self._fv_active = None
                self.fv_running = False
                self.status = "stopped" if state == "stopped" else "idle"

        return meta if ticket.publish(apply) else None

    def _fv_failed(self) -> None:
        self._fv_active = None
        self.fv_running = False
        self.status = "error"

    def _model_needed(self) -> None:
        # Another panel needs the model in the background: a running optimization ends (its
        # frames are no longer wanted; the lock would make the other work wait for all of it).
        super()._model_needed()
        with self._lock:
            if self._fv_active is None:
                return
            self._fv_active = None
            self.fv_running = False
        self.featureviz_lane.retire(cancel=True)

    # -- showing -------------------------------------------------------------------------------
    def _fv_detail_png(self, request: FvRequest, images: np.ndarray) -> bytes:
        if self.channel in request.channels:
            return fv_single_png(images, request.channels.index(self.channel))
        return b""

    def _update(self, *, detail_only: bool, inline: bool) -> None:
        super()._update(detail_only=detail_only, inline=inline)
        if self.view == "featureviz":
            self._fv_show()

    def _fv_show(self) -> None:
        """Show what is known for the layer, page and settings on screen: a finished run from
        the cache, the picture already there when it shows the same channels, or nothing."""
        try:
            request = self._fv_request()
        except Exception as exc:
            self._report(exc)
            return
        selection = self._selection_of(request)
        active = self._fv_active
        if active is not None:
            if self._selection_of(active) == selection:
                return  # its run streams the picture; settings apply to the next run
            self._model_needed()  # another selection: the run's frames are not wanted
        cached = self._fv_cache.get(request)
        with self._lock:
            shown = self._fv_shown
            with self.hold_sync():
                if cached is not None:
                    images, meta = cached
                    if shown is None or shown[1] is not images:
                        self.fv_format, self.fv_image, self.fv_layout = fv_picture(
                            images, request.channels
                        )
                        self.fv_meta = meta
                        self.fv_step = int(meta.get("step", 0))
                        self.fv_progress = 1.0
                        self._fv_shown = (request, images)
                        self.fv_gif_ready = self._fv_frames.get(id(images)) is not None
                        self.status = "idle"
                    self.fv_detail = self._fv_detail_png(request, images)
                elif shown is not None and self._selection_of(shown[0]) == selection:
                    self.fv_detail = self._fv_detail_png(shown[0], shown[1])
                else:
                    self._fv_shown = None
                    self.fv_gif_ready = False
                    self.fv_image, self.fv_layout, self.fv_meta = b"", {}, {}
                    self.fv_detail, self.fv_step, self.fv_progress = b"", 0, 0.0
                    if not self.fv_running:
                        self.status = "idle"
                self.busy = False

    @traitlets.observe(*_SETTINGS)
    def _on_fv_setting(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        self._new_action()
        if self.view == "featureviz":
            self._fv_show()

    @traitlets.observe("fv_run", "fv_stop", "fv_save_gif")
    def _on_fv_button(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        if change["name"] == "fv_run":
            self.run_feature_viz()
        elif change["name"] == "fv_stop":
            self.stop_feature_viz()
        else:
            self._fv_send_gif()

    # -- animations ------------------------------------------------------------------------
    def feature_viz_frames(self) -> np.ndarray | None:
        """``(T, n, H, W, C)`` float32 frames of the finished or stopped run on screen (about
        :data:`GIF_FRAMES` evenly spaced steps, the last its images; 8-bit levels), or None."""
        shown = self._fv_shown
        kept = None if shown is None else self._fv_frames.get(id(shown[1]))
        if kept is None or kept[0] is not shown[1]:
            return None
        return np.stack(kept[1]).astype(np.float32) / 255.0

    def save_feature_viz_gif(self, path: Any) -> None:
        """Write the run on screen as an animated GIF (see :func:`cnn_widgets.save_animation`).

        Raises
        ------
        ValueError
            No finished or stopped run is on screen (while one runs, its frames are not
            complete).
        """
        frames = None if self.fv_running else self.feature_viz_frames()
        if frames is None:
            raise ValueError(
                "no feature-visualization run on screen to animate: run one (and let it "
                "finish or stop it) first"
            )
        save_animation(frames, path)

    def _fv_send_gif(self) -> None:
        buffer = io.BytesIO()
        try:
            self.save_feature_viz_gif(buffer)
        except Exception as exc:
            self._report(exc)
            return
        self.fv_gif = buffer.getvalue()

    def _picture(self) -> Any:
        if self.view != "featureviz":
            return super()._picture()
        shown = self._fv_shown
        return fv_file_picture(shown[1]) if shown is not None else None


def _pixels(images: np.ndarray) -> np.ndarray:
    """A frame kept as 8-bit pixels (a quarter of float32's memory; a GIF holds no more)."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
