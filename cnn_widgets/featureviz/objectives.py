"""What feature visualization maximizes: framework-neutral objective specs.

An :class:`Objective` is a weighted sum of :class:`Term` s, each naming a layer and what to
read from it. Objectives combine like numbers (``channel("conv2", 3) - 0.5 * neuron("conv1",
2)``), describe *one* image, and never touch a framework: the backends turn the resolved
terms into tensor ops.

The kinds of term:

``channel``
    Mean of one channel over every spatial position (for a dense layer: that unit).
``neuron``
    One channel at one spatial position, by default the centre of the layer's output.
``layer``
    Mean of the squared activations of the whole layer ("DeepDream").
``layer_mean``
    The mean of the layer's channel means (its mean activation).
``layer_max``
    A soft maximum of the layer's channel means: ``T * logsumexp(means / T)``, the
    temperature ``T`` being 1/20 of the largest ``|mean|`` (held constant in the gradient),
    over every channel or every channel but one (``exclude``). Its gradient spreads over the
    channels by their softmax weights, so ``channel(l, c) - w * layer_max(l, exclude=c)``
    raises channel ``c`` and lowers whichever rival is ahead: ``objective="auto"`` uses it to
    make ``c`` the layer's most active channel.
``class``
    A class logit, always *before* a softmax: when the model ends in one, its input is used.
``direction``
    A weighted sum of the channel means of one layer (Lucid's ``direction``: the mean over
    positions of the activation vector dotted with a weight vector, which is the same
    number); it resolves into one ``channel`` term per nonzero weight.
``diversity``
    Lucid's diversity penalty: minus the mean cosine similarity between this image's Gram
    matrix (of the layer's channels minus their spatial means, over positions) and those of
    the other images of its batch in the same group, times the magnitude of the image's other
    terms (held constant, so that one weight suits layers of any scale). It couples images,
    so a request with it runs as one batch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .. import choices
from ..backends.base import LayerInfo, LayerKey

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ResolvedTerm",
    "Term",
    "channel",
    "class_logit",
    "deepdream",
    "direction",
    "diversity",
    "layer_max",
    "layer_mean",
    "neuron",
]

LAYER_MAX_TEMPERATURE = 1.0 / 20.0
"""The temperature of ``layer_max`` as a fraction of the largest ``|channel mean|`` of the
layer: a channel 1/20 of that below the leader gets ``1/e`` of its weight, so the soft max
follows the leader and the few channels close to it, not the whole layer."""

OBJECTIVES = choices.values(choices.FV_OBJECTIVES)
"""The objective names :func:`cnn_widgets.feature_viz` accepts as strings."""

# "deepdream" is Lucent's name for the layer objective; accept it as a synonym.
_ALIASES = {"deepdream": "layer"}


@dataclass(frozen=True)
class Term:
    """One weighted piece of an objective, before the layer is looked up.

    Attributes
    ----------
    kind:
        ``"channel"``, ``"neuron"``, ``"layer"``, ``"layer_mean"``, ``"layer_max"``,
        ``"class"``, ``"direction"`` or ``"diversity"``.
    layer:
        Layer name or index; ``None`` for ``class`` means the model's last layer.
    index:
        Channel (or class) index; ``None`` for ``layer``; for ``layer_max`` the channel left
        out, or ``None``.
    y, x:
        Position of a ``neuron`` in the layer's output; ``None`` means the centre.
    weight:
        Factor of this term in the sum.
    vector:
        The channel weights of a ``direction`` term; ``None`` otherwise.
    """

    kind: str
    layer: LayerKey | None
    index: int | None = None
    y: int | None = None
    x: int | None = None
    weight: float = 1.0
    vector: tuple[float, ...] | None = None

    def scaled(self, factor: float) -> Term:
        return dataclasses.replace(self, weight=self.weight * factor)

    def __str__(self) -> str:
        if self.kind == "layer":
            text = f"deepdream({self.layer!r})"
        elif self.kind == "layer_max" and self.index is not None:
            text = f"layer_max({self.layer!r}, exclude={self.index})"
        elif self.kind in ("layer_mean", "layer_max"):
            text = f"{self.kind}({self.layer!r})"
        elif self.kind == "direction":
            text = f"direction({self.layer!r}, <{len(self.vector or ())} weights>)"
        elif self.kind == "diversity":
            text = f"diversity({self.layer!r}, group={self.index})"
        elif self.kind == "class":
            where = "" if self.layer is None else f", layer={self.layer!r}"
            text = f"class_logit({self.index}{where})"
        elif self.kind == "neuron":
            pos = "".join(
                f", {name}={value}"
                for name, value in (("x", self.x), ("y", self.y))
                if value is not None
            )
            text = f"neuron({self.layer!r}, {self.index}{pos})"
        else:
            text = f"channel({self.layer!r}, {self.index})"
        if self.weight == 1.0:
            return text
        return f"-{text}" if self.weight == -1.0 else f"{self.weight:g} * {text}"


class Objective:
    """A weighted sum of terms that one image maximizes.

    Build one with :func:`channel`, :func:`neuron`, :func:`deepdream` or :func:`class_logit`
    and combine with ``+``, ``-``, unary ``-``, and ``*`` / ``/`` by a number. ``sum()`` of
    objectives works too (it starts from ``0``).
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms: tuple[Term, ...] = tuple(terms)
        if not self.terms:
            raise ValueError("an objective needs at least one term")

    def __add__(self, other: object) -> Objective:
        if isinstance(other, Objective):
            return Objective(self.terms + other.terms)
        if _is_zero(other):  # sum([...]) starts from 0
            return self
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: object) -> Objective:
        if isinstance(other, Objective):
            return self + (-other)
        if _is_zero(other):
            return self
        return NotImplemented

    def __rsub__(self, other: object) -> Objective:
        if _is_zero(other):
            return -self
        return NotImplemented

    def __mul__(self, factor: object) -> Objective:
        # Only numbers: a product of two objectives has no useful gradient story here.
        if isinstance(factor, numbers.Real) and not isinstance(factor, bool):
            value = float(factor)
            if not math.isfinite(value):
                raise ValueError(f"an objective weight must be finite, got {value}")
            return Objective(term.scaled(value) for term in self.terms)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, divisor: object) -> Objective:
        if isinstance(divisor, numbers.Real) and not isinstance(divisor, bool):
            if float(divisor) == 0.0:
                raise ZeroDivisionError("objective divided by zero")
            return self * (1.0 / float(divisor))
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Objective) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)

    def __repr__(self) -> str:
        text = " + ".join(str(term) for term in self.terms)
        return text.replace(" + -", " - ")


