"""The notebook widgets: :class:`FilterViewer`, :class:`ActivationViewer` and :class:`Explorer`.

All three are one widget class with different sets of views; the browser side is the same ES
module. Python owns the state (synced traits) and renders pictures with
:mod:`cnn_widgets.render.views`; the browser draws controls and shows the bytes.

How a change travels:

* a setting (layer, image, normalization, page, ...) changes, from Python or from the browser;
* the observer settles dependent state on the calling thread (the page follows the channel,
  the channel is clamped to the layer) and builds a :class:`~.frames.Request`;
* if the data it needs (a layer's weights or its feature maps for this image) is cached and
  the worker is idle, the picture is rendered at once; otherwise the request goes to the
  worker thread (:class:`~cnn_widgets.widgets.runner.Runner`), ``busy`` turns on, and a newer
  request supersedes it;
* the result is published in one message (``hold_sync``) unless a newer request was made
  meanwhile (a generation counter decides).

Moving ``channel`` within the page re-renders only the enlarged detail picture from the cache.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import traitlets
from ipywidgets.widgets.trait_types import bytes_serialization

from .. import featureviz as _featureviz
from ..analysis import filter_responses, health_report, top_images
from ..analysis.health import HealthReport
from ..analysis.top_images import ImageSet
from ..api import prepare_image
from ..backends import Adapter, LayerInfo, adapt
from ..images import ImageLike
from .analysis import (
    TOP_K,
    default_health_images,
    health_entries,
    health_summary,
    image_set,
    top_strip,
)
from .base import WidgetBase
from .frames import KERNEL_MODE, Frame, Request, image_key, image_png, jsonable, render
from .fvframes import (
    FRAME_INTERVAL,
    FV_OBJECTIVES,
    FV_RECIPES,
    FvRequest,
    Throttle,
    effective_steps,
    fv_file_png,
    fv_picture,
    fv_single_png,
)
from .runner import Cancelled, Runner

__all__ = ["ActivationViewer", "Explorer", "FeatureVisualizer", "FilterViewer"]

log = logging.getLogger(__name__)

VIEWS = ("filters", "activations", "featureviz", "table")
"""Every view a widget can offer. A new view needs its data (``Request.data_key`` and
``_fetch``), a renderer in ``frames.RENDERERS`` and an entry in ``VIEWS`` of ``widget.js``.
``"featureviz"`` is the exception: it streams from its own run (``_fv_*`` methods)."""
NORMALIZATIONS = ("layer", "channel", "symmetric", "std")
COLORMAPS = ("gray", "viridis", "diverging")
ACTIVATION_MODES = ("grid", "sum", "mean", KERNEL_MODE)
VECTOR_MODES = ("auto", "dense", "probabilities")
INPUT_CHANNEL_WORDS = ("auto", "rgb", "mean")

MAX_FV_STEPS = 100_000
MIN_FV_SIZE = 8
MAX_FV_SIZE = 1024
CACHE_SIZE = 8
"""Layers' data kept per widget: feature maps per (image, layer), weights per layer."""
PAGE_SIZE = 64
FV_PAGE_SIZE = 16
"""Channels per page (and per run) of :class:`FeatureVisualizer`: optimizing is slow."""
WAIT_TIMEOUT = 120.0

# Adapters put the model into inference mode and restore it afterwards (``protect``). Two
# threads doing that at once on one model could restore the wrong mode, so every widget's
# model access goes through this one lock.
_ADAPTER_LOCK = threading.RLock()


# --------------------------------------------------------------------------- helpers


class _LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True)
class _Prepared:
    """An image already converted for the model, ``(C, H, W)`` float32 (skips a reconversion)."""

    array: np.ndarray = field(repr=False)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _layer_entry(info: LayerInfo) -> dict[str, Any]:
    return {
        "index": info.index,
        "name": info.name,
        "type": info.type,
        "shape": None if info.output_shape is None else list(info.output_shape),
        "kind": info.kind,
        "has_filters": bool(info.has_filters),
    }


def _table_row(info: LayerInfo) -> dict[str, Any]:
    return {
        **_layer_entry(info),
        "shape_text": _shape_text(info.output_shape),
        "params": " ".join(f"{k}{_shape_text(v)}" for k, v in info.param_shapes.items()),
        "num_params": int(info.num_params),
    }


def _zoo() -> Any:
    # import_module, not ``from .. import zoo``: the package resolves ``zoo`` lazily.
    return importlib.import_module("cnn_widgets.zoo")


# --------------------------------------------------------------------------- the widget


