"""The plain-function API: what the seed articles did by hand, for any torch or Keras model.

Every function accepts a raw model or one wrapped by :func:`cnn_widgets.adapt`, and a layer
by name or index. Arrays come back channels-first and float32, whatever the framework.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .analysis.table import LayerTable
from .backends import Adapter, LayerInfo, adapt
from .backends.base import LayerKey
from .images import ImageLike, load_image
from .render import plots, views
from .render.rendered import Rendered

__all__ = [
    "activations",
    "filters",
    "layers",
    "prepare_image",
    "render_activations",
    "render_filters",
    "summary",
    "to_probabilities",
    "top_classes",
]

LayerSpec = LayerKey | LayerInfo


def _as_adapter(model: Any) -> Adapter:
    return model if isinstance(model, Adapter) else adapt(model)


def layers(model: Any) -> list[LayerInfo]:
    """Every layer of ``model`` in forward order.

    Shapes come from one real forward pass on a dummy input of the model's input size.

    Returns
    -------
    list of LayerInfo
        ``name``, ``type``, ``output_shape`` (channels-first, no batch), ``param_shapes``,
        ``num_params``, ``has_filters``.
    """
    return _as_adapter(model).layers()


def summary(model: Any) -> LayerTable:
    """The layer table: what Caffe's ``net.blobs`` / ``net.params`` listings print, as a
    table with a readable ``repr`` and an HTML form for notebooks.

    Layers that did not run in the forward pass are listed and marked "did not run"; the
    footer names the output layer (index ``-1``).
    """
    adapter = _as_adapter(model)
    infos = adapter.layers()
    output = adapter.output_layer().name if any(i.ran for i in infos) else None
    return LayerTable(
        infos, framework=adapter.framework, input_shape=adapter.spec.shape, output=output
    )


def filters(model: Any, layer: LayerSpec) -> np.ndarray:
    """The learned kernels of a 2-D convolution as ``(out, in_per_group, kh, kw)`` float32.

    The same layout for both frameworks (Keras ``(kh, kw, in, out)`` is transposed). NaN or
    Inf weights are returned as they are, with a ``RuntimeWarning`` that counts them.

    Raises
    ------
    ValueError
        When the layer does not exist (close names are suggested), or has no 2-D filters
        (the layers that do are listed).
    """
    adapter = _as_adapter(model)
    info = adapter.layer(layer)
    weights = adapter.filters(info)
    _warn_nonfinite(weights, f"the weights of layer {info.name!r}")
    return weights


def prepare_image(model: Any, image: ImageLike) -> np.ndarray:
    """``image`` as the ``(C, H, W)`` float32 [0, 1] array the model will see (before its
    preprocessing): channels converted, resized to a fixed input size if the model has one."""
    adapter = _as_adapter(model)
    return load_image(image, adapter.spec.channels, adapter.spec.spatial)


def activations(
    model: Any, image: ImageLike, layers: LayerSpec | Sequence[LayerSpec] | None = None
) -> dict[str, np.ndarray]:
    """What each layer outputs for ``image``, from one forward pass.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one.
    image:
        numpy array (HW, HWC or CHW), PIL image, file path or file bytes.
    layers:
        A name, an index, or a list of them; None means every layer.

    Returns
    -------
    dict
        Layer name -> ``(C, H, W)`` for conv-like outputs, ``(N,)`` for dense ones.
    """
    adapter = _as_adapter(model)
    if layers is None:
        keys: list[LayerSpec] = [i.name for i in adapter.layers() if i.output_shape is not None]
    elif isinstance(layers, (str, int, np.integer, LayerInfo)):
        keys = [layers]
    else:
        keys = list(layers)
    names = [adapter.layer(k).name for k in keys]
    batch = prepare_image(adapter, image)[None]
    out = adapter.activations(batch, names)
    result = {name: out[name][0] for name in names}
    for name, arr in result.items():
        _warn_nonfinite(arr, f"the activations of layer {name!r}")
    return result


def _warn_nonfinite(array: np.ndarray, what: str) -> None:
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        warnings.warn(
            f"{what} contain {bad} NaN/Inf values; pictures mark them in magenta",
            RuntimeWarning,
            stacklevel=3,
        )


def render_filters(
    model: Any,
    layer: LayerSpec,
    *,
    input_channel: str | int = "auto",
    normalization: str = "symmetric",
    colormap: str = "gray",
    channels: Sequence[int] | slice | None = None,
    single: int | None = None,
) -> Rendered:
    """A picture of a layer's filters: the grid, or one kernel with ``single=index``.

    ``input_channel``: ``"auto"`` (RGB when the kernel sees 3 input channels, else the mean),
    ``"rgb"``, ``"mean"``, or one input channel's index.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the picture marks NaN itself
        weights = filters(model, layer)
    options = dict(input_channel=input_channel, normalization=normalization, colormap=colormap)
    if single is not None:
        _check_channel(single, weights.shape[0], "filter")
        return views.filter_single(weights, single, **options)
    return views.filter_grid(weights, channels=channels, **options)


