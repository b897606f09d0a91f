"""A model atlas: feature visualizations of every channel of every layer, in a store anyone
can read, resumable, run here, on a ``concurrent.futures`` executor or on Ray.

    import cnn_widgets as cw
    report = cw.atlas("efficientnet_lite0", "atlas_out", steps=256)
    cw.AtlasBrowser("atlas_out")                   # browse it, without the model

``cnn_widgets.atlas`` (the attribute) is the function; import the rest from this package by
name (``from cnn_widgets.atlas import Store``), since ``import cnn_widgets.atlas as m`` also
gives the function.

``plan`` lists the units (a layer and a batch of its channels) and the model's fingerprint,
``store`` is the directory layout (``docs/atlas.md``), ``work`` renders one unit in any
process, ``executors`` run units somewhere, ``run`` drives it all.
"""

from .plan import Unit, atlas_layers, fingerprint, plan_units
from .run import AtlasReport, atlas
from .store import Store, layer_dir, layer_name

__all__ = [
    "AtlasReport",
    "Store",
    "Unit",
    "atlas",
    "atlas_layers",
    "fingerprint",
    "layer_dir",
    "layer_name",
    "plan_units",
]