class _Viewer(WidgetBase):
    """Shared implementation of the three widgets (see :class:`Explorer` for the traits)."""

    _VIEWS: ClassVar[tuple[str, ...]] = VIEWS
    _DEFAULT_COLORMAP: ClassVar[str] = "viridis"
    _frontend_writable = frozenset(
        {
            "view",
            "layer",
            "channel",
            "normalization",
            "colormap",
            "input_channel",
            "activation_mode",
            "vector_mode",
            "top_k",
            "page",
            "page_size",
            "sample",
            "upload",
            "upload_name",
            "fv_steps",
            "fv_size",
            "fv_recipe",
            "fv_objective",
            "fv_run",
            "fv_stop",
            "health_run",
        }
    )
    _FV_SETTINGS = ("fv_steps", "fv_size", "fv_recipe", "fv_objective")
    # Settings whose change redraws the picture; ``channel`` and ``image`` have their own paths.
    _RERENDER = (
        "view",
        "layer",
        "normalization",
        "colormap",
        "input_channel",
        "activation_mode",
        "vector_mode",
        "top_k",
        "page",
        "page_size",
    )

    # -- traits: what the widget shows -----------------------------------------------------
    views = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The views this widget offers, in the order of its view switch."""
    view = traitlets.Unicode("filters").tag(sync=True)
    """The current view, one of ``views``: ``"filters"``, ``"activations"`` or ``"table"``."""
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Every layer for the layer menu: ``{name, type, shape, kind, has_filters, index}``."""
    layer = traitlets.Unicode("").tag(sync=True)
    """Name of the layer shown. A name the model does not have is refused: ``error`` says so
    and ``layer`` keeps its value."""
    channel = traitlets.Int(0).tag(sync=True)
    """The selected channel (filter or feature map), shown enlarged in ``detail``; the page
    follows it. Out of range values are refused with an ``error``."""
    channel_count = traitlets.Int(0).tag(sync=True)
    """How many channels (or vector entries) the current layer has (read-only)."""
    table = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Rows of the layer table view: the ``layers`` entries plus parameter shapes and counts."""

    # -- traits: how it is drawn -----------------------------------------------------------
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
    page = traitlets.Int(0).tag(sync=True)
    """Page of channels shown when a layer has more than ``page_size``; always the page of
    ``channel`` (setting it moves the channel to the page's first)."""
    page_size = traitlets.Int(PAGE_SIZE).tag(sync=True)
    """Channels per page of the grid."""

    # -- traits: the input image -----------------------------------------------------------
    image = traitlets.Any(b"").tag(sync=True)
    """The input image as the model sees it (resized, channels matched), as PNG bytes sent in a
    binary buffer. Assign a numpy array, a PIL image, a path or file bytes: it is converted.
    An image that cannot be used leaves the previous one and sets ``error``."""
    sample = traitlets.Unicode("").tag(sync=True)
    """Name of the bundled sample image in use (see ``samples``); setting it loads that image."""
    samples = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """Names of the bundled sample images (``cnn_widgets.zoo.list_samples()``)."""
    upload = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    """Bytes of a file the user picked or dropped in the browser; consumed and cleared."""
    upload_name = traitlets.Unicode("").tag(sync=True)
    """File name of the last upload (for messages)."""

    # -- traits: the pictures --------------------------------------------------------------
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

    # -- traits: progress ------------------------------------------------------------------
    status = traitlets.Unicode("idle").tag(sync=True)
    """``"idle"``, ``"busy: ..."`` while the worker computes, ``"error"`` after a failure, or
    ``"no image: ..."`` in the feature-map view before an image is chosen."""
    busy = traitlets.Bool(False).tag(sync=True)
    """True while the worker thread computes a picture."""

    # -- traits: feature visualization (the "featureviz" view) -----------------------------
    fv_steps = traitlets.Int(256).tag(sync=True)
    """Optimization steps of a run (``CNN_WIDGETS_MAX_STEPS`` caps them)."""
    fv_size = traitlets.Int(0).tag(sync=True)
    """Image side in pixels; 0 lets :func:`~cnn_widgets.feature_viz` choose (128, or the
    model's own input size when smaller)."""
    fv_recipe = traitlets.Unicode("lucid").tag(sync=True)
    """``"lucid"`` (interpretable pictures) or ``"naive"`` (plain pixel ascent)."""
    fv_objective = traitlets.Unicode("channel").tag(sync=True)
    """``"channel"``, ``"neuron"`` (the centre position), ``"layer"`` (DeepDream, one image)
    or ``"class"`` (the logit of each unit of the layer)."""
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

    # -- traits: channel health and top-activating images ------------------------------------
    images_count = traitlets.Int(0).tag(sync=True)
    """How many images :attr:`images` holds; 0 when none were given (read-only)."""
    health_run = traitlets.Int(0).tag(sync=True)
    """The browser's "Check health" button: each increment runs :meth:`check_health`."""
    health_running = traitlets.Bool(False).tag(sync=True)
    """True while a health check runs on the worker thread (read-only)."""
    health_flags = traitlets.Dict().tag(sync=True)
    """The current layer's flagged channels from the last health check, ``{"4": [kind, ...]}``
    (keys are channel numbers as text); the browser marks their tiles (read-only)."""
    health_findings = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The current layer's findings: ``{channel, kind, label, message, where}`` (read-only)."""
    health_summary = traitlets.Unicode("").tag(sync=True)
    """One line about the last health check, for the current layer (read-only)."""
    top_strip = traitlets.Bytes(b"").tag(sync=True)
    """The images of :attr:`images` that excite the selected channel most, best first, cropped
    to its receptive field and tiled in one row (read-only)."""
    top_format = traitlets.Unicode("png").tag(sync=True)
    """Encoding of ``top_strip``."""
    top_meta = traitlets.Dict().tag(sync=True)
    """Facts about ``top_strip``: ``layer``, ``channel``, ``k``, ``images``, ``scores``,
    ``indices``, ``sources``, the tile geometry, and ``state`` (``"computing"``, ``"done"``,
    ``"error"``) (read-only)."""

    # --------------------------------------------------------------------------- construction

    def _setup(
        self,
        model: Any,
        image: ImageLike | None,
        layer: str | int | LayerInfo | None,
        options: dict[str, Any],
    ) -> None:
        self._check_options(options)
        adapter = model if isinstance(model, Adapter) else adapt(model)
        with _ADAPTER_LOCK:
            infos = adapter.layers()
        # Plain attributes first: validators and observers below read them.
        self._adapter = adapter
        self._infos = {info.name: info for info in infos}
        self._order = infos
        self._cache = _LRU(CACHE_SIZE)
        self._runner = Runner(self._on_worker_error, name=f"cnn-widgets-{type(self).__name__}")
        self._lock = threading.RLock()  # guards _generation and publishing
        self._generation = 0
        self._frame: Frame | None = None
        self._static_png: bytes | None = None
        self._quiet = False
        self._staged: tuple[bytes, np.ndarray, str] | None = None
        self._input: np.ndarray | None = None
        self._input_key = ""
        self._taking_sample = False
        self._accepted: dict[str, Any] = {"layer": "", "channel": 0, "image": b""}
        # True when ``error`` describes a failed render (cleared by the next good one); input
        # errors stay until the next user action.
        self._render_error = False
        # Feature visualization: finished runs per FvRequest, the images on screen, the
        # request being optimized and a generation counter that retires abandoned runs.
        self._fv_cache = _LRU(CACHE_SIZE)
        self._fv_shown: tuple[FvRequest, np.ndarray] | None = None
        self._fv_active: FvRequest | None = None
        self._fv_generation = 0
        self._fv_started = False
        #: Optimizations started (for tests and diagnostics).
        self._fv_calls = 0
        # Health checks and top images run on threads of their own: the view's runner drops a
        # waiting job whenever the user moves on, and a health check must not be dropped.
        self._health_runner = Runner(self._on_worker_error, name="cnn-widgets-health")
        self._top_runner = Runner(self._on_worker_error, name="cnn-widgets-top-images")
        self._images: ImageSet | None = None
        self._images_generation = 0
        self._health: tuple[HealthReport, str] | None = None
        self._health_generation = 0
        self._top_cache = _LRU(4 * CACHE_SIZE)
        self._top_key: tuple[Any, ...] | None = None
        self._top_generation = 0
        #: Top-image rankings computed (for tests and diagnostics).
        self._top_calls = 0

        sample = options.pop("sample", "")
        if image is not None and sample:
            raise ValueError("give image or sample, not both")
        view = options.pop("view", self._VIEWS[0] if len(self._VIEWS) == 1 else None)
        if image is None and sample:
            image = _zoo().sample_image(sample)
        if image is None and "activations" in self._VIEWS:
            image = self._default_image()
        if image is not None:
            self._input = prepare_image(adapter, image)  # bad arguments raise here
            self._input_key = image_key(self._input)
        if view is None:
            view = "activations" if self._input is not None else "filters"
        if view not in self._VIEWS:
            raise ValueError(f"view must be one of {', '.join(self._VIEWS)}; got {view!r}")
        name = adapter.layer(layer).name if layer is not None else self._default_layer()
        png = image_png(self._input) if self._input is not None else b""
        if png:
            self._staged = (png, self._input, self._input_key)

        options.setdefault("colormap", self._DEFAULT_COLORMAP)
        super().__init__(
            views=list(self._VIEWS),
            layers=[_layer_entry(i) for i in infos],
            table=[_table_row(i) for i in infos],
            samples=self._sample_names(),
            sample=sample,
            view=view,
            layer=name,
            image=png,
            **options,
        )
        self._staged = None
        self.observe(self._on_change, names=[*self._RERENDER, "channel", "image", "sample"])
        self.observe(self._on_upload, names="upload")
        self.observe(self._on_fv_setting, names=list(self._FV_SETTINGS))
        self.observe(self._on_fv_button, names=["fv_run", "fv_stop"])
        self.observe(self._on_health_button, names="health_run")
        self._refresh(force_inline=True)

    def _default_layer(self) -> str:
        """The first convolution, else the first layer with feature maps, else the first."""
        convs = [i for i in self._order if i.has_filters]
        spatial = [i for i in self._order if i.is_spatial]
        ran = [i for i in self._order if i.output_shape is not None]
        return (convs or spatial or ran or self._order)[0].name

    def _default_image(self) -> np.ndarray | None:
        try:
            return _zoo().default_image(self._adapter)
        except Exception as exc:  # e.g. scikit-image missing for the photos: no image yet
            log.info("no default image: %s", exc)
            return None

    @staticmethod
    def _sample_names() -> list[str]:
        try:
            return list(_zoo().list_samples())
        except Exception as exc:
            log.info("no sample images: %s", exc)
            return []

    # --------------------------------------------------------------------------- public API

    @property
    def adapter(self) -> Adapter:
        """The adapted model this widget shows."""
        return self._adapter

    @property
    def images(self) -> ImageSet | None:
        """The image set for the health check and the top-activating images, or None.

        Assign a folder, an ``(N, H, W[, C])`` array or a list of images or paths (as for
        :func:`cnn_widgets.top_images`); None removes it. An unusable value sets ``error`` and
        keeps the previous set. With a set, the strip of the images that excite the selected
        channel most (``top_strip``) follows the selection.
        """
        return self._images

    @images.setter
    def images(self, value: Any) -> None:
        if self.error and not self._in_browser_batch:
            self.error = ""
        if value is None:
            chosen = None
        else:
            try:
                chosen = image_set(self._adapter, value)
            except Exception as exc:
                self._report(exc)
                return  # the previous set stays
        with self._lock:
            self._images = chosen
            self._images_generation += 1
            self._top_generation += 1  # a ranking of the old set is no longer wanted
            self._top_key = None
            self._top_cache.clear()
            # A report on other images would be mistaken for one on these.
            self._health_generation += 1
            self._health = None
            with self.hold_sync():
                self.images_count = 0 if chosen is None else int(chosen.count or 0)
                self.health_running = False
                self.health_flags, self.health_findings, self.health_summary = {}, [], ""
                self.top_strip, self.top_meta = b"", {}
        self._top_show()

    def check_health(self) -> None:
        """Check every conv layer for dead, constant and non-finite channels, in the background.

        Runs :func:`cnn_widgets.health_report` on :attr:`images` when set, else on the current
        image and the bundled sample images with the model's channel count. The current
        layer's flagged channels then show in ``health_flags`` (marked on the grid) and
        ``health_findings`` (listed), and follow the layer. :meth:`wait` blocks until done.
        """
        if self.error and not self._in_browser_batch:
            self.error = ""
        if self._images is not None:
            images: Any = self._images
            source = "the images set in .images"
        else:
            defaults = default_health_images(self._adapter, self._input)
            images = defaults or None
            source = "the current image and matching samples" if defaults else "no images"
        with self._lock:
            self._health_generation += 1
            generation = self._health_generation
            with self.hold_sync():
                self.health_running = True
                self.health_summary = "checking the health of every conv channel…"
        self._health_runner.submit(lambda stop: self._health_work(images, source, generation, stop))

    def wait(self, timeout: float | None = WAIT_TIMEOUT) -> None:
        """Block until the worker threads have published the latest request (the picture,
        a health check, the top images).

        Raises
        ------
        TimeoutError
            When the work takes longer than ``timeout`` seconds.
        """
        # The picture's worker may start no other work, so waiting for each in turn is enough.
        for runner in (self._runner, self._health_runner, self._top_runner):
            if not runner.wait(timeout):
                raise TimeoutError(f"{type(self).__name__}: still busy after {timeout} s")

    def save_png(self, path: str | Path) -> Path:
        """Write the current picture (the grid, the plot of a vector layer, or the feature
        visualizations on screen) as a PNG file.

        Waits for pending work first (a feature-visualization run included). In the table
        view the last picture is written.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        self.wait()
        png = self._png_of_view()
        if not png:
            reason = f": {self.error}" if self.error else ""
            raise RuntimeError(f"{type(self).__name__} has no picture to save{reason}")
        target = Path(path)
        target.write_bytes(png)
        return target

    def close(self) -> None:
        """Stop the worker thread and close the widget's connection to the browser."""
        for name in ("_runner", "_health_runner", "_top_runner"):
            runner = getattr(self, name, None)
            if runner is not None:
                runner.close()
        super().close()

    def __repr__(self) -> str:
        # Cheap on purpose: no trait serialization, no forward pass.
        model = type(self._adapter.model).__name__ if hasattr(self, "_adapter") else "?"
        return (
            f"<{type(self).__name__} {model} view={self.view!r} layer={self.layer!r} "
            f"channel={self.channel}>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        png = self._png_of_view()
        if png:
            # A notebook saved or exported without widget state still shows the picture.
            data = {**data, "image/png": base64.b64encode(png).decode("ascii")}
        return data, metadata

    def _png_of_view(self) -> bytes:
        with self._lock:
            if self.view == "featureviz":
                shown = self._fv_shown
                return fv_file_png(shown[1]) if shown is not None else b""
            frame = self._frame
            if frame is None or frame.grid is None:
                return b""
            if self._static_png is None:
                self._static_png = frame.grid.png()
            return self._static_png

    # --------------------------------------------------------------------------- validation

    def _choice(self, proposal: Any, choices: tuple[str, ...]) -> str:
        value = proposal["value"]
        if value not in choices:
            raise traitlets.TraitError(
                f"{type(self).__name__}.{proposal['trait'].name} must be one of "
                f"{', '.join(repr(c) for c in choices)}; got {value!r}"
            )
        return value

    @traitlets.validate("view")
    def _validate_view(self, proposal: Any) -> str:
        return self._choice(proposal, tuple(self.views) or self._VIEWS)

    @traitlets.validate("normalization")
    def _validate_normalization(self, proposal: Any) -> str:
        return self._choice(proposal, NORMALIZATIONS)

    @traitlets.validate("colormap")
    def _validate_colormap(self, proposal: Any) -> str:
        return self._choice(proposal, COLORMAPS)

    @traitlets.validate("activation_mode")
    def _validate_activation_mode(self, proposal: Any) -> str:
        return self._choice(proposal, ACTIVATION_MODES)

    @traitlets.validate("vector_mode")
    def _validate_vector_mode(self, proposal: Any) -> str:
        return self._choice(proposal, VECTOR_MODES)

    @traitlets.validate("input_channel")
    def _validate_input_channel(self, proposal: Any) -> str:
        value = proposal["value"].strip().lower()
        if value in INPUT_CHANNEL_WORDS or value.isdigit():
            return value
        raise traitlets.TraitError(
            f"{type(self).__name__}.input_channel must be 'auto', 'rgb', 'mean' or a channel "
            f"index; got {proposal['value']!r}"
        )

    @traitlets.validate("page_size")
    def _validate_page_size(self, proposal: Any) -> int:
        value = proposal["value"]
        if not 1 <= value <= 4096:
            raise traitlets.TraitError(f"page_size must be in 1..4096; got {value}")
        return value

    @traitlets.validate("page")
    def _validate_page(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 0:
            raise traitlets.TraitError(f"page must be >= 0; got {value}")
        return value

    @traitlets.validate("top_k")
    def _validate_top_k(self, proposal: Any) -> int:
        value = proposal["value"]
        if not 1 <= value <= 100:
            raise traitlets.TraitError(f"top_k must be in 1..100; got {value}")
        return value

    @traitlets.validate("fv_steps")
    def _validate_fv_steps(self, proposal: Any) -> int:
        value = proposal["value"]
        if not 1 <= value <= MAX_FV_STEPS:
            raise traitlets.TraitError(f"fv_steps must be in 1..{MAX_FV_STEPS}; got {value}")
        return value

    @traitlets.validate("fv_size")
    def _validate_fv_size(self, proposal: Any) -> int:
        value = proposal["value"]
        if value != 0 and not MIN_FV_SIZE <= value <= MAX_FV_SIZE:
            raise traitlets.TraitError(
                f"fv_size must be 0 (automatic) or in {MIN_FV_SIZE}..{MAX_FV_SIZE} pixels; "
                f"got {value}"
            )
        return value

    @traitlets.validate("fv_recipe")
    def _validate_fv_recipe(self, proposal: Any) -> str:
        return self._choice(proposal, FV_RECIPES)

    @traitlets.validate("fv_objective")
    def _validate_fv_objective(self, proposal: Any) -> str:
        return self._choice(proposal, FV_OBJECTIVES)

    @traitlets.validate("layer")
    def _validate_layer(self, proposal: Any) -> str:
        # A wrong name is a user mistake the widget survives: it keeps the current layer and
        # says what went wrong (with suggestions) instead of raising into the comm handler.
        name = proposal["value"]
        if name in self._infos:
            return self._accept("layer", name)
        try:
            self._adapter.layer(name)
        except (ValueError, TypeError) as exc:
            self._report(exc)
        return self._accepted["layer"]

    @traitlets.validate("channel")
    def _validate_channel(self, proposal: Any) -> int:
        value = proposal["value"]
        count = self.channel_count
        if value < 0 or (count and value >= count and not self._quiet):
            self._report(f"channel {value} is out of range: valid 0..{max(count - 1, 0)}")
            return self._accepted["channel"]
        return self._accept("channel", value)

    @traitlets.validate("image")
    def _validate_image(self, proposal: Any) -> Any:
        value = proposal["value"]
        staged = self._staged
        if staged is not None and value is staged[0]:
            return self._accept("image", value)
        if value is None or (isinstance(value, (bytes, bytearray)) and not value):
            return self._accept("image", b"")
        try:
            if isinstance(value, _Prepared):
                array = value.array
            else:
                array = prepare_image(self._adapter, value)
            png = image_png(array)
        except Exception as exc:
            self._report(exc)
            return self._accepted["image"]  # keep the previous image
        self._staged = (png, array, image_key(array))
        return self._accept("image", png)

    def _accept(self, name: str, value: Any) -> Any:
        # Validators that refuse a value fall back to the last accepted one: ``self.<name>``
        # already holds the refused value while traitlets holds notifications (browser input).
        self._accepted[name] = value
        return value

    # --------------------------------------------------------------------------- observers

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Set dependent traits without triggering another render."""
        previous, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = previous

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] is change["new"] or change["old"] == change["new"]:
            return
        name = change["name"]
        if self.error and not self._in_browser_batch:
            self.error = ""  # a new action from Python; the browser path clears in set_state
        try:
            with self._quietly():
                if name == "image":
                    self._take_image(change["new"])
                elif name == "sample":
                    if not self._take_sample(change["new"], change["old"]):
                        return
                elif name == "view":
                    self._fit_layer_to_view()
                elif name == "layer":
                    if self.input_channel not in ("auto", "mean"):
                        self.input_channel = "auto"  # "rgb" or an index may not fit the layer
                elif name == "page":
                    self.channel = min(self.page * self.page_size, max(self.channel_count - 1, 0))
        except Exception as exc:
            self._report(exc)
            return
        detail_only = name == "channel" and self.channel // self.page_size == self.page
        self._refresh(detail_only=detail_only)

    def _take_image(self, png: bytes) -> None:
        staged, self._staged = self._staged, None
        if not png:
            self._input, self._input_key = None, ""
        elif staged is not None and staged[0] is png:
            self._input, self._input_key = staged[1], staged[2]
        else:  # assigned by a path we did not stage (should not happen): decode it again
            self._input = prepare_image(self._adapter, bytes(png))
            self._input_key = image_key(self._input)
        if not self._taking_sample:
            self.sample = ""

    def _take_sample(self, name: str, previous: str) -> bool:
        """Load a sample image; False when nothing changed (failure or cleared name)."""
        if not name:
            return False
        before = self.image
        try:
            array = prepare_image(self._adapter, _zoo().sample_image(name))
        except Exception as exc:
            self._report(exc)
            self.sample = previous
            return False
        self._taking_sample = True
        try:
            self.image = _Prepared(array)
            if self.image is before:  # refused (the error is already shown)
                self.sample = previous
                return False
            self._take_image(self.image)  # its observer is quiet here: take it ourselves
        finally:
            self._taking_sample = False
        return True

    def _on_upload(self, change: dict[str, Any]) -> None:
        data = bytes(change["new"] or b"")
        if not data or self._quiet:
            return
        name = self.upload_name or "the upload"
        try:
            array = prepare_image(self._adapter, data)
        except Exception as exc:
            self._report(f"cannot use the uploaded file {name!r}: {exc}")
        else:
            self.image = _Prepared(array)  # observers render it
        finally:
            with self._quietly():
                self.upload = b""  # consumed: the same file may be dropped again

    def _fit_layer_to_view(self) -> None:
        info = self._infos[self.layer]
        if self.view == "filters" and not info.has_filters:
            convs = [i for i in self._order if i.has_filters]
            if convs:
                before = [i for i in convs if i.index <= info.index]
                self.layer = (before[-1] if before else convs[0]).name
        elif self.view in ("activations", "featureviz") and info.output_shape is None:
            ran = [i for i in self._order if i.output_shape is not None]
            if ran:
                self.layer = ran[0].name

    # --------------------------------------------------------------------------- requests

    def _channel_total(self, info: LayerInfo) -> int:
        if info.output_shape:
            return max(int(info.output_shape[0]), 1)
        return 1

    def _settle(self) -> Request | None:
        """Clamp channel and page to the layer; the request for the current state."""
        if self.view == "table":
            return None
        info = self._infos[self.layer]
        total = self._channel_total(info)
        with self._quietly():
            self.channel_count = total
            if self.channel >= total:
                self.channel = total - 1
            self.page = self.channel // self.page_size
        return Request(
            is_output=info.index == len(self._order) - 1,
            is_vector=info.output_shape is not None and len(info.output_shape) == 1,
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
            image_key=self._input_key,
            image=self._input,
        )

    def _refresh(self, *, detail_only: bool = False, force_inline: bool = False) -> None:
        try:
            request = self._settle()
        except Exception as exc:
            self._report(exc)
            self._render_error = True
            return
        self._show_health()
        if request is None:
            return
        self._top_show()
        if request.view == "featureviz":
            self._fv_show()
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
        if request.data_key is None:
            self._publish(generation, None, status="no image: choose a sample or open a file")
            return
        responses = request.renderer == "responses"
        if responses and not self._infos[request.layer].has_filters:
            self._refuse_responses(generation, self._infos[request.layer])
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
        if force_inline or (cheap and not self._runner.busy):
            # Cached data (or weights, which need no forward pass) render in milliseconds:
            # no thread hop, and the caller sees the result as soon as the setter returns.
            try:
                data = cached if cached is not None else self._fetch(request)
                frame = render(request, data, previous=previous, detail_only=detail_only)
            except Exception as exc:
                self._fail(generation, exc)
                return
            self._publish(generation, frame)
            return
        what = "filters" if request.view == "filters" else "feature maps"
        if responses:
            what = f"kernel x image responses of filter {request.channel}"
        self._fv_abandon()  # the worker is needed for this: a running optimization ends
        with self._lock, self.hold_sync():
            self.busy = True
            self.status = f"busy: computing the {what} of {request.layer!r}"
        self._runner.submit(lambda stop: self._work(request, generation, stop))

    def _work(self, request: Request, generation: int, stop: threading.Event) -> None:
        """Runs on the worker thread."""
        try:
            data = self._cache.get(request.data_key) if request.data_key else None
            if data is None:
                data = self._fetch(request)
            if stop.is_set():
                raise Cancelled
            frame = render(request, data, stop=stop)
        except Cancelled:
            raise
        except Exception as exc:
            self._fail(generation, exc)
            return
        self._publish(generation, frame)

    def _fetch(self, request: Request) -> Any:
        with _ADAPTER_LOCK:
            if request.view == "filters":
                data = self._adapter.filters(request.layer)
            elif request.renderer == "responses":
                assert request.image is not None
                # HWC floats in [0, 1] are read back unchanged (CHW of one channel is not).
                data = filter_responses(
                    self._adapter, np.moveaxis(request.image, 0, -1), request.layer, request.channel
                )
            else:
                assert request.image is not None
                out = self._adapter.activations(request.image[None], [request.layer])
                data = out[request.layer][0]
        self._cache.put(request.data_key, data)
        return data

    # --------------------------------------------------------------------------- publishing

    def _publish(self, generation: int, frame: Frame | None, *, status: str = "idle") -> bool:
        """Send a result unless a newer request was made meanwhile; one message."""
        with self._lock:
            if generation != self._generation:
                return False
            with self.hold_sync():
                if frame is None:
                    self.grid, self.grid_layout, self.grid_meta = b"", {}, {}
                    self.detail, self.detail_stats, self.predictions = b"", {}, []
                else:
                    if frame.grid is not (self._frame.grid if self._frame else None):
                        self._static_png = None
                        self.grid_format, self.grid = frame.grid_wire
                        self.grid_layout = frame.layout
                        self.grid_meta = frame.meta
                        self.predictions = frame.predictions
                    self.detail_format, self.detail = frame.detail_wire
                    self.detail_stats = frame.detail_stats
                self._frame = frame if frame is not None else self._frame
                if self._render_error:
                    self.error, self._render_error = "", False
                self.busy = False
                self.status = status
            return True

    def _fail(self, generation: int, exc: BaseException) -> None:
        with self._lock:
            if generation != self._generation:
                log.debug("dropped the error of a superseded request: %r", exc)
                return
            with self.hold_sync():
                self._report(exc)
                self._render_error = True
                self.busy = False
                self.status = "error"

    def _refuse_responses(self, generation: int, info: LayerInfo) -> None:
        """Kernel x image on a layer without filters: say so, and show no stale picture."""
        convs = [i.name for i in self._order if i.has_filters]
        hint = f" ({', '.join(repr(n) for n in convs[:4])})" if convs else ""
        message = (
            f"kernel x image needs a convolution, but layer {info.name!r} is a {info.type} "
            f"without filters: choose a conv layer{hint} or another 'Show' mode"
        )
        with self._lock, self.hold_sync():
            if not self._publish(generation, None, status="kernel x image: not a conv layer"):
                return
            self._report(message)
            self._render_error = True

    def _on_worker_error(self, exc: BaseException) -> None:
        # Last resort for errors that escaped a job; jobs report their own through _fail.
        with self._lock, self.hold_sync():
            self._report(exc)
            self._render_error = True
            self.busy = self._runner.has_pending
            self.status = "error"

    # --------------------------------------------------------------------------- feature viz

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
        if self.error and not self._in_browser_batch:
            self.error = ""
        try:
            request = self._fv_request(channels)
        except Exception as exc:
            self._report(exc)
            return
        total = effective_steps(request.steps)
        with self._lock:
            self._fv_generation += 1
            generation = self._fv_generation
            self._fv_active = request
            self._fv_started = False
            with self.hold_sync():
                # A view request waiting for the worker is replaced by this run.
                self.busy = False
                self.fv_running = True
                self.fv_progress = 0.0
                self.fv_step = 0
                self.status = f"busy: feature visualization, {request.describe()}"
        self._runner.submit(lambda stop: self._fv_work(request, generation, total, stop))

    def stop_feature_viz(self) -> None:
        """Stop the running feature visualization; its last images stay, status "stopped"."""
        with self._lock:
            if self._fv_active is None:
                return
            generation, started = self._fv_generation, self._fv_started
        self._runner.cancel()
        if started:
            return  # the run sees its stop event and publishes its last picture itself
        with self._lock:  # it never started: nobody else will say that it ended
            if generation == self._fv_generation and not self._fv_started:
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
    def _fv_selection(request: FvRequest) -> tuple[Any, ...]:
        """What a picture shows, settings aside: pictures of one selection may stand in for
        each other until the next run."""
        return (request.layer, request.channels, request.objective)

    def _fv_work(
        self, request: FvRequest, generation: int, total: int, stop: threading.Event
    ) -> None:
        """Runs on the worker thread."""
        with self._lock:
            if generation != self._fv_generation:
                raise Cancelled
            self._fv_started = True
        throttle = Throttle(FRAME_INTERVAL)
        last: dict[str, Any] = {"step": 0, "values": None}

        def on_step(step: int, images: np.ndarray, values: np.ndarray) -> None:
            last["step"], last["values"] = step, values
            # The final frame goes out below as a PNG; in between, at most one per interval.
            if step < total and throttle.ready():
                self._fv_publish(generation, request, images, values, step, total, "running")

        self._fv_calls += 1
        try:
            with _ADAPTER_LOCK:
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
                    stop=stop,
                )
        except Exception as exc:
            self._fv_fail(generation, exc)
            return
        complete = last["step"] >= total
        state = "done" if complete else "stopped"
        meta = self._fv_publish(
            generation, request, images, last["values"], last["step"], total, state
        )
        if complete and meta is not None:
            self._fv_cache.put(request, (images, {**meta, "state": "cached"}))

    def _fv_meta(
        self,
        request: FvRequest,
        images: np.ndarray,
        values: np.ndarray | None,
        step: int,
        total: int,
        state: str,
    ) -> dict[str, Any]:
        return jsonable(
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

    def _fv_publish(
        self,
        generation: int,
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
        meta = self._fv_meta(request, images, values, step, total, state)
        # The detail streams too: a figure that appears only at the end would shift the grid.
        detail = self._fv_detail_png(request, images)
        with self._lock:
            if generation != self._fv_generation:
                return None
            self._fv_shown = (request, images)
            with self.hold_sync():
                self.fv_format, self.fv_image = kind, data
                self.fv_layout = layout
                self.fv_meta = meta
                self.fv_step = step
                self.fv_progress = min(1.0, step / max(total, 1))
                self.fv_detail = detail
                if running:
                    self.status = f"busy: feature visualization, step {step} of {total}"
                else:
                    self._fv_active = None
                    self.fv_running = False
                    self.status = "stopped" if state == "stopped" else "idle"
        return meta

    def _fv_fail(self, generation: int, exc: BaseException) -> None:
        with self._lock:
            if generation != self._fv_generation:
                log.debug("dropped the error of an abandoned feature visualization: %r", exc)
                return
            self._fv_active = None
            with self.hold_sync():
                self._report(exc)
                self.fv_running = False
                self.status = "error"

    def _fv_abandon(self, *, cancel: bool = False) -> None:
        """Retire the running optimization (its frames are no longer wanted)."""
        with self._lock:
            if self._fv_active is None:
                return
            self._fv_generation += 1
            self._fv_active = None
            self.fv_running = False
        if cancel:
            self._runner.cancel()

    def _fv_detail_png(self, request: FvRequest, images: np.ndarray) -> bytes:
        if self.channel in request.channels:
            return fv_single_png(images, request.channels.index(self.channel))
        return b""

    def _fv_show(self) -> None:
        """Show what is known for the layer, page and settings on screen: a finished run from
        the cache, the picture already there when it shows the same channels, or nothing."""
        try:
            request = self._fv_request()
        except Exception as exc:
            self._report(exc)
            return
        selection = self._fv_selection(request)
        active = self._fv_active
        if active is not None:
            if self._fv_selection(active) == selection:
                return  # its run streams the picture; settings apply to the next run
            self._fv_abandon(cancel=True)
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
                        self.status = "idle"
                    self.fv_detail = self._fv_detail_png(request, images)
                elif shown is not None and self._fv_selection(shown[0]) == selection:
                    self.fv_detail = self._fv_detail_png(shown[0], shown[1])
                else:
                    self._fv_shown = None
                    self.fv_image, self.fv_layout, self.fv_meta = b"", {}, {}
                    self.fv_detail, self.fv_step, self.fv_progress = b"", 0, 0.0
                    if not self.fv_running:
                        self.status = "idle"
                self.busy = False

    def _on_fv_setting(self, change: dict[str, Any]) -> None:
        if change["old"] == change["new"]:
            return
        if self.error and not self._in_browser_batch:
            self.error = ""
        if self.view == "featureviz":
            self._fv_show()

    def _on_fv_button(self, change: dict[str, Any]) -> None:
        if change["old"] == change["new"]:
            return
        if change["name"] == "fv_run":
            self.run_feature_viz()
        else:
            self.stop_feature_viz()

    # --------------------------------------------------------------------------- health

    def _on_health_button(self, change: dict[str, Any]) -> None:
        if change["old"] != change["new"]:
            self.check_health()

    def _health_work(
        self, images: Any, source: str, generation: int, stop: threading.Event
    ) -> None:
        """Runs on the health worker thread."""
        if stop.is_set():
            raise Cancelled
        try:
            with _ADAPTER_LOCK:
                report = health_report(self._adapter, images)
        except Exception as exc:
            with self._lock:
                if generation != self._health_generation:
                    return
                with self.hold_sync():
                    self._report(exc)
                    self.health_running = False
                    self.health_summary = "the health check failed (see the error)"
            return
        with self._lock:
            if generation != self._health_generation:
                return  # the images changed meanwhile: this report describes other ones
            self._health = (report, source)
            with self.hold_sync():
                self.health_running = False
                self._show_health()

    def _show_health(self) -> None:
        """Publish the last report's marks, list and summary for the current layer (the
        report covers every conv layer: a layer change needs no new check)."""
        with self._lock:
            if self._health is None:
                return
            report, source = self._health
            flags, rows = health_entries(report, self.layer)
            with self.hold_sync():
                self.health_flags, self.health_findings = flags, rows
                if not self.health_running:  # a new check says "checking" until it is done
                    self.health_summary = health_summary(report, self.layer, source)

    # --------------------------------------------------------------------------- top images

    def _top_show(self) -> None:
        """Show the selected channel's top images: from the cache, else ranked on the worker."""
        chosen = self._images
        if chosen is None or self.view == "table":
            return
        info = self._infos[self.layer]
        if info.output_shape is None:  # the layer did not run: nothing to rank
            with self._lock, self.hold_sync():
                self._top_generation += 1
                self._top_key = None
                self.top_strip, self.top_meta = b"", {}
            return
        key = (self._images_generation, self.layer, self.channel)
        with self._lock:
            if key == self._top_key:
                return  # on screen, or being ranked
            self._top_key = key
            self._top_generation += 1
            generation = self._top_generation
        cached = self._top_cache.get(key)
        if cached is not None:
            self._top_publish(generation, cached)
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
        self._top_runner.submit(lambda stop: self._top_work(key, chosen, k, generation, stop))

    def _top_work(
        self,
        key: tuple[Any, ...],
        chosen: ImageSet,
        k: int,
        generation: int,
        stop: threading.Event,
    ) -> None:
        """Runs on the top-images worker thread."""
        if stop.is_set() or generation != self._top_generation:
            raise Cancelled  # the selection moved on before this ranking started
        _, layer, channel = key
        self._top_calls += 1
        try:
            with _ADAPTER_LOCK:
                result = top_images(self._adapter, layer, channel, chosen, k=k, progress=False)
            wire = top_strip(result, int(chosen.count or 0))
        except Exception as exc:
            with self._lock:
                if generation != self._top_generation:
                    return
                self._top_key = None  # selecting the channel again tries again
                with self.hold_sync():
                    self._report(exc)
                    self.top_meta = {"state": "error", "layer": layer, "channel": channel}
            return
        self._top_cache.put(key, wire)
        self._top_publish(generation, wire)

    def _top_publish(self, generation: int, wire: tuple[str, bytes, dict[str, Any]]) -> None:
        fmt, data, meta = wire
        with self._lock:
            if generation != self._top_generation:
                return
            with self.hold_sync():
                self.top_format, self.top_strip, self.top_meta = fmt, data, meta


# --------------------------------------------------------------------------- public classes

_COMMON = ("channel", "normalization", "colormap", "page_size")
_FILTER_OPTIONS = ("input_channel",)
_ACTIVATION_OPTIONS = ("activation_mode", "vector_mode", "top_k", "sample")
_FV_OPTIONS = ("fv_steps", "fv_size", "fv_recipe", "fv_objective")


class Explorer(_Viewer):
    """Filters, feature maps, feature visualizations and the layer table of a model in one
    widget.

    Parameters
    ----------
    model:
        A ``torch.nn.Module``, a ``keras.Model`` or a model from :func:`cnn_widgets.adapt`.
    image:
        Input for the feature maps: numpy array, PIL image, path or file bytes. Default: a
        bundled sample image that suits the model (when the sample images are installed).
    layer:
        Layer name or index; default: the first convolution.
    **options:
        Initial values of ``view``, ``channel``, ``normalization``, ``colormap``,
        ``input_channel``, ``activation_mode``, ``vector_mode``, ``top_k``, ``page_size``,
        ``sample``, ``fv_steps``, ``fv_size``, ``fv_recipe`` or ``fv_objective``; anything else
        raises :class:`TypeError`.

    Notes
    -----
    Arguments given here raise when they are wrong. Later changes (from Python or the
    browser) never raise: a problem shows in ``error`` and the widget keeps its last good
    state. Work that needs a forward pass runs on a worker thread; :meth:`wait` blocks until
    it is published. The worker does one thing at a time, latest request first: a feature
    visualization that is running stops when the filters or feature maps need the worker.
    """

    _VIEWS = VIEWS
    _options = ("view", *_COMMON, *_FILTER_OPTIONS, *_ACTIVATION_OPTIONS, *_FV_OPTIONS)

    def __init__(
        self,
        model: Any,
        image: ImageLike | None = None,
        layer: str | int | LayerInfo | None = None,
        **options: Any,
    ) -> None:
        self._setup(model, image, layer, options)


class FilterViewer(_Viewer):
    """The learned filters (kernels) of a model's convolutions, one layer at a time.

    Parameters
    ----------
    model:
        A ``torch.nn.Module``, a ``keras.Model`` or a model from :func:`cnn_widgets.adapt`.
    layer:
        Layer name or index; default: the first convolution.
    **options:
        Initial values of ``channel``, ``normalization``, ``colormap``, ``input_channel`` or
        ``page_size``; anything else raises :class:`TypeError`.
    """

    _VIEWS = ("filters",)
    _DEFAULT_COLORMAP = "gray"
    _options = (*_COMMON, *_FILTER_OPTIONS)

    def __init__(
        self, model: Any, layer: str | int | LayerInfo | None = None, **options: Any
    ) -> None:
        self._setup(model, None, layer, options)


class ActivationViewer(_Viewer):
    """What each layer of a model outputs for an image: feature maps, or the vector of a
    dense layer (values, or top-k class probabilities).

    Parameters
    ----------
    model:
        A ``torch.nn.Module``, a ``keras.Model`` or a model from :func:`cnn_widgets.adapt`.
    image:
        numpy array, PIL image, path or file bytes; default: a bundled sample image that suits
        the model. Change it later with ``viewer.image = ...``, ``viewer.sample = name`` or by
        dropping a file on the widget.
    layer:
        Layer name or index; default: the first convolution.
    **options:
        Initial values of ``channel``, ``normalization``, ``colormap``, ``activation_mode``,
        ``vector_mode``, ``top_k``, ``page_size`` or ``sample``; anything else raises
        :class:`TypeError`.
    """

    _VIEWS = ("activations",)
    _options = (*_COMMON, *_ACTIVATION_OPTIONS)

    def __init__(
        self,
        model: Any,
        image: ImageLike | None = None,
        layer: str | int | LayerInfo | None = None,
        **options: Any,
    ) -> None:
        self._setup(model, image, layer, options)


class FeatureVisualizer(_Viewer):
    """Feature visualization, live: the images that excite each channel of a layer most,
    synthesized by gradient ascent while you watch.

    Press "Run gradient ascent" (or call :meth:`run_feature_viz`) and the images of the page of
    channels on screen stream in as the optimization runs on a worker thread; "Stop" (or
    :meth:`stop_feature_viz`) ends it and keeps the last images. Finished runs are cached per
    layer, channels and settings, so returning to them is instant.

    Parameters
    ----------
    model:
        A ``torch.nn.Module``, a ``keras.Model`` or a model from :func:`cnn_widgets.adapt`.
    layer:
        Layer name or index; default: the first convolution.
    **options:
        Initial values of ``channel``, ``page_size`` (channels per run, default 16),
        ``fv_steps``, ``fv_size``, ``fv_recipe`` or ``fv_objective``; anything else raises
        :class:`TypeError`.

    See Also
    --------
    cnn_widgets.feature_viz : the same optimization as a function.
    """

    _VIEWS = ("featureviz",)
    _options = ("channel", "page_size", *_FV_OPTIONS)

    def __init__(
        self, model: Any, layer: str | int | LayerInfo | None = None, **options: Any
    ) -> None:
        options.setdefault("page_size", FV_PAGE_SIZE)
        self._setup(model, None, layer, options)
