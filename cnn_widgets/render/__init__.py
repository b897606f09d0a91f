"""Rendering: normalize -> colormap -> tile -> encode, with numpy and Pillow only.

Pictures are produced at their natural size and never upscaled; the browser enlarges them with
``image-rendering: pixelated``. See :mod:`cnn_widgets.render.views` for the ready-made views.
"""

from .colormaps import COLORMAPS, NONFINITE_COLOR, apply_colormap, lut, mark_nonfinite
from .encode import (
    WIRE_FORMATS,
    decode_image_size,
    encode_jpeg,
    encode_png,
    encode_wire,
)
from .normalize import MODES, normalize, normalize_with_mask
from .tile import TileLayout, tile, tile_layout
from .views import (
    Rendered,
    activation_grid,
    activation_single,
    activation_sum,
    dense_plot,
    filter_grid,
    filter_single,
    topk_bars,
)

__all__ = [
    "COLORMAPS",
    "MODES",
    "NONFINITE_COLOR",
    "WIRE_FORMATS",
    "Rendered",
    "TileLayout",
    "activation_grid",
    "activation_single",
    "activation_sum",
    "apply_colormap",
    "decode_image_size",
    "dense_plot",
    "encode_jpeg",
    "encode_png",
    "encode_wire",
    "filter_grid",
    "filter_single",
    "lut",
    "mark_nonfinite",
    "normalize",
    "normalize_with_mask",
    "tile",
    "tile_layout",
    "topk_bars",
]
