"""Jupyter widgets (anywidget) on top of the plain-function API.

:class:`FilterViewer` shows a layer's learned filters, :class:`ActivationViewer` what layers
output for an image, and :class:`Explorer` both plus the layer table in one widget.
:class:`FeatureVisualizer` runs feature visualization live (also a view of :class:`Explorer`).
"""

from .viewer import ActivationViewer, Explorer, FeatureVisualizer, FilterViewer

__all__ = ["ActivationViewer", "Explorer", "FeatureVisualizer", "FilterViewer"]
