"""From a widget's state and a layer's data to the encoded pictures it publishes.

Nothing here touches traits or threads: :func:`render` is a pure function of a
:class:`Request` (the settings, read from the traits) and the layer's data (weights or feature
maps), so the widget can call it inline or on its worker thread alike.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.responses import FilterResponses
from ..api import to_probabilities
from ..choices import KERNEL_MODE
from ..render import views
from ..render.encode import encode_png
from ..render.pixels import to_uint8
from ..render.views import Rendered
from .runner import Cancelled

__all__ = [
    "KERNEL_MODE",
    "RENDERERS",
    "Frame",
    "Request",
    "image_key",
    "image_png",
    "jsonable",
    "render",
]




@dataclass(frozen=True)
class Request:
    """Everything one picture depends on, read from the traits on the calling thread."""

    view: str
    layer: str
    channel: int
    page: int
    page_size: int
    normalization: str
    colormap: str
    input_channel: str
    activation_mode: str
    vector_mode: str
    top_k: int
    image_key: str
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: Facts about the layer a view may need: is it the model's output, its class labels.
    is_output: bool = False
    is_vector: bool = False
    labels: Sequence[str] | None = field(default=None, compare=False, repr=False)

    @property
    def renderer(self) -> str:
        """Key of :data:`RENDERERS`: the view, or ``"responses"`` for kernel x image (a vector
        layer has no kernels to show: it keeps its vector view, as with "sum" and "mean")."""
        kernel_mode = self.activation_mode == KERNEL_MODE
        if self.view == "activations" and kernel_mode and not self.is_vector:
            return "responses"
        return self.view

    @property
    def data_key(self) -> tuple[str | int, ...] | None:
        """Cache key of the data the picture is drawn from; None when there is none."""
        if self.view == "filters":
            return ("filters", self.layer)
        if self.renderer == "responses" and self.image_key:
            # One filter's responses: every channel is data of its own.
            return ("responses", self.image_key, self.layer, self.channel)
        if self.view == "activations" and self.image_key:
            return ("activations", self.image_key, self.layer)
        return None

    @property
    def first(self) -> int:
        """The first channel on the page."""
        return self.page * self.page_size


@dataclass
class Frame:
    """A rendered state, encoded and ready to publish (all dicts JSON-safe)."""

    request: Request
    grid: Rendered | None
    grid_wire: tuple[str, bytes]
    layout: dict[str, Any]
    meta: dict[str, Any]
    detail_wire: tuple[str, bytes]
    detail_stats: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)


def render(
    request: Request,
    data: Any,
    *,
    previous: Frame | None = None,
    detail_only: bool = False,
    stop: threading.Event | None = None,
) -> Frame:
    """Draw the picture of ``request`` from ``data``.

    Parameters
    ----------
    request:
        The settings.
    data:
        Filters ``(out, in, kh, kw)``, one image's layer output ``(C, H, W)`` / ``(N,)``, or
        the :class:`~cnn_widgets.analysis.FilterResponses` of the kernel x image mode.
    previous:
        The frame on screen; with ``detail_only`` its grid is kept and only the selected
        channel is drawn anew.
    stop:
        Checked between the expensive steps; when set, :class:`Cancelled` is raised.
    """
    started = time.perf_counter()
    frame = RENDERERS[request.renderer](request, data, previous if detail_only else None, stop)
    frame.meta["seconds"] = round(time.perf_counter() - started, 4)
    return frame


# --------------------------------------------------------------------------- views


def _render_filters(
    request: Request, weights: np.ndarray, keep: Frame | None, stop: threading.Event | None
) -> Frame:
    options = {
        "input_channel": int(request.input_channel)
        if request.input_channel.isdigit()
        else request.input_channel,
        "normalization": request.normalization,
        "colormap": request.colormap,
    }
    total = int(weights.shape[0])
    channel = min(request.channel, total - 1)
    grid, extra = None, {}
    if keep is None:
        grid = views.filter_grid(weights, channels=_page_range(request, total), **options)
        extra = {**_paging_meta(request, grid, total), "in_channels": int(weights.shape[1])}
        _check(stop)
    detail = views.filter_single(weights, channel, **options)
    return _frame(request, keep, grid, detail, stats(weights[channel]), extra)


def _render_activations(
    request: Request, acts: np.ndarray, keep: Frame | None, stop: threading.Event | None
) -> Frame:
    total = int(acts.shape[0])
    channel = min(request.channel, total - 1)
    if request.is_vector and acts.ndim == 3:
        acts = acts[:, 0, 0]  # (C, 1, 1): a global pooling or a conv classifier's scores
    if acts.ndim == 1:
        return _render_vector(request, acts, channel)
    if acts.ndim != 3:
        raise ValueError(
            f"layer {request.layer!r} outputs shape {acts.shape}; feature-map views need "
            "(C, H, W) or a vector"
        )
    options = {"normalization": request.normalization, "colormap": request.colormap}
    grid, extra = None, {}
    if keep is None:
        if request.activation_mode == "grid":
            grid = views.activation_grid(acts, channels=_page_range(request, total), **options)
            extra = _paging_meta(request, grid, total)
        else:
            grid = views.activation_sum(acts, reduce=request.activation_mode, **options)
            extra = {"text": f"{request.activation_mode} of {total} channels"}
        _check(stop)
    detail = views.activation_single(acts, channel, **options)
    return _frame(request, keep, grid, detail, stats(acts[channel]), extra)


def _render_responses(
    request: Request, responses: FilterResponses, keep: Frame | None, stop: threading.Event | None
) -> Frame:
    """Kernel x image: one tile per input channel (that map convolved with its kernel slice),
    and their sum, the filter's output before the bias, as the detail.

    The grid has no tile layout: its tiles are input channels, and a click on one must not
    select an output channel. Layers with more inputs than ``page_size`` show the first ones.
    """
    options = {"normalization": request.normalization, "colormap": request.colormap}
    inputs = len(responses.input_channels)
    shown = range(min(inputs, request.page_size))
    grid = views.activation_grid(responses.per_input, channels=shown, **options)
    _check(stop)
    detail = views.activation_single(responses.total[None], 0, **options)
    count = "" if len(shown) == inputs else f"{len(shown)} of "
    plural = "s" if inputs != 1 else ""
    extra = {
        "mode": KERNEL_MODE,
        "channel": responses.channel,
        "input_channels": list(responses.input_channels[: len(shown)]),
        "inputs": inputs,
        "bias": responses.bias,
        "text": f"filter {responses.channel} × {count}{inputs} input channel{plural}",
    }
    detail_stats = {**stats(responses.total), "sum_of": inputs, "bias": responses.bias}
    frame = _frame(request, None, grid, detail, detail_stats, extra)
    frame.layout = {}
    return frame


def _render_vector(request: Request, vector: np.ndarray, channel: int) -> Frame:
    mode = request.vector_mode
    if mode == "auto":
        mode = "probabilities" if request.is_output and vector.shape[0] > 1 else "dense"
    labels = request.labels
    unit: dict[str, Any] = {**stats(vector), "index": channel, "value": float(vector[channel])}
    if labels is not None and channel < len(labels):
        unit["label"] = str(labels[channel])
    predictions: list[dict[str, Any]] = []
    if mode == "probabilities":
        probabilities = to_probabilities(vector)
        grid = views.topk_bars(probabilities, labels, k=request.top_k)
        predictions = [
            {"index": i, "label": label, "value": value}
            for i, label, value in grid.meta.get("topk", [])
        ]
        text = f"top {len(predictions)} of {vector.shape[0]} classes"
        unit["probability"] = float(probabilities[channel])
    else:
        grid = views.dense_plot(vector)
        text = f"{vector.shape[0]} values"
    extra = {"text": text, "mode": mode}
    return _frame(request, None, grid, None, unit, extra, predictions)


RENDERERS: dict[str, Callable[[Request, Any, Frame | None, threading.Event | None], Frame]] = {
    "filters": _render_filters,
    "activations": _render_activations,
    "responses": _render_responses,
}
"""``Request.renderer`` -> renderer. A new view registers its renderer here (and in
``widget.js``)."""


# --------------------------------------------------------------------------- helpers


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled


def _page_range(request: Request, total: int) -> range:
    first = min(request.first, max(total - 1, 0))
    return range(first, min(total, first + request.page_size))


def _paging_meta(request: Request, grid: Rendered, total: int) -> dict[str, Any]:
    shown = int(grid.meta.get("shown", 1))
    return {
        "first": request.first,
        "page": request.page,
        "pages": max(1, math.ceil(total / request.page_size)),
        "text": f"{shown} of {total} shown",
    }


def _frame(
    request: Request,
    keep: Frame | None,
    grid: Rendered | None,
    detail: Rendered | None,
    detail_stats: dict[str, Any],
    extra: dict[str, Any],
    predictions: list[dict[str, Any]] | None = None,
) -> Frame:
    detail_wire = detail.wire() if detail is not None else ("png", b"")
    # The channel the detail shows: the browser tells a late detail from the current one.
    detail_stats = {**detail_stats, "channel": request.channel}
    if grid is None:  # detail only: the grid on screen stays
        assert keep is not None
        return Frame(
            request=request,
            grid=keep.grid,
            grid_wire=keep.grid_wire,
            layout=keep.layout,
            meta=dict(keep.meta),
            detail_wire=detail_wire,
            detail_stats=jsonable(detail_stats),
            predictions=keep.predictions,
        )
    layout = grid.layout.to_dict() if grid.layout is not None else {}
    if layout:
        layout["offset"] = request.first
    meta = {
        **grid.meta,
        **extra,
        "view": request.view,
        "layer": request.layer,
        "width": grid.width,
        "height": grid.height,
    }
    return Frame(
        request=request,
        grid=grid,
        grid_wire=grid.wire(),
        layout=jsonable(layout),
        meta=jsonable(meta),
        detail_wire=detail_wire,
        detail_stats=jsonable(detail_stats),
        predictions=jsonable(predictions or []),
    )


def jsonable(value: Any) -> Any:
    """Plain JSON types only: tuples become lists, numpy scalars Python numbers, and NaN/Inf
    None (the browser's ``JSON.parse`` rejects them)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def stats(array: np.ndarray) -> dict[str, Any]:
    """``shape``, ``min``, ``max``, ``mean`` (finite values only) and the ``nonfinite`` count."""
    values = np.asarray(array, dtype=np.float64)
    finite = values[np.isfinite(values)]
    result: dict[str, Any] = {
        "shape": list(values.shape),
        "nonfinite": int(values.size - finite.size),
        "min": None,
        "max": None,
        "mean": None,
    }
    if finite.size:
        result.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
    return result


def image_png(chw: np.ndarray) -> bytes:
    """The model's view of an input as PNG: gray for one channel, RGB for three, else the
    channel mean (values outside [0, 1] are clipped for display only)."""
    return encode_png(to_uint8(chw, channel_axis=0), 6)


def image_key(chw: np.ndarray) -> str:
    """A digest of an input image: the cache key of its feature maps."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(str(chw.shape).encode())
    digest.update(np.ascontiguousarray(chw).tobytes())
    return digest.hexdigest()
