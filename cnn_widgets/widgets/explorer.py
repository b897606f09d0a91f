"""The public widgets, each a combination of panels.

=====================  =====================================================================
widget                 panels
=====================  =====================================================================
:class:`Explorer`      image, picture (filters + feature maps), feature viz, health, top
                       images, and the layer table view
:class:`FilterViewer`  picture (filters), health, top images
:class:`ActivationViewer`  image, picture (feature maps), health, top images
:class:`FeatureVisualizer`  feature viz, health, top images
:class:`AttributionViewer`  image, attribution
=====================  =====================================================================

A widget syncs only the traits of its panels. Arguments given to a constructor raise when
they are wrong; later changes (from Python or the browser) never raise: a problem shows in
``error`` and the widget keeps its last good state.
"""

from __future__ import annotations

from typing import Any

from ..backends import LayerInfo
from .attribution import AttributionPanel
from .featureviz import FV_PAGE_SIZE, FeatureVizPanel
from .health import HealthPanel
from .inputs import ImagePanel
from .picture import PicturePanel
from .top_images import TopImagesPanel

__all__ = [
    "ActivationViewer",
    "AttributionViewer",
    "Explorer",
    "FeatureVisualizer",
    "FilterViewer",
]

_PICTURE = ("channel", "normalization", "colormap", "page_size")
_FILTER_OPTIONS = ("input_channel",)
_ACTIVATION_OPTIONS = ("activation_mode", "vector_mode", "top_k", "sample")
_FV_OPTIONS = ("fv_steps", "fv_size", "fv_recipe", "fv_objective")
_ATTR_OPTIONS = (
    "attr_method",
    "attr_target",
    "attr_layer",
    "attr_alpha",
    "attr_compare",
    "attr_compare_methods",
)


class Explorer(
    ImagePanel, PicturePanel, FeatureVizPanel, AttributionPanel, HealthPanel, TopImagesPanel
):
    """Filters, feature maps, feature visualizations, attribution maps and the layer table of
    a model in one widget.

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
        ``sample``, ``fv_steps``, ``fv_size``, ``fv_recipe``, ``fv_objective`` or the
        attribution settings ``attr_method``, ``attr_target``, ``attr_layer``, ``attr_alpha``,
        ``attr_compare``, ``attr_compare_methods``; anything else raises :class:`TypeError`.

    Notes
    -----
    Arguments given here raise when they are wrong. Later changes (from Python or the
    browser) never raise: a problem shows in ``error`` and the widget keeps its last good
    state. Work that needs a forward pass runs in the background; :meth:`wait` blocks until
    it is published. A feature visualization that is running stops when the filters or
    feature maps need the model.
    """

    _VIEWS = ("filters", "activations", "featureviz", "attribution", "table")
    _options = (
        "view",
        *_PICTURE,
        *_FILTER_OPTIONS,
        *_ACTIVATION_OPTIONS,
        *_FV_OPTIONS,
        *_ATTR_OPTIONS,
    )


class FilterViewer(PicturePanel, HealthPanel, TopImagesPanel):
    """The learned filters (kernels) of a model's convolutions, one layer at a time.

    ``FilterViewer(model, layer=None, **options)``: ``model`` and ``layer`` as for
    :class:`Explorer`; ``options`` are initial values of ``channel``, ``normalization``,
    ``colormap``, ``input_channel`` or ``page_size`` (anything else raises
    :class:`TypeError`).
    """

    _VIEWS = ("filters",)
    _DEFAULT_COLORMAP = "gray"
    _options = (*_PICTURE, *_FILTER_OPTIONS)


class ActivationViewer(ImagePanel, PicturePanel, HealthPanel, TopImagesPanel):
    """What each layer of a model outputs for an image: feature maps, or the vector of a
    dense layer (values, or top-k class probabilities).

    ``ActivationViewer(model, image=None, layer=None, **options)``: the arguments of
    :class:`Explorer`. Change the image later with ``viewer.image = ...``, ``viewer.sample =
    name`` or by dropping a file on the widget. ``options`` are initial values of ``channel``,
    ``normalization``, ``colormap``, ``activation_mode``, ``vector_mode``, ``top_k``,
    ``page_size`` or ``sample`` (anything else raises :class:`TypeError`).
    """

    _VIEWS = ("activations",)
    _options = (*_PICTURE, *_ACTIVATION_OPTIONS)


class AttributionViewer(ImagePanel, AttributionPanel):
    """Where the model looks: attribution maps (Grad-CAM and its family, saliency,
    SmoothGrad, integrated gradients) of an image, over the image.

    Click one of the image's top classes to see the map for it; pick the method, the layer of
    the CAM methods (default: automatic) and the overlay's opacity; "compare" shows several
    methods side by side for the same target. Long methods run in the background with
    progress and a Stop button; :meth:`save_png` saves what is shown and
    :attr:`attributions` holds the results.

    ``AttributionViewer(model, image=None, **options)``: ``model`` and ``image`` as for
    :class:`Explorer`; ``options`` are initial values of ``sample``, ``attr_method``,
    ``attr_target`` (-1: the top class), ``attr_layer`` ("" : automatic), ``attr_alpha``,
    ``attr_compare`` or ``attr_compare_methods`` (anything else raises :class:`TypeError`).

    See Also
    --------
    cnn_widgets.attribution : the same maps as a function.
    """

    _VIEWS = ("attribution",)
    _options = ("sample", *_ATTR_OPTIONS)


class FeatureVisualizer(FeatureVizPanel, HealthPanel, TopImagesPanel):
    """Feature visualization, live: the images that excite each channel of a layer most,
    synthesized by gradient ascent while you watch.

    Press "Run gradient ascent" (or call :meth:`run_feature_viz`) and the images of the page of
    channels on screen stream in as the optimization runs in the background; "Stop" (or
    :meth:`stop_feature_viz`) ends it and keeps the last images. Finished runs are cached per
    layer, channels and settings, so returning to them is instant.

    ``FeatureVisualizer(model, layer=None, **options)``: ``model`` and ``layer`` as for
    :class:`Explorer`; ``options`` are initial values of ``channel``, ``page_size`` (channels
    per run, default 16), ``fv_steps``, ``fv_size``, ``fv_recipe`` or ``fv_objective``
    (anything else raises :class:`TypeError`).

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
