"""The training monitor: filters, probe feature maps and channel statistics of a model while
it trains (the "monitor" view of :class:`TrainingMonitor`).

The training loop feeds a :class:`~cnn_widgets.training.Recorder` (an optimizer hook, a Keras
callback or ``step()``), which takes snapshots on the training thread. This panel draws them
on its lane — at most ``max_fps`` frames a second, always the newest, the last one
eventually — and publishes each frame as one packed ``monitor_frame`` (every monitored
layer's pictures) with ``monitor_meta``. The browser keeps the frames it receives: its
timeline scrubs through them while the kernel is still busy training, when nothing the
browser asks could be answered. A view opened later asks for the frames it missed.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import traitlets
from PIL import Image

from ..backends import LayerInfo
from ..backends.base import LayerKey
from ..render import views
from ..render.pixels import readable_scale, upscale
from ..training import Recorder, Snapshot
from .frames import jsonable
from .lane import Ticket
from .selection import SelectionPanel

__all__ = ["MAPS_SHOWN", "TrainingMonitor"]

MAPS_SHOWN = 16
"""Channels of each probe image's feature maps in a frame."""
FILTERS_SHOWN = 64
"""Kernels of a layer in a frame."""


class TrainingMonitor(SelectionPanel):
    """Watch a network learn: its filters, the feature maps of a few probe images and the
    per-channel statistics over time, live while it trains.

    Parameters
    ----------
    model:
        The torch or Keras model being trained (or an adapted one).
    probe:
        A few images whose feature maps are shown (default: bundled samples that fit).
    layers:
        The layers to show (names or indices; default: the conv layers, the first selected).
    every:
        Steps between snapshots.
    max_fps:
        Frames sent to the browser per second at most (the newest snapshot each time).
    history:
        Snapshots kept, in Python (:meth:`frames`) and in the browser (the timeline).

    Feed it one of three ways: ``model.fit(..., callbacks=[monitor.keras_callback()])``,
    ``with monitor.watch(optimizer): train()`` (torch), or ``monitor.step(loss=...)`` from
    any loop. A snapshot copies the kernels and runs the probe once in inference mode: the
    training run is unchanged (same weights, same random numbers, BatchNorm statistics
    untouched). Bad arguments raise here, never in the middle of training.
    """

    _VIEWS = ("monitor",)
    _options = ("channel", "page_size")

    monitor_frame = traitlets.Bytes(b"").tag(sync=True)
    """The newest frame: every monitored layer's pictures (PNG), packed one after another;
    ``monitor_meta["layers"]`` says where each one is (read-only)."""
    monitor_meta = traitlets.Dict().tag(sync=True)
    """The newest frame's facts: ``step``, ``steps`` (seen so far), ``layers`` (per layer:
    ``filters`` / ``maps`` as ``[offset, length, width, height]`` into ``monitor_frame`` or
    None, ``mean`` and ``dead`` per channel, ``maps_text``), ``numbers`` (per name, the
    ``[step, value]`` pairs logged since the previous frame) (read-only)."""
    monitor_history = traitlets.Int(200).tag(sync=True)
    """Frames the browser keeps for its timeline."""
    monitor_every = traitlets.Int(50).tag(sync=True)
    """Steps between snapshots (read-only)."""

    def __init__(
        self,
        model: Any,
        probe: Any = None,
        layers: Sequence[LayerKey] | None = None,
        *,
        every: int = 50,
        max_fps: float = 2.0,
        history: int = 200,
        **options: Any,
    ) -> None:
        if isinstance(max_fps, bool) or not isinstance(max_fps, (int, float)) or max_fps <= 0:
            raise ValueError(f"max_fps must be a number > 0, got {max_fps!r}")
        self._interval = 1.0 / float(max_fps)
        self._recorder_args = (probe, layers, every, history)
        self._setup(model, None, None, options)
        self.on_msg(self._on_browser_message)

    # -- construction --------------------------------------------------------------------
    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        probe, layers, every, history = self._recorder_args
        self.recorder = Recorder(
            adapter, probe, layers, every=every, history=history, on_snapshot=self._snapshot
        )
        """The :class:`~cnn_widgets.training.Recorder` behind the widget."""
        self._monitored = {info.name for info in self.recorder.layers}
        self._pending: Snapshot | None = None
        self._sending = False
        self._last_sent = float("-inf")
        self._numbers_sent = {}
        self._frames: deque[tuple[dict[str, Any], bytes]] = deque(maxlen=history)
        self._pending_lock = threading.Lock()
        self.monitor_lane = self._lane("monitor")
        """The lane that draws and sends frames (its counters are public)."""
        state.update(monitor_history=history, monitor_every=self.recorder.every)
        first = self._pack(self.recorder.history[-1])
        self._frames.append(first)
        state.update(monitor_meta=first[0], monitor_frame=first[1])

    def _accepts(self, view: str, info: LayerInfo) -> bool:
        return info.name in self._monitored

    def _default_layer(self, view: str) -> str:
        return self.recorder.layers[0].name

    # -- feeding (the training thread) ------------------------------------------------------
    def step(self, **numbers: Any) -> None:
        """One training step happened (call it after the optimizer's step), with numbers to
        plot (``loss=...``); every ``every`` steps a snapshot is taken and shown."""
        self.recorder.step(**numbers)

    def record(self, **numbers: Any) -> None:
        """Numbers for the current step (``loss=...``) without counting a step: for the loss
        in a loop that :meth:`watch` counts."""
        self.recorder.log(**numbers)

    def watch(self, optimizer: Any) -> Any:
        """``with monitor.watch(optimizer): train()`` — a step after each optimizer step
        (an optimizer step post-hook, removed when the block ends however it ends)."""
        return self.recorder.watch(optimizer)

    def keras_callback(self) -> Any:
        """A Keras callback: ``model.fit(..., callbacks=[monitor.keras_callback()])``."""
        return self.recorder.keras_callback()

    def _snapshot(self, snapshot: Snapshot) -> None:
        # On the training thread: hand the newest snapshot over and return at once.
        with self._pending_lock:
            self._pending = snapshot
            if self._sending:
                return  # the lane's job picks it up
            self._sending = True
        self.monitor_lane.submit(self._send_frames)

    # -- drawing and sending (the lane) ----------------------------------------------------
    def _send_frames(self, ticket: Ticket) -> None:
        """Send the newest snapshot at most once per interval, until none is waiting."""
        while True:
            wait = self._last_sent + self._interval - time.monotonic()
            if wait > 0 and ticket.stop.wait(wait):
                with self._pending_lock:
                    self._sending = False
                return  # closing
            with self._pending_lock:
                snapshot, self._pending = self._pending, None
                if snapshot is None:
                    self._sending = False
                    return
            meta, data = self._pack(snapshot)
            with self._pending_lock:
                self._frames.append((meta, data))
            self._last_sent = time.monotonic()
            ticket.publish(lambda m=meta, d=data: self._show(m, d))

    def _show(self, meta: dict[str, Any], data: bytes) -> None:
        self.monitor_meta, self.monitor_frame = meta, data
        self.status = f"step {meta['step']} · {len(self._frames)} frames"

    def _pack(self, snapshot: Snapshot) -> tuple[dict[str, Any], bytes]:
        """One frame: every monitored layer's filters and probe maps as PNGs, packed."""
        parts: list[bytes] = []
        offset = 0

        def add(picture: Any) -> list[int] | None:
            nonlocal offset
            if picture is None:
                return None
            data = picture.wire()[1]
            parts.append(data)
            offset += len(data)
            return [offset - len(data), len(data), picture.width, picture.height]

        layers = {}
        for info in self.recorder.layers:
            name = info.name
            weights = snapshot.filters.get(name)
            filters = None
            if weights is not None:
                shown = range(min(FILTERS_SHOWN, weights.shape[0]))
                filters = views.filter_grid(weights, channels=shown, colormap="gray")
            maps, text = _probe_maps(snapshot.maps[name])
            layers[name] = {
                "filters": add(filters),
                "maps": add(maps),
                "maps_text": text,
                "mean": snapshot.mean[name].tolist(),
                "dead": snapshot.dead[name].tolist(),
            }
        meta = {
            "step": snapshot.step,
            "steps": self.recorder.steps,
            "layers": layers,
            "numbers": self._new_numbers(),
        }
        return jsonable(meta), b"".join(parts)

    def _new_numbers(self) -> dict[str, list[list[float]]]:
        """The numbers logged since the previous frame."""
        fresh = {}
        for name, series in list(self.recorder.numbers.items()):
            start = self._numbers_sent.get(name, 0)
            if len(series) > start:
                fresh[name] = [[step, value] for step, value in series[start:]]
                self._numbers_sent[name] = len(series)
        return fresh

    def _on_browser_message(self, widget: Any, content: Any, buffers: Any) -> None:
        # A view opened after frames went out asks for the ones it missed.
        if isinstance(content, dict) and content.get("type") == "history":
            with self._pending_lock:
                frames = list(self._frames)
            for meta, data in frames:
                self.send({"type": "frame", "meta": meta}, [data])

    # -- the history in Python ---------------------------------------------------------------
    def frames(self, layer: LayerKey | None = None) -> dict[str, np.ndarray]:
        """The recorded history of one layer as arrays, oldest first.

        Returns
        -------
        dict
            ``steps`` ``(T,)``, ``maps`` ``(T, N, ...)``, ``mean`` and ``dead`` ``(T, C)``,
            and ``filters`` ``(T, out, in, kh, kw)`` for a layer with filters. The first
            entry (step 0) is the model before training.
        """
        name = self._monitored_name(layer)
        history = list(self.recorder.history)
        result = {
            "steps": np.array([s.step for s in history]),
            "maps": np.stack([s.maps[name] for s in history]),
            "mean": np.stack([s.mean[name] for s in history]),
            "dead": np.stack([s.dead[name] for s in history]),
        }
        if name in history[0].filters:
            result["filters"] = np.stack([s.filters[name] for s in history])
        return result

    def save_gif(self, path: str | Path, layer: LayerKey | None = None, *, fps: float = 4) -> Path:
        """Write the evolution of a layer's filters as an animated GIF (one frame per
        snapshot, one scale for all frames so that growth is visible, enlarged with sharp
        pixels to a readable size)."""
        history = self.frames(layer)
        if "filters" not in history:
            raise ValueError(f"layer {self._monitored_name(layer)!r} has no filters to animate")
        weights = history["filters"]
        shown = range(min(FILTERS_SHOWN, weights.shape[1]))
        scale = float(np.abs(weights).max()) or 1.0
        pictures = [
            views.filter_grid(0.5 + w / (2 * scale), channels=shown, normalization="none")
            for w in weights
        ]
        factor = readable_scale(pictures[0].height, pictures[0].width)
        frames = [Image.fromarray(upscale(p.pixels, factor)) for p in pictures]
        target = Path(path)
        buffer = io.BytesIO()
        frames[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=int(1000 / fps),
            loop=0,
        )
        target.write_bytes(buffer.getvalue())
        return target

    def _monitored_name(self, layer: LayerKey | None) -> str:
        if layer is None:
            return self.layer
        name = self._adapter.layer(layer).name
        if name not in self._monitored:
            raise ValueError(
                f"layer {name!r} is not monitored; monitored: "
                + ", ".join(repr(n) for n in sorted(self._monitored))
            )
        return name


def _probe_maps(maps: np.ndarray) -> tuple[Any, str]:
    """The probe images' feature maps as one grid (a row per image, the first channels in
    columns), or None for a layer that outputs vectors."""
    if maps.ndim != 4:
        return None, ""
    count, channels = maps.shape[:2]
    shown = min(channels, MAPS_SHOWN)
    stack = maps[:, :shown].reshape(count * shown, *maps.shape[2:])
    grid = views.activation_grid(stack, ncols=shown)
    return grid, f"{shown} of {channels} channels × {count} probe images"