def _is_zero(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0


def _check_index(index: object, what: str) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(index).__name__}")
    return int(index)


def channel(layer: LayerKey, index: int) -> Objective:
    """Mean activation of channel ``index`` of ``layer`` (a dense layer: unit ``index``)."""
    return Objective([Term("channel", layer, _check_index(index, "channel"))])


def neuron(layer: LayerKey, index: int, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of channel ``index`` of ``layer`` at one position, by default the centre
    (``H // 2, W // 2`` of the layer's output for the image size being optimized)."""
    x = None if x is None else _check_index(x, "x")
    y = None if y is None else _check_index(y, "y")
    return Objective([Term("neuron", layer, _check_index(index, "channel"), y, x)])


def deepdream(layer: LayerKey) -> Objective:
    """Mean of the squared activations of the whole layer (the ``"layer"`` objective)."""
    return Objective([Term("layer", layer)])


def layer_mean(layer: LayerKey) -> Objective:
    """The mean of ``layer``'s channel means: its mean activation over channels and
    positions (``channel(l, c) - layer_mean(l)`` rewards ``c`` above the layer's average)."""
    return Objective([Term("layer_mean", layer)])


def layer_max(layer: LayerKey, exclude: int | None = None) -> Objective:
    """A soft maximum of ``layer``'s channel means (spatial means; for a dense layer, its
    units): ``T * logsumexp(means / T)`` with ``T`` = :data:`LAYER_MAX_TEMPERATURE` times
    the largest ``|mean|`` of the channels it covers, held constant. At least the largest mean
    and at most ``T * log(C)`` above it; its gradient is the softmax of ``means / T``, positive
    for every channel it covers and summing to 1.

    ``exclude``: a channel left out (every other one is covered). Subtract
    ``layer_max(l, exclude=c)`` from ``channel(l, c)`` to make ``c`` the layer's most active
    channel: the difference is (softly) ``c``'s margin over its strongest rival, and all of
    the rival term's push falls on the rivals. Without ``exclude`` the soft maximum includes
    ``c``, and once ``c`` leads, most of its gradient pushes ``c`` itself down."""
    if exclude is not None:
        exclude = _check_index(exclude, "exclude")
    return Objective([Term("layer_max", layer, exclude)])


def direction(layer: LayerKey, weights: Iterable[float]) -> Objective:
    """A weighted combination of ``layer``'s channels: ``sum(w[c] * channel_mean[c])``.

    ``weights`` has one finite number per channel of the layer (checked when the layer's
    size is known), e.g. a class's row of the classifier's weight matrix to visualize what
    the features before it look for in that class.
    """
    try:
        vector = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(
            f"direction weights must be numbers (one per channel), got {type(weights).__name__}"
        ) from None
    if np.asarray(weights).ndim != 1 or vector.size == 0:
        raise ValueError(
            f"direction weights must be a 1-D sequence with one number per channel, got shape "
            f"{np.asarray(weights).shape}"
        )
    if not np.all(np.isfinite(vector)):
        raise ValueError("direction weights must be finite numbers")
    if not np.any(vector):
        raise ValueError("direction weights are all zero: the objective would be constant")
    return Objective([Term("direction", layer, vector=tuple(float(v) for v in vector))])


def diversity(layer: LayerKey, group: int = 0) -> Objective:
    """Lucid's diversity term on ``layer``: the mean cosine similarity of this image's Gram
    matrix with those of the other images of the same ``group``, which ``feature_viz``
    optimizes as one batch, times the magnitude of the image's other terms. Add it with a
    weight to another objective (``channel(l, 3) + diversity(l)``; it counts negatively) to
    make the images of a group differ in style."""
    return Objective([Term("diversity", layer, _check_index(group, "group"), weight=-1.0)])


def class_logit(index: int, layer: LayerKey | None = None) -> Objective:
    """Logit of class ``index``: the value *before* any softmax.

    ``layer`` defaults to the model's last layer. When that layer is a softmax (torch
    ``nn.Softmax`` / ``nn.LogSoftmax``; Keras ``Softmax``, ``Activation("softmax")``, or a
    ``Dense`` with ``activation="softmax"``) its input, or its pre-activation, is used, because
    maximizing a probability mostly minimizes the other classes.
    """
    return Objective([Term("class", layer, _check_index(index, "class"))])


def parse_objective(name: str) -> str:
    """Normalize a string objective name, or raise a ValueError listing the valid ones."""
    if not isinstance(name, str):
        raise TypeError(
            f"objective must be a name ({', '.join(OBJECTIVES)}) or an Objective, got "
            f"{type(name).__name__}"
        )
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {name!r}; valid: {', '.join(repr(o) for o in OBJECTIVES)}, "
            "or an Objective such as cnn_widgets.featureviz.channel('layer', 0)"
        )
    return key


# -- resolution against a model ------------------------------------------------------------
@dataclass(frozen=True)
class Capture:
    """A tensor the truncated forward pass must record.

    Attributes
    ----------
    layer:
        The layer's name in the adapter.
    logits:
        True for class objectives: the backend records the pre-softmax value of this layer
        (its input when it is a softmax layer, its pre-activation when it has a softmax
        activation, else its output).
    order:
        The layer's position in forward order (:attr:`LayerInfo.index`).
    """

    layer: str
    logits: bool
    order: int


@dataclass(frozen=True)
class ResolvedTerm:
    """A term bound to a capture, channel checked and neuron position filled in.

    ``channel`` is -1 for ``layer`` and ``layer_mean`` terms, the channel left out (or -1)
    for ``layer_max`` and the group for ``diversity``; ``y``/``x`` are -1 except for
    ``neuron``.
    """

    kind: str  # "channel" | "neuron" | "layer" | "layer_mean" | "layer_max" | "diversity"
    capture: int
    channel: int
    y: int
    x: int
    weight: float


def capture_for(term: Term, info: LayerInfo) -> Capture:
    return Capture(info.name, term.kind == "class", info.index)


def resolve_terms(
    term: Term, capture_index: int, info: LayerInfo, shape: tuple[int, ...]
) -> tuple[ResolvedTerm, ...]:
    """Check ``term`` against the layer's output ``shape`` (channels-first, no batch, at the
    image size being optimized) and bind it to its capture: one resolved term, or one per
    nonzero weight of a ``direction``.

    Raises
    ------
    ValueError
        Channel or class out of range, a direction whose length is not the layer's channel
        count, a neuron on a layer without a spatial output, or a neuron position outside
        the output.
    """
    if term.kind == "direction":
        count = shape[0] if shape else 1
        vector = term.vector or ()
        if len(vector) != count:
            raise ValueError(
                f"direction on layer {info.name!r} needs {count} weights (one per channel), "
                f"got {len(vector)}"
            )
        return tuple(
            ResolvedTerm("channel", capture_index, c, -1, -1, term.weight * w)
            for c, w in enumerate(vector)
            if w != 0.0
        )
    return (_resolve_one(term, capture_index, info, shape),)


def _resolve_one(
    term: Term, capture_index: int, info: LayerInfo, shape: tuple[int, ...]
) -> ResolvedTerm:
    if term.kind in ("layer", "layer_mean") or (term.kind == "layer_max" and term.index is None):
        return ResolvedTerm(term.kind, capture_index, -1, -1, -1, term.weight)
    if term.kind == "diversity":
        if len(shape) != 3:
            raise ValueError(
                f"the diversity objective needs a layer with a spatial output (C, H, W), but "
                f"layer {info.name!r} ({info.type}) outputs shape {tuple(shape)}"
            )
        return ResolvedTerm("diversity", capture_index, int(term.index or 0), -1, -1, term.weight)
    count = shape[0] if shape else 1
    index = int(term.index if term.index is not None else 0)
    if not 0 <= index < count:
        if term.kind == "class":
            raise ValueError(
                f"class {index} is out of range: layer {info.name!r} gives {count} class "
                f"logits (valid 0..{count - 1})"
            )
        what = "excluded channel" if term.kind == "layer_max" else "channel"
        raise ValueError(
            f"{what} {index} is out of range for layer {info.name!r}, which has {count} "
            f"channels (valid 0..{count - 1})"
        )
    if term.kind in ("channel", "class", "layer_max"):
        kind = "layer_max" if term.kind == "layer_max" else "channel"
        if kind == "layer_max" and count < 2:
            raise ValueError(
                f"layer_max({info.name!r}, exclude={index}) covers no channel: the layer has "
                f"{count} channel (exclude needs at least 2)"
            )
        return ResolvedTerm(kind, capture_index, index, -1, -1, term.weight)
    # neuron
    if len(shape) != 3:
        raise ValueError(
            f"objective 'neuron' needs a layer with a spatial output (C, H, W), but layer "
            f"{info.name!r} ({info.type}) outputs shape {tuple(shape)}; use objective='channel' "
            "for a unit of a dense layer"
        )
    height, width = shape[1], shape[2]
    y = height // 2 if term.y is None else term.y
    x = width // 2 if term.x is None else term.x
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(
            f"neuron position (y={y}, x={x}) is outside layer {info.name!r}'s output of "
            f"{height}x{width} at this image size (valid y 0..{height - 1}, x 0..{width - 1})"
        )
    return ResolvedTerm("neuron", capture_index, index, y, x, term.weight)
