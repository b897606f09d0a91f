"""What a model's layers look like while it trains: snapshots taken between training steps.

A :class:`Recorder` is fed by the training loop — a torch optimizer's step post-hook
(:meth:`Recorder.watch`), a Keras callback (:meth:`Recorder.keras_callback`) or plain calls to
:meth:`Recorder.step` — and every ``every`` steps takes a :class:`Snapshot` of the chosen
layers: their kernels (copied) and one forward pass of a few probe images in inference mode,
through the adapter (``protect()``: eval mode, no gradients, everything restored). A forward
pass in inference mode updates no BatchNorm statistics and draws no random numbers, so the
training run is the same run with or without the recorder. Snapshots are plain numpy arrays;
drawing them is somebody else's business (the :class:`~cnn_widgets.TrainingMonitor` widget).
"""

from __future__ import annotations

import numbers
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import Adapter, LayerInfo, adapt
from .backends.base import LayerKey
from .images import load_image

__all__ = ["Recorder", "Snapshot", "default_probe"]

PROBE_SIZE = 4
"""Bundled sample images used as the default probe."""


@dataclass(frozen=True)
class Snapshot:
    """The monitored layers after one training step (all arrays are copies).

    Attributes
    ----------
    step:
        Training steps seen so far (1 after the first).
    filters:
        Layer name -> ``(out, in, kh, kw)`` kernels, for the monitored layers with filters.
    maps:
        Layer name -> the probe images' outputs, ``(N, C, H, W)`` or ``(N, C)``.
    mean:
        Layer name -> ``(C,)`` mean activation of each channel over the probe.
    dead:
        Layer name -> ``(C,)`` share of each channel's values that are <= 0 over the probe
        (1.0: the channel would be zero everywhere after a ReLU: dead on these images).
    numbers:
        The numbers logged with this step (``loss`` ...).
    """

    step: int
    filters: dict[str, np.ndarray] = field(repr=False)
    maps: dict[str, np.ndarray] = field(repr=False)
    mean: dict[str, np.ndarray] = field(repr=False)
    dead: dict[str, np.ndarray] = field(repr=False)
    numbers: dict[str, float] = field(default_factory=dict)


