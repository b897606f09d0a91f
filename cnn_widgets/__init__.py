"""cnn_widgets: open up a convolutional network in a notebook, for PyTorch and Keras.

The plain-function API (importable without a browser, and without importing either
framework until a model of it arrives)::

    import cnn_widgets as cw
    model = cw.zoo.load("efficientnet_lite0", framework="torch")
    cw.summary(model)
    cw.filters(model, "_conv_stem")                   # (out, in, kh, kw)
    cw.activations(model, cw.zoo.sample_image("chelsea"), ["_blocks.2._relu0"])
    cw.render_filters(model, 0).save("filters.png")
    cw.attribution(model, cw.zoo.sample_image("chelsea"), method="gradcam")  # where it looks
    caffe = cw.load_caffe("deploy.prototxt", "net.caffemodel", mean=(104, 117, 123))
    graph = cw.load_tf_graph(sess, feed={"keep_prob": 1.0})  # a TF1 session, a SavedModel,
                                                              # a frozen .pb, a tf.function
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .analysis import channel_stats, filter_responses, health_report, top_images
from .api import (
    activations,
    filters,
    layers,
    prepare_image,
    render_activations,
    render_filters,
    summary,
    top_classes,
)
from .atlas import AtlasReport, atlas
from .attribution import Attribution, SanityReport, attribution, plot_attribution, sanity_check
from .backends import Adapter, InputSpec, LayerInfo, Normalization, adapt
from .featureviz import feature_viz
from .render import save_animation, tile

if TYPE_CHECKING:
    from . import zoo
    from .backends.tfgraph import load_tf_graph
    from .formats import load_caffe, load_onnx
    from .plot import plot_activations, plot_filters
    from .widgets import (
        ActivationViewer,
        AtlasBrowser,
        AttributionViewer,
        Explorer,
        FeatureVisualizer,
        FilterViewer,
        TrainingMonitor,
    )

_WIDGETS = (
    "ActivationViewer",
    "AtlasBrowser",
    "AttributionViewer",
    "Explorer",
    "FeatureVisualizer",
    "FilterViewer",
    "TrainingMonitor",
)

__version__ = "0.1.0"

__all__ = [
    "ActivationViewer",
    "Adapter",
    "AtlasBrowser",
    "AtlasReport",
    "Attribution",
    "AttributionViewer",
    "Explorer",
    "FeatureVisualizer",
    "FilterViewer",
    "InputSpec",
    "LayerInfo",
    "Normalization",
    "SanityReport",
    "TrainingMonitor",
    "activations",
    "adapt",
    "atlas",
    "attribution",
    "channel_stats",
    "feature_viz",
    "filter_responses",
    "filters",
    "health_report",
    "layers",
    "load_caffe",
    "load_onnx",
    "load_tf_graph",
    "plot_activations",
    "plot_attribution",
    "plot_filters",
    "prepare_image",
    "render_activations",
    "render_filters",
    "sanity_check",
    "save_animation",
    "summary",
    "tile",
    "top_classes",
    "top_images",
    "zoo",
]


def __getattr__(name: str) -> Any:
    # zoo and plot pull in optional packages (scikit-image, matplotlib): load them on first use.
    # importlib, not "from . import zoo": that statement asks this very hook again.
    if name == "zoo":
        return importlib.import_module(f"{__name__}.zoo")
    if name in ("plot_filters", "plot_activations"):
        return getattr(importlib.import_module(f"{__name__}.plot"), name)
    if name in ("load_caffe", "load_onnx"):  # model files: torch, protobuf, onnx on first use
        return getattr(importlib.import_module(f"{__name__}.formats"), name)
    if name == "load_tf_graph":  # TensorFlow on first use
        return importlib.import_module(f"{__name__}.backends.tfgraph").load_tf_graph
    if name in _WIDGETS:  # ipywidgets/anywidget load only when a widget is wanted
        return getattr(importlib.import_module(f"{__name__}.widgets"), name)
    raise AttributeError(f"module 'cnn_widgets' has no attribute {name!r}")
