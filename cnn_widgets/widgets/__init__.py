"""Jupyter widgets (anywidget) on top of the plain-function API, built from panels.

:class:`FilterViewer` shows a layer's learned filters, :class:`ActivationViewer` what layers
output for an image, :class:`FeatureVisualizer` runs feature visualization live,
:class:`AttributionViewer` shows where the model looks (Grad-CAM and the attribution family),
and :class:`Explorer` has them all plus the layer table; :class:`TrainingMonitor` shows a model
while it trains; :class:`AtlasBrowser` browses a store of :func:`cnn_widgets.atlas`. See
``docs/architecture.md`` for how the panels fit together and how to add a view.
"""

from .atlas import AtlasBrowser
from .explorer import (
    ActivationViewer,
    AttributionViewer,
    Explorer,
    FeatureVisualizer,
    FilterViewer,
)
from .monitor import TrainingMonitor

__all__ = [
    "ActivationViewer",
    "AtlasBrowser",
    "AttributionViewer",
    "Explorer",
    "FeatureVisualizer",
    "FilterViewer",
    "TrainingMonitor",
]
