"""Feature visualization: images that maximally excite a channel, a neuron, a layer or a class.

    import cnn_widgets as cw
    model = cw.zoo.load("efficientnet_lite0")
    images = cw.feature_viz(model, "_blocks.6._relu0", channels=range(16))   # (16, 128, 128, 3)

Two recipes: ``"lucid"`` (the default; Fourier parameterization, colour decorrelation, random
views, dead-ReLU warm-up: what makes the pictures interpretable) and ``"naive"`` (plain pixel
ascent as in the Keras example, for comparison). All requested images are optimized together
in batches, and the forward pass stops at the deepest target layer.

Objectives compose like Lucent's::

    from cnn_widgets.featureviz import channel, neuron
    cw.feature_viz(model, objective=channel("_blocks.6._relu0", 3) - 0.5 * neuron("_conv_head", 7))

Several different images of one channel (``objective="diversity"``), a start from your own
image (DeepDream: ``objective="layer", image=photo``), and the optimization as frames for an
animation (``record_every=4`` and :func:`cnn_widgets.save_animation`)::

    images = cw.feature_viz(model, "_blocks.6._relu0", [5] * 4, objective="diversity")
    dream, frames = cw.feature_viz(model, "_blocks.4._relu0", objective="layer",
                                   image=cw.zoo.sample_image("chelsea"), record_every=4)
    cw.save_animation(frames, "dream.gif")
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import LayerInfo, LayerKey
from ..images import ImageLike, load_image
from .allocator import settle_thresholds, tune_allocator
from .loop import DEFAULT_MEMORY_BUDGET, MAX_STEPS_ENV, StopFlag, optimize, parse_size
from .objectives import (
    OBJECTIVES,
    Objective,
    channel,
    class_logit,
    deepdream,
    direction,
    diversity,
    layer_max,
    layer_mean,
    neuron,
    parse_objective,
)
from .recipes import RECIPES, make_params
from .spec import LucidParams, NaiveParams

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "MAX_STEPS_ENV",
    "OBJECTIVES",
    "RECIPES",
    "LucidParams",
    "NaiveParams",
    "Objective",
    "channel",
    "class_logit",
    "deepdream",
    "direction",
    "diversity",
    "feature_viz",
    "layer_max",
    "layer_mean",
    "neuron",
    "settle_thresholds",
    "tune_allocator",
]

DEFAULT_DIVERSITY_WEIGHT = 0.5
"""Weight of the diversity penalty for ``objective="diversity"``, in units of the image's
channel objective (its current value, held constant). 0.5 on LeNet's relu2: the styles' mean
similarity falls from 0.99 to about 0.15 and each image keeps about 80 % of the activation
of the plain objective; at 1 the images get noisy."""

AUTO_RIVAL_WEIGHT = 1.0
"""Past the first layers ``objective="auto"`` is ``channel(l, c) - AUTO_RIVAL_WEIGHT *
layer_max(l, exclude=c)``: the channel's mean minus a soft maximum of the *other* channels'
means, which at weight 1 is (softly) the channel's margin over its strongest rival. The plain
channel mean is often won by an image that excites a whole family of channels, some more than
the target; the rival term takes the leader down with it, so the target becomes the layer's
most active channel (its selectivity). The soft maximum leaves ``c`` out, so the whole rival
push falls on the rivals and ``c`` keeps its full gradient at any weight (with ``c`` inside
it, once ``c`` led, most of the push fell on ``c`` itself). Chosen on EfficientNet-Lite0
``_blocks.6._relu1`` by ``benchmarks/featureviz_selectivity.py`` over five seeds: about half a
channel more per 64-channel page than ``0.7 * layer_max(l)`` with ``c`` inside, the same
activation; weights 2 and 4 did no better (see the README's feature-visualization section)."""

AUTO_CONTRAST = 0.35
"""The ``contrast`` of the gray pull ``objective="auto"`` uses near a linear first layer: the
kernel's strongest pixel lands at 0.15 or 0.85, well inside the sigmoid."""


def feature_viz(
    model: Any,
    layer: LayerKey | LayerInfo | None = None,
    channels: int | Iterable[int] | None = None,
    *,
    objective: str | Objective | Sequence[Objective] = "auto",
    steps: int = 256,
    size: int | tuple[int, int] | None = None,
    recipe: str = "lucid",
    seed: int = 0,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    callback: Callable[[int, np.ndarray, np.ndarray], bool | None] | None = None,
    callback_every: int = 1,
    stop: StopFlag | None = None,
    image: ImageLike | None = None,
    record_every: int | None = None,
    diversity_weight: float = DEFAULT_DIVERSITY_WEIGHT,
    **recipe_params: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Synthesize the images that maximize channels (or neurons, a layer, classes) of a model.

    Parameters
    ----------
    model:
        A torch ``nn.Module``, a Keras model, or one wrapped by :func:`cnn_widgets.adapt`
        (whose ``preprocess`` is applied to every image, as tensor ops).
    layer:
        Layer name or index. For ``objective="class"`` it defaults to the model's last layer.
    channels:
        One index or several; one image per index. ``None``: every channel of the layer
        (every class for ``"class"``).
    objective:
        ``"auto"`` (the default: ``"channel"`` minus :data:`AUTO_RIVAL_WEIGHT` times
        :func:`layer_max` of the other channels, so that the channel becomes its layer's most
        active one; except on the first layers, up to the second convolution, where a
        channel's mean is maximized by a flat saturated image because the layer is (nearly)
        linear: there the ``"neuron"`` objective, without random views, with a pull towards gray
        (``contrast``), which draws the unit's kernel as the pixels it wants), ``"channel"``
        (mean of the channel), ``"neuron"`` (the channel at the centre of the layer's
        output), ``"layer"`` (DeepDream: mean of squares of the whole layer, one image unless
        ``channels`` is None), ``"class"`` (the class logit, before
        any softmax), ``"diversity"`` (``"channel"`` minus ``diversity_weight`` times the
        similarity of the styles of the images of the same channel: ``channels=[c] * n``
        gives n different images of channel c); or an :class:`Objective` (one image;
        ``layer``/``channels`` must be None), such as :func:`direction`, or a list of them
        (one image each).
    steps:
        Optimization steps (the environment variable ``CNN_WIDGETS_MAX_STEPS`` caps them).
        0 is allowed with ``image``: the image comes back as given.
    size:
        Image size, an int or ``(height, width)``. Default: ``image``'s own size, else 128,
        or the model's own input size when that is smaller (28 for an MNIST model), or when
        the layers cannot be reached at 128 (a model with dense layers before the target).
    recipe:
        ``"lucid"`` or ``"naive"``; their settings are keyword arguments (``lr=``,
        ``decay_power=``, ``jitter=``, ``warmup_steps=`` ..., see :class:`LucidParams` and
        :class:`NaiveParams`).
    seed:
        Seeds each image's start and random views. The same seed gives the same images on the
        same machine and framework, whatever the batching.
    batch_size:
        Images per batch; default: as many as fit ``memory_budget``.
    memory_budget:
        Bytes of activations per batch, estimated from the layer sizes (default
        :data:`DEFAULT_MEMORY_BUDGET`; a torch model on CPU :data:`.torch_impl.CPU_MEMORY_BUDGET`,
        Keras on one CPU thread :data:`.keras_impl.ONE_THREAD_MEMORY_BUDGET`, measured there).
    callback:
        ``callback(step, images, values)`` after every ``callback_every`` steps and after the
        last: ``step`` counts the steps done, ``images`` is ``(n, H, W, C)`` in [0, 1],
        ``values`` the ``(n,)`` objective values of that step (higher is better). Returning
        ``False`` stops the run after this step. A callback with an attribute
        ``wants_images = False`` receives ``images=None``: the pictures are not decoded for
        it (cheaper when only the values are wanted, a loss curve say).
    callback_every:
        Steps between callbacks.
    stop:
        Anything with ``is_set()`` (a ``threading.Event``), checked before every step; when
        set, the run ends and the images so far are returned.
    image:
        Start every image from this one (anything :func:`cnn_widgets.prepare_image` takes;
        scaled and centre-cropped to ``size`` when that is given) instead of random noise.
    record_every:
        Also return the images every this many steps, and the final ones.
    diversity_weight:
        For ``objective="diversity"``: the penalty's weight relative to the image's channel
        objective at each step (so one setting suits layers of any scale); 0: no penalty.
    **recipe_params:
        Settings of the recipe; an unknown name raises a TypeError that lists the valid ones.

    Returns
    -------
    numpy.ndarray, or (numpy.ndarray, numpy.ndarray) with ``record_every``
        ``(n, H, W, C)`` float32 in [0, 1]; ``C`` is the model's input channels (1 for a
        grayscale model). Pixel values as the model saw them: no contrast stretching. With
        ``record_every``, also the frames ``(T, n, H, W, C)``, in step order, the last equal
        to the images.

    Raises
    ------
    ValueError
        Unknown layer, objective or recipe; channel or class out of range; ``"neuron"`` on a
        layer without a spatial output; ``steps < 1``; an image size the model cannot run at
        (the message gives the smallest size that works).

    Notes
    -----
    The model is left exactly as it was (weights, train/eval mode, ``requires_grad`` /
    ``trainable`` flags, ``.grad`` fields, hooks), also when the run is stopped or a callback
    raises. Only the image receives gradients.
    """
    adapter = model if isinstance(model, Adapter) else adapt(model)
    objectives, auto = _objectives(adapter, layer, channels, objective, diversity_weight)
    if recipe == "lucid":  # what "auto" chose, unless the caller set it
        recipe_params = {**auto, **recipe_params}
    params = make_params(recipe, recipe_params)
    start = None
    if image is not None:
        hw = parse_size(size)
        start = np.clip(load_image(image, adapter.spec.channels, hw), 0.0, 1.0)
        size = start.shape[1:] if hw is None else hw
    if record_every is not None:
        record_every = _positive_int(record_every, "record_every")
    if steps == 0 and start is not None and not isinstance(steps, bool):
        images = np.repeat(start.transpose(1, 2, 0)[None], len(objectives), axis=0)
        return images if record_every is None else (images, images[None].copy())
    steps = _positive_int(steps, "steps")
    callback_every = _positive_int(callback_every, "callback_every")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    if memory_budget is not None and (
        not isinstance(memory_budget, numbers.Real) or memory_budget <= 0
    ):
        raise ValueError(f"memory_budget must be a number of bytes > 0, got {memory_budget!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError("stop must have an is_set() method, such as a threading.Event")
    frames: list[np.ndarray] | None = None if record_every is None else []
    images = optimize(
        adapter,
        objectives,
        recipe=recipe,
        params=params,
        size=size,
        steps=steps,
        seed=int(seed),
        batch_size=batch_size,
        memory_budget=memory_budget,
        callback=callback,
        callback_every=callback_every,
        stop=stop,
        start_image=start,
        frames=frames,
        record_every=record_every or 1,
    )
    return images if frames is None else (images, np.stack(frames))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _objectives(
    adapter: Adapter,
    layer: LayerKey | LayerInfo | None,
    channels: int | Iterable[int] | None,
    objective: str | Objective | Sequence[Objective],
    diversity_weight: float,
) -> tuple[list[Objective], dict[str, Any]]:
    """One :class:`Objective` per image, and the lucid settings ``"auto"`` chose."""
    if isinstance(objective, Objective) or (
        not isinstance(objective, str) and isinstance(objective, Sequence)
    ):
        listed = [objective] if isinstance(objective, Objective) else list(objective)
        if not listed or not all(isinstance(o, Objective) for o in listed):
            raise TypeError("objective must be a name, an Objective or a list of Objectives")
        if layer is not None or channels is not None:
            raise ValueError(
                "an Objective names its own layers and channels: leave layer and channels "
                "as None when passing one"
            )
        return listed, {}
    kind = parse_objective(objective)
    if isinstance(layer, LayerInfo):
        layer = layer.name
    if layer is None:
        if kind != "class":
            raise ValueError(f"objective={kind!r} needs a layer (a name or an index)")
        info = None
    else:
        info = adapter.layer(layer)
        layer = info.name
    if kind == "layer":
        if channels is not None:
            raise ValueError(
                "objective='layer' (DeepDream) uses the whole layer, so channels must be None"
            )
        return [deepdream(layer)], {}
    auto: dict[str, Any] = {}
    rival = 0.0
    if kind == "auto":
        kind = "channel"
        if info is not None and info.is_spatial and info.index < _second_conv(adapter):
            kind = "neuron"
            auto = {"transforms": False, "contrast": AUTO_CONTRAST}
        elif info is None or not info.output_shape or info.output_shape[0] > 1:
            rival = AUTO_RIVAL_WEIGHT  # a layer of one unit has no rival to leave in
    indices = _channel_list(adapter, info, channels, kind)
    if rival:
        return [channel(layer, c) - rival * layer_max(layer, exclude=c) for c in indices], auto
    if kind == "channel":
        return [channel(layer, c) for c in indices], auto
    if kind == "neuron":
        return [neuron(layer, c) for c in indices], auto
    if kind == "diversity":
        if not isinstance(diversity_weight, numbers.Real) or not diversity_weight >= 0:
            raise ValueError(f"diversity_weight must be a number >= 0, got {diversity_weight!r}")
        weight = float(diversity_weight)
        return [channel(layer, c) + weight * diversity(layer, c) for c in indices], {}
    return [class_logit(c, layer) for c in indices], {}


def _second_conv(adapter: Adapter) -> int:
    """Forward index of the second convolution with a kernel wider than 1x1 (everything
    before it is the linear first convolution, its normalization, activation and pooling),
    or past the last layer when there is no second one."""
    found = 0
    for info in adapter.conv_layers():
        if info.ran and max(adapter.filters(info.name).shape[2:], default=1) > 1:
            found += 1
            if found == 2:
                return info.index
    return len(adapter.layers())


def _channel_list(
    adapter: Adapter,
    info: LayerInfo | None,
    channels: int | Iterable[int] | None,
    kind: str,
) -> list[int]:
    if channels is None:
        if info is None:  # class objective on the model's output layer
            info = adapter.output_layer()
        if not info.output_shape:
            raise ValueError(f"layer {info.name!r} has no known output shape")
        return list(range(info.output_shape[0]))
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        return [int(channels)]
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Iterable):
        raise TypeError(f"channels must be an int or ints, got {type(channels).__name__}")
    result = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise TypeError(f"channels must be ints, got {type(c).__name__} {c!r}")
        result.append(int(c))
    if not result:
        raise ValueError("channels is empty: ask for at least one channel")
    return result