def render_activations(
    model: Any,
    image: ImageLike,
    layer: LayerSpec,
    *,
    view: str = "auto",
    normalization: str = "layer",
    colormap: str = "viridis",
    channels: Sequence[int] | slice | None = None,
    channel: int | None = None,
    top_k: int = 5,
) -> Rendered:
    """A picture of what one layer outputs for ``image``.

    ``view``: ``"grid"`` (every channel, tiled), ``"sum"`` / ``"mean"`` (over channels, as in
    seed 000), ``"channel"`` (one channel, ``channel=index``), ``"dense"`` (a vector as a line
    plot plus a histogram of its positive values) or ``"probabilities"`` (the top-k classes
    with labels). ``"auto"`` picks grid for feature maps and dense/probabilities for vectors
    (probabilities for the model's output layer, which ``layer=-1`` names).
    """
    adapter = _as_adapter(model)
    info = adapter.layer(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acts = activations(adapter, image, info.name)[info.name]
    valid = ("auto", "grid", "sum", "mean", "channel", "dense", "probabilities")
    if view not in valid:
        raise ValueError(f"view must be one of {', '.join(valid)}; got {view!r}")
    if acts.ndim == 3 and acts.shape[1:] == (1, 1) and view in ("auto", "dense", "probabilities"):
        acts = acts[:, 0, 0]  # global pooling output: a vector in a (C, 1, 1) shape
    if acts.ndim == 1:
        if view == "auto":
            is_output = info.name == adapter.output_layer().name
            view = "probabilities" if is_output and acts.shape[0] > 1 else "dense"
        if view == "dense":
            return plots.dense_plot(acts)
        if view == "probabilities":
            return plots.topk_bars(to_probabilities(acts), adapter.spec.labels, k=top_k)
        raise ValueError(
            f"layer {info.name!r} outputs a vector of {acts.shape[0]} values; "
            "use view='dense' or view='probabilities'"
        )
    if acts.ndim != 3:
        raise ValueError(
            f"layer {info.name!r} outputs shape {acts.shape}; feature-map views need (C, H, W)"
        )
    options = dict(normalization=normalization, colormap=colormap)
    if view in ("grid", "auto"):
        return views.activation_grid(acts, channels=channels, **options)
    if view in ("sum", "mean"):
        return views.activation_sum(acts, reduce=view, **options)
    if view == "channel":
        if channel is None:
            raise ValueError("view='channel' needs channel=<index>")
        _check_channel(channel, acts.shape[0], "channel")
        return views.activation_single(acts, channel, **options)
    raise ValueError(
        f"layer {info.name!r} outputs feature maps {acts.shape}; "
        "use view='grid', 'sum', 'mean' or 'channel'"
    )


def top_classes(
    model: Any, image: ImageLike, k: int = 5, layer: LayerSpec = -1
) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes for ``image``: ``[(index, label, probability), ...]``.

    Seed 004's ``net.blobs['prob']`` plot as numbers. ``layer=-1`` is the model's output layer
    (:meth:`Adapter.output_layer`), whatever is listed after it. Its logits are turned into
    probabilities (softmax) for display only; a layer that already outputs probabilities is
    taken as it is. Labels come from ``adapt(..., labels=...)`` (the bundled models carry
    theirs); without labels the index is used as the label.
    """
    adapter = _as_adapter(model)
    info = adapter.layer(layer)
    vector = activations(adapter, image, info.name)[info.name]
    if vector.ndim == 3 and vector.shape[1:] == (1, 1):
        vector = vector[:, 0, 0]
    if vector.ndim != 1:
        raise ValueError(
            f"layer {info.name!r} outputs shape {vector.shape}; class probabilities need a "
            "vector (the model's output layer)"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= vector.size:
        raise ValueError(f"k must be an int in 1..{vector.size}, got {k!r}")
    probs = to_probabilities(vector)
    order = np.argsort(-np.nan_to_num(probs, nan=-np.inf), kind="stable")[: int(k)]
    labels = adapter.spec.labels
    return [
        (int(i), labels[i] if labels is not None and i < len(labels) else str(int(i)),
         float(probs[i]))
        for i in order
    ]


def to_probabilities(vector: np.ndarray) -> np.ndarray:
    """Softmax for display, unless the vector already is a probability distribution."""
    v = np.asarray(vector, np.float64)
    finite = np.isfinite(v).all()
    if finite and v.min() >= 0 and abs(v.sum() - 1.0) < 1e-3:
        return v.astype(np.float32)
    e = np.exp(v - np.nanmax(v))
    return (e / np.nansum(e)).astype(np.float32)


def _check_channel(index: int, count: int, what: str) -> None:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{what} index must be an int, got {type(index).__name__}")
    if not 0 <= int(index) < count:
        raise ValueError(f"{what} {int(index)} is out of range: valid 0..{count - 1}")
