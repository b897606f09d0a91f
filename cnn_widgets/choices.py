"""Every choice list of the product, written once: value and label.

The functions validate against these lists, the widgets send them to the front end in one
``choices`` trait (the browser builds its selects from it, never from lists of its own), and
the command line offers the same values. A new normalization, colormap, objective or view is
one line here plus the code that implements it.

Nothing heavy is imported here: this module is read by every layer of the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ACTIVATION_MODES",
    "ACTIVATION_VIEWS",
    "ATTRIBUTION_METHODS",
    "COLORMAPS",
    "FV_OBJECTIVES",
    "FV_RECIPES",
    "INPUT_CHANNEL_WORDS",
    "KERNEL_MODE",
    "LIMITS",
    "LISTS",
    "NORMALIZATIONS",
    "RAW",
    "VECTOR_MODES",
    "VIEWS",
    "ZOOMS",
    "check",
    "for_frontend",
    "values",
    "view_accepts",
]

Choices = tuple[tuple[str, str], ...]
"""``(value, label)`` pairs, in the order a menu lists them."""

NORMALIZATIONS: Choices = (
    ("layer", "layer (one scale)"),
    ("channel", "per channel"),
    ("symmetric", "symmetric (zero = middle)"),
    ("std", "std (mean ± 5σ)"),
)
"""How values become grey levels: one scale for the layer, each channel stretched on its own,
zero in the middle (signed weights), or the Keras ``deprocess_image`` recipe. The functions
also take ``"none"`` (values already in [0, 1], drawn as they are)."""

RAW = "none"
"""The normalization of values that are already in [0, 1] (functions only, not the widget)."""

COLORMAPS: Choices = (
    ("gray", "gray"), ("viridis", "viridis"), ("diverging", "diverging (blue–white–red)")
)

KERNEL_MODE = "kernel x image"
"""The activation mode that shows one filter applied to its layer's input, input channel by
input channel (:func:`cnn_widgets.filter_responses`)."""

ACTIVATION_MODES: Choices = (
    ("grid", "grid of channels"),
    ("sum", "sum over channels"),
    ("mean", "mean over channels"),
    (KERNEL_MODE, "kernel × image (selected filter)"),
)

ACTIVATION_VIEWS: Choices = (
    ("auto", "auto: grid, or top-k / values for a vector"),
    ("grid", "grid of channels"),
    ("sum", "sum over channels"),
    ("mean", "mean over channels"),
    ("channel", "one channel"),
    ("dense", "values + histogram"),
    ("probabilities", "top-k probabilities"),
)
"""How :func:`cnn_widgets.render_activations` (and the command line) draws a layer's output."""

VECTOR_MODES: Choices = (
    ("auto", "auto"), ("dense", "values + histogram"), ("probabilities", "top-k probabilities")
)
"""How a layer that outputs a vector is drawn (``auto``: probabilities for the output)."""

INPUT_CHANNEL_WORDS: Choices = (("auto", "auto"), ("rgb", "RGB"), ("mean", "mean"))
"""Which input channel of each kernel the filters view draws; an index is valid too."""

FV_OBJECTIVES: Choices = (
    ("auto", "auto (channel; neuron near the input)"),
    ("channel", "channel (mean)"),
    ("neuron", "neuron (centre)"),
    ("layer", "layer (DeepDream)"),
    ("class", "class logit"),
    ("diversity", "diversity (channel, several styles)"),
)

FV_RECIPES: Choices = (("lucid", "lucid (interpretable)"), ("naive", "naive (pixel ascent)"))

VIEWS: Choices = (
    ("filters", "Filters"),
    ("activations", "Feature maps"),
    ("featureviz", "Feature viz"),
    ("attribution", "Attribution"),
    ("table", "Layer table"),
    ("monitor", "Training"),
    ("atlas", "Atlas"),
)
"""The widget views, in the order of the view switch."""

ATTRIBUTION_METHODS: Choices = (
    ("gradcam", "Grad-CAM"),
    ("gradcam++", "Grad-CAM++"),
    ("layercam", "LayerCAM"),
    ("hirescam", "HiResCAM"),
    ("scorecam", "Score-CAM"),
    ("saliency", "saliency (gradient)"),
    ("smoothgrad", "SmoothGrad"),
    ("integrated_gradients", "integrated gradients"),
    ("guided_backprop", "guided backprop"),
    ("guided_gradcam", "guided Grad-CAM"),
)
"""The attribution methods (:func:`cnn_widgets.attribution`), CAM methods first."""

ZOOMS: Choices = (("fit", "fit"), ("1", "1×"), ("2", "2×"), ("4", "4×"), ("8", "8×"))
"""Display enlargement of the pictures in the browser (a browser-only setting)."""

LIMITS: dict[str, tuple[int, int]] = {
    "page_size": (1, 4096),
    "top_k": (1, 100),
    "fv_steps": (1, 100_000),
    "fv_size": (8, 1024),
    "upload_bytes": (1, 25 * 2**20),
}
"""Inclusive ranges of the numeric settings (``fv_size`` 0 means automatic)."""

LISTS: dict[str, Choices] = {
    "normalization": NORMALIZATIONS,
    "colormap": COLORMAPS,
    "activation_mode": ACTIVATION_MODES,
    "vector_mode": VECTOR_MODES,
    "input_channel": INPUT_CHANNEL_WORDS,
    "fv_objective": FV_OBJECTIVES,
    "fv_recipe": FV_RECIPES,
    "attr_method": ATTRIBUTION_METHODS,
    "view": VIEWS,
    "zoom": ZOOMS,
}
"""Each list under the name of the setting (the widget trait) it is the choice of."""


def values(choices: Choices) -> tuple[str, ...]:
    """The values of a choice list, in order."""
    return tuple(value for value, _ in choices)


def check(choices: Choices, value: Any, what: str) -> str:
    """``value`` when it is one of ``choices``; else a ValueError that names the valid ones.

    Parameters
    ----------
    choices:
        One of the lists above.
    value:
        What the caller passed.
    what:
        The setting's name for the message (``"normalization"``, ``"objective"`` ...).
    """
    valid = values(choices)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"{what} must be one of {', '.join(repr(v) for v in valid)}; got {value!r}"
        )
    return value


def for_frontend(views: Iterable[str] | None = None) -> dict[str, Any]:
    """The ``choices`` trait: ``{name: [[value, label], ...], "limits": {name: [lo, hi]}}``.

    Parameters
    ----------
    views:
        The views a widget offers; the ``view`` list is narrowed to them (in their order).
    """
    lists = {name: [list(pair) for pair in choices] for name, choices in LISTS.items()}
    if views is not None:
        labels = dict(VIEWS)
        lists["view"] = [[view, labels.get(view, view)] for view in views]
    return {**lists, "limits": {name: list(bounds) for name, bounds in LIMITS.items()}}


def view_accepts(view: str, *, has_filters: bool, ran: bool, has_output: bool) -> bool:
    """Whether a view can show a layer: the filters view needs 2-D kernels, the feature-map
    and feature-visualization views a layer that ran and gave an output; the table lists all.
    """
    if view == "filters":
        return has_filters
    if view in ("activations", "featureviz"):
        return ran and has_output
    return True
