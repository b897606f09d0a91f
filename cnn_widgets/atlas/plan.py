"""The work list of an atlas: which layers, which channel batches, under which settings.

A *unit* is one layer and a batch of its channels, rendered by one ``feature_viz`` call. The
list depends only on the model and the arguments, never on what is in the store, so every
process (a worker, a ``--shard``) computes the same list and a static slice of it is a shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter
from ..backends.base import Normalization
from ..featureviz import MAX_STEPS_ENV, RECIPES

__all__ = [
    "FEATURE_VIZ_OPTIONS",
    "Unit",
    "atlas_layers",
    "fingerprint",
    "model_info",
    "normalize_options",
    "plan_units",
    "settings_key",
]

FEATURE_VIZ_OPTIONS = ("steps", "size", "recipe", "seed")
"""``feature_viz`` keywords an atlas passes on (plus every setting of the chosen recipe).
``batch_size`` and ``memory_budget`` pass too but do not change the pictures, so they are not
part of the settings key."""
_EXECUTION_OPTIONS = ("batch_size", "memory_budget")
_DEFAULTS = {"steps": 256, "size": None, "recipe": "lucid", "seed": 0}


@dataclass(frozen=True, order=True)
class Unit:
    """One ``feature_viz`` call: ``channels`` of ``layer``."""

    layer: str
    channels: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.layer}[{self.channels[0]}..{self.channels[-1]}]"


def atlas_layers(adapter: Adapter) -> list[str]:
    """Names of the layers an atlas covers by default: every layer with a spatial ``(C, H, W)``
    output in the model's forward pass (``feature_viz``'s channel objective needs an output;
    the input layer has nothing to optimize)."""
    return [
        info.name
        for info in adapter.layers()
        if info.ran and info.is_spatial and info.kind != "input"
    ]


def plan_units(
    adapter: Adapter,
    layers: Sequence[str] | str | None = None,
    channels_per_unit: int = 32,
    max_channels: int | None = None,
) -> list[Unit]:
    """The units of an atlas, in layer order then channel order.

    Raises
    ------
    ValueError
        An unknown layer or one without a spatial output (the valid names are listed), an
        empty layer list, ``channels_per_unit`` or ``max_channels`` below 1.
    """
    channels_per_unit = _positive(channels_per_unit, "channels_per_unit")
    if max_channels is not None:
        max_channels = _positive(max_channels, "max_channels")
    valid = atlas_layers(adapter)
    chosen = _choose_layers(layers, valid)
    units = []
    for name in chosen:
        total = adapter.layer(name).output_shape[0]  # type: ignore[index]
        if max_channels is not None:
            total = min(total, max_channels)
        for first in range(0, total, channels_per_unit):
            units.append(Unit(name, tuple(range(first, min(total, first + channels_per_unit)))))
    return units


def _choose_layers(layers: Sequence[str] | str | None, valid: list[str]) -> list[str]:
    if layers is None:
        return valid
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Iterable) or not all(isinstance(x, str) for x in layers):
        raise TypeError(f"layers must be a list of layer names, got {layers!r}")
    chosen = list(dict.fromkeys(layers))
    if not chosen:
        raise ValueError("layers is empty: name at least one layer, or None for all")
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        shown = ", ".join(repr(v) for v in valid[:20]) + (" ..." if len(valid) > 20 else "")
        raise ValueError(
            f"an atlas covers layers with a spatial (C, H, W) output; not one of them: "
            f"{', '.join(repr(u) for u in unknown)}. Valid layers: {shown}"
        )
    order = {name: i for i, name in enumerate(valid)}
    return sorted(chosen, key=order.__getitem__)  # forward order, whatever order was asked


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


# -- identity -------------------------------------------------------------------------------
def fingerprint(adapter: Adapter) -> str:
    """sha256 (first 16 hex digits) over the framework, the input spec, every layer's name and
    output shape, and every weight's dtype, shape and bytes in order: the same model gives the
    same fingerprint in any process; changing one weight changes it.

    Weight *names* are left out: Keras prefixes a variable's path with the name scope the
    model was built in (``lenet/conv1/kernel``), which the same model saved to a ``.keras``
    file and loaded again does not have (``conv1/kernel``). The layer names are in."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model_info(adapter), sort_keys=True).encode())
    for _, array in adapter.weight_arrays():
        array = np.ascontiguousarray(array)
        digest.update(json.dumps([array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def model_info(adapter: Adapter) -> dict[str, Any]:
    """What ``atlas.json`` says about the model (and what its fingerprint covers, with the
    weights): framework, input spec and the layers an atlas can cover, in forward order."""
    from .store import layer_dir

    return {
        "framework": adapter.framework,
        "input_shape": list(adapter.spec.shape),
        "preprocess": _describe(adapter.spec.preprocess),
        "layers": [
            {
                "name": name,
                "dir": layer_dir(name),
                "shape": list(adapter.layer(name).output_shape),  # type: ignore[arg-type]
            }
            for name in atlas_layers(adapter)
        ],
    }


def _describe(preprocess: Any) -> Any:
    if preprocess is None:
        return None
    if isinstance(preprocess, Normalization):
        return dataclasses.asdict(preprocess)
    return getattr(preprocess, "__qualname__", type(preprocess).__name__)


# -- settings -------------------------------------------------------------------------------
def normalize_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``feature_viz`` options with every default filled in, so that two spellings of the same
    settings compare equal (``steps`` left out == ``steps=256``).

    Raises
    ------
    TypeError
        An option ``feature_viz`` does not take in an atlas (``objective``, ``callback`` ...),
        or a setting the recipe does not have; the valid ones are listed.
    ValueError
        An unknown recipe (the valid ones are listed).
    """
    known = {*FEATURE_VIZ_OPTIONS, *_EXECUTION_OPTIONS}
    recipe = options.get("recipe", _DEFAULTS["recipe"])
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(map(repr, RECIPES))}")
    fields = [f.name for f in dataclasses.fields(RECIPES[recipe])]
    unknown = sorted(set(options) - known - set(fields))
    if unknown:
        raise TypeError(
            f"atlas got unexpected feature_viz option(s) {', '.join(map(repr, unknown))}; it "
            f"takes {', '.join(FEATURE_VIZ_OPTIONS)}, {', '.join(_EXECUTION_OPTIONS)} and the "
            f"settings of recipe {recipe!r}: {', '.join(fields)}"
        )
    settings = {**_DEFAULTS, **{k: options[k] for k in FEATURE_VIZ_OPTIONS if k in options}}
    cap = os.environ.get(MAX_STEPS_ENV, "").strip()
    if cap.isdigit() and isinstance(settings["steps"], int):
        # feature_viz obeys the cap: pictures made under it are not those of the full steps.
        settings["steps"] = max(1, min(settings["steps"], int(cap)))
    size = settings["size"]
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        settings["size"] = [int(size), int(size)]
    elif isinstance(size, (tuple, list)):
        settings["size"] = [int(s) for s in size]
    params = RECIPES[recipe](**{k: options[k] for k in fields if k in options})
    settings["params"] = _jsonable(dataclasses.asdict(params))
    return settings


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short hash of normalized settings (:func:`normalize_options`)."""
    text = json.dumps(_jsonable(dict(settings)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
