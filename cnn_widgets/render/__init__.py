"""Rendering: normalize -> colormap -> tile -> pixels -> encode, with numpy and Pillow only.

Views (:mod:`~cnn_widgets.render.views`, :mod:`~cnn_widgets.render.plots`) draw pictures at
their natural size for the widget's wire, where the browser enlarges them with
``image-rendering: pixelated``. Saved files and notebook outputs go through
:func:`readable_png`, which enlarges small pictures by a whole number so people can see them.
:mod:`~cnn_widgets.render.pixels` is the one place floats become bytes and tile gaps become
transparent.
"""

from .animation import animation_frames, save_animation
from .colormaps import COLORMAPS, NONFINITE_COLOR, apply_colormap, lut
from .encode import WIRE_FORMATS, encode_jpeg, encode_png, encode_wire
from .normalize import MODES, normalize
from .pixels import (
    READABLE_SIDE,
    readable_scale,
    tile_rgba,
    to_uint8,
    transparent_gaps,
    upscale,
)
from .plots import dense_plot, topk_bars
from .rendered import Rendered, readable_png
from .tile import TileLayout, tile, tile_layout
from .views import (
    activation_grid,
    activation_single,
    activation_sum,
    filter_grid,
    filter_single,
)

__all__ = [
    "COLORMAPS",
    "MODES",
    "NONFINITE_COLOR",
    "READABLE_SIDE",
    "WIRE_FORMATS",
    "Rendered",
    "TileLayout",
    "activation_grid",
    "activation_single",
    "activation_sum",
    "animation_frames",
    "apply_colormap",
    "dense_plot",
    "encode_jpeg",
    "encode_png",
    "encode_wire",
    "filter_grid",
    "filter_single",
    "lut",
    "normalize",
    "readable_png",
    "readable_scale",
    "save_animation",
    "tile",
    "tile_layout",
    "tile_rgba",
    "to_uint8",
    "topk_bars",
    "transparent_gaps",
    "upscale",
]
