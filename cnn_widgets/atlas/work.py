"""Rendering one unit, and how a unit's model reaches a worker process.

A worker never receives a pickled model (pickles can carry code): it receives a
:class:`ModelSource` — a bundled model's name or a model file, plus the input spec as plain
data — and loads it once per process (:func:`load_source` caches it). The fingerprint the
driver computed travels with it, so a worker that loaded a different model (a file changed
on disk mid-run) refuses to render instead of filling the atlas with another model's pictures.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import Normalization
from ..featureviz import feature_viz
from ..render.encode import encode_png
from ..render.pixels import to_uint8
from .plan import Unit, fingerprint

__all__ = [
    "CURVE_POINTS", "ModelSource", "UnitOutcome", "load_source", "remember", "render_unit",
]

CURVE_POINTS = 64
"""At most this many points of each channel's objective curve are kept in its record."""
PNG_LEVEL = 6
"""zlib level of the stored pictures (files to keep: small beats fast)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a worker finds the model: ``spec`` is what
    :func:`cnn_widgets.__main__.load_model` reads (``demo:<name>`` or a model file), with the
    zoo ``framework``, and the adapter's input spec as plain data. ``device`` (``"cuda"``,
    ``"cuda:1"``): the worker moves its own copy of a torch model there after loading it
    (a Keras model runs on the GPU TensorFlow sees); None leaves it where it loads."""

    spec: str
    fingerprint: str
    framework: str = "auto"
    input_shape: tuple[int | None, ...] | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...], float] | None = None
    device: str | None = None


@dataclass(frozen=True)
class UnitOutcome:
    """What rendering a unit gave: per channel a PNG, the activation reached (the objective at
    the last step) and the objective curve at ``curve_steps``; or ``error`` (the exception, as
    text) when the unit's computation failed."""

    unit: Unit
    pngs: tuple[bytes, ...] = ()
    activations: tuple[float, ...] = ()
    curves: tuple[tuple[float, ...], ...] = ()
    curve_steps: tuple[int, ...] = ()
    seconds: float = 0.0
    error: str | None = None


_CACHE: dict[ModelSource, Adapter] = {}
_CACHE_LOCK = threading.Lock()


def load_source(source: ModelSource) -> Adapter:
    """The model of ``source``, loaded once per process and checked against its fingerprint."""
    with _CACHE_LOCK:
        cached = _CACHE.get(source)
        if cached is not None:
            return cached
        from ..__main__ import load_model  # the CLI's loader: safe formats only

        model = load_model(source.spec, source.framework)
        pre = Normalization(*source.normalization) if source.normalization else None
        if source.input_shape is not None or pre is not None:
            model = adapt(model, input_shape=source.input_shape, preprocess=pre)
        adapter = model if isinstance(model, Adapter) else adapt(model)
        found = fingerprint(adapter)
        if found != source.fingerprint:
            raise ValueError(
                f"the model loaded from {source.spec!r} has fingerprint {found}, not "
                f"{source.fingerprint} as when the atlas run started: did the file change?"
            )
        if source.device is not None and adapter.framework == "torch":
            adapter.model.to(source.device)  # the worker's own copy, after the check
        _CACHE[source] = adapter
        return adapter


def remember(source: ModelSource, adapter: Adapter) -> None:
    """Cache ``adapter`` as the model of ``source`` in this process (the driver's own, for
    workers that are threads of it)."""
    with _CACHE_LOCK:
        _CACHE.setdefault(source, adapter)


def render_unit(model: ModelSource | Adapter, unit: Unit, options: dict[str, Any]) -> UnitOutcome:
    """Render one unit with ``feature_viz``; an exception inside it comes back as the
    outcome's ``error`` (so one bad unit never stops a run). ``KeyboardInterrupt`` and other
    non-``Exception`` signals still stop the caller."""
    start = time.perf_counter()
    try:
        adapter = model if isinstance(model, Adapter) else load_source(model)
        return _render(adapter, unit, options, start)
    except Exception as exc:  # recorded per unit; the run goes on
        return UnitOutcome(unit=unit, error=_error_text(exc), seconds=time.perf_counter() - start)


def _render(adapter: Adapter, unit: Unit, options: dict[str, Any], start: float) -> UnitOutcome:
    steps = int(options.get("steps", 256))
    every = max(1, -(-steps // CURVE_POINTS))
    at: list[int] = []
    values: list[np.ndarray] = []

    def record(step: int, images: np.ndarray | None, objective: np.ndarray) -> None:
        at.append(int(step))
        values.append(np.asarray(objective, np.float64).copy())

    record.wants_images = False  # type: ignore[attr-defined]  # the curve needs no pictures

    # feature_viz calls back every `every` steps and after the last one.
    images = feature_viz(
        adapter, unit.layer, list(unit.channels), callback=record, callback_every=every, **options
    )
    if not values:  # cannot happen with steps >= 1; say so rather than write a wrong record
        raise RuntimeError("feature_viz ran no step")
    pngs = tuple(encode_png(to_uint8(image, channel_axis=-1), PNG_LEVEL) for image in images)
    curves = np.stack(values, axis=1)  # (channels, points)
    return UnitOutcome(
        unit=unit,
        pngs=pngs,
        activations=tuple(float(v) for v in values[-1]),
        curves=tuple(tuple(float(v) for v in row) for row in curves),
        curve_steps=tuple(at),
        seconds=time.perf_counter() - start,
    )


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()