class Recorder:
    """Takes snapshots of a model's layers every ``every`` training steps.

    Parameters
    ----------
    model:
        A torch or Keras model (or an adapted one): the very model being trained.
    probe:
        Images whose feature maps are recorded (a list of anything ``images`` accepts, or an
        ``(N, H, W[, C])`` array); default: bundled sample images that fit the model.
    layers:
        Layers to record (names or indices); default: every 2-D convolution that ran.
    every:
        Steps between snapshots (the first snapshot is taken after step ``every``).
    history:
        Snapshots kept (the oldest are dropped).
    on_snapshot:
        Called on the training thread with each new snapshot (the widget hands it to its
        worker thread there: it must return quickly).

    Raises
    ------
    ValueError, TypeError
        For ``every`` or ``history`` below 1, an unknown layer, or a probe the model cannot
        take — at construction, never in the middle of training.
    """

    def __init__(
        self,
        model: Any,
        probe: Any = None,
        layers: Sequence[LayerKey] | None = None,
        *,
        every: int = 50,
        history: int = 200,
        on_snapshot: Callable[[Snapshot], Any] | None = None,
    ) -> None:
        self.adapter: Adapter = adapt(model)
        self.every = _positive("every", every)
        self.history: deque[Snapshot] = deque(maxlen=_positive("history", history))
        self.layers = self._choose_layers(layers)
        self.probe = self._read_probe(probe)
        self.steps = 0
        #: Every logged number as ``name -> [(step, value), ...]``, for every step.
        self.numbers: dict[str, list[tuple[int, float]]] = {}
        self._on_snapshot = on_snapshot
        self._lock = threading.Lock()
        # One snapshot now checks that the probe and the layers work with this model.
        self.take(0)

    # -- setup ---------------------------------------------------------------------------
    def _choose_layers(self, layers: Sequence[LayerKey] | None) -> list[LayerInfo]:
        if layers is None:
            chosen = [i for i in self.adapter.layers() if i.has_filters and i.ran]
            if not chosen:
                chosen = [i for i in self.adapter.layers() if i.is_spatial][:1]
            if not chosen:
                raise ValueError("this model has no conv layer (or feature maps) to monitor")
            return chosen
        if isinstance(layers, (str, int)):
            layers = [layers]
        infos = [self.adapter.layer(key) for key in layers]  # unknown names raise here
        for info in infos:
            if not info.ran:
                raise ValueError(
                    f"layer {info.name!r} did not run in the forward pass: nothing to monitor"
                )
        if not infos:
            raise ValueError("layers is empty: give at least one layer to monitor")
        return list({info.name: info for info in infos}.values())

    def _read_probe(self, probe: Any) -> np.ndarray:
        channels, spatial = self.adapter.spec.channels, self.adapter.spec.spatial
        images = default_probe(self.adapter) if probe is None else probe
        if isinstance(images, np.ndarray) and images.ndim in (3, 4) and images.shape[0] > 0:
            if images.ndim == 3 and channels != 1 and images.shape[-1] in (1, 3, 4):
                images = [images]  # one (H, W, C) image
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("probe is empty: give at least one image")
        arrays = [load_image(image, channels, spatial) for image in images]
        sizes = {a.shape for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"probe images of different sizes {sorted(sizes)} for a model without a fixed "
                "input size: give images of one size, or adapt(model, input_shape=...)"
            )
        return np.stack(arrays)

    # -- recording -----------------------------------------------------------------------
    def log(self, **values: Any) -> None:
        """Record numbers (``loss=...``) for the current step without counting a step."""
        for name, value in values.items():
            number = _number(value)
            if number is not None:
                self.numbers.setdefault(name, []).append((self.steps, number))

    def step(self, **values: Any) -> Snapshot | None:
        """One training step happened: log ``values`` and, every ``every`` steps, take a
        snapshot (returned, else None). Call it after the optimizer's step."""
        with self._lock:
            self.steps += 1
            self.log(**values)
            if self.steps % self.every:
                return None
            return self.take(self.steps)

    def take(self, step: int) -> Snapshot:
        """Snapshot the monitored layers now (kept in :attr:`history`)."""
        adapter = self.adapter
        names = [info.name for info in self.layers]
        filters = {i.name: adapter.filters(i.name) for i in self.layers if i.has_filters}
        maps = adapter.activations(self.probe, names)
        mean, dead = {}, {}
        for name, values in maps.items():
            per_channel = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
            mean[name] = per_channel.mean(axis=1).astype(np.float32)
            dead[name] = (per_channel <= 0).mean(axis=1).astype(np.float32)
        latest = {k: v[-1][1] for k, v in self.numbers.items() if v and v[-1][0] == step}
        snapshot = Snapshot(step, filters, maps, mean, dead, latest)
        self.history.append(snapshot)
        if self._on_snapshot is not None and step > 0:
            self._on_snapshot(snapshot)
        return snapshot

    # -- the three ways to feed it --------------------------------------------------------
    @contextmanager
    def watch(self, optimizer: Any) -> Iterator[Recorder]:
        """``with recorder.watch(optimizer): train()``: a step after every optimizer step.

        The hook is an optimizer step post-hook, removed when the block ends — normally, by
        an exception or by a ``KeyboardInterrupt``. Numbers (the loss) go in with
        :meth:`log` from the loop.
        """
        register = getattr(optimizer, "register_step_post_hook", None)
        if register is None:
            raise TypeError(
                "watch() takes a torch.optim.Optimizer (it needs register_step_post_hook), "
                f"got {type(optimizer).__name__}; call step() from your loop instead"
            )
        handle = register(lambda *_: self.step())
        try:
            yield self
        finally:
            handle.remove()

    def keras_callback(self) -> Any:
        """A ``keras.callbacks.Callback`` for ``model.fit(..., callbacks=[...])``: a step
        after every training batch, with the batch's logs (``loss`` ...) as numbers."""
        import keras

        recorder = self

        class TrainingMonitorCallback(keras.callbacks.Callback):
            def on_train_begin(self, logs: dict | None = None) -> None:
                if self.model is not recorder.adapter.model:
                    raise ValueError(
                        "this callback monitors another model than the one being trained: "
                        "build the monitor with the model you pass to fit()"
                    )
                per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
                if per_call > 1:
                    warnings.warn(
                        f"steps_per_execution={per_call}: Keras calls callbacks once per "
                        f"{per_call} batches, so the monitor sees (and counts) one batch in "
                        f"{per_call}",
                        stacklevel=2,
                    )

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                recorder.step(**(logs or {}))

        return TrainingMonitorCallback()


def default_probe(adapter: Adapter) -> list[np.ndarray]:
    """Bundled sample images that fit the model: digits for a gray model, photos else."""
    import importlib

    zoo = importlib.import_module("cnn_widgets.zoo")
    names = zoo.list_samples()
    digits = [n for n in names if n.startswith("digit")]
    photos = [n for n in names if not n.startswith("digit")]
    chosen = digits if adapter.spec.channels == 1 else photos
    return [zoo.sample_image(name) for name in chosen[:PROBE_SIZE]]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _number(value: Any) -> float | None:
    """A logged value as a float (torch and TensorFlow scalars too); None for anything that is
    not one number (a Keras log holding a list, say), which is left out."""
    if hasattr(value, "detach"):  # a torch tensor (may require grad)
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy"):  # a TensorFlow tensor
        value = value.numpy()
    array = np.asarray(value)
    if array.size != 1 or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(()))
