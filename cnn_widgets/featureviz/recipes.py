"""The two recipes, by name: their settings and what each draws for one image.

``lucid``
    The recipe that gives interpretable pictures (Olah et al., Distill 2017; Lucid/Lucent's
    defaults): a Fourier-parameterized, colour-decorrelated image behind a sigmoid, Adam with
    lr 0.05, a random pad/jitter/scale/rotate/jitter view every step, and a dead-ReLU
    warm-up for the first 16 steps.
``naive``
    Plain gradient ascent on pixels from gray plus noise, the gradient divided by its RMS,
    no transforms, as in the Keras example of seed 001: the "why does my visualization look
    like noise" baseline, kept for teaching the difference.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from .. import choices
from . import param, transforms
from .spec import LucidParams, NaiveParams, RecipeParams

__all__ = ["RECIPES", "draw_image", "make_params"]

_SETTINGS: dict[str, type[LucidParams] | type[NaiveParams]] = {
    "lucid": LucidParams,
    "naive": NaiveParams,
}
RECIPES = {name: _SETTINGS[name] for name in choices.values(choices.FV_RECIPES)}
"""Recipe name -> its settings class (in the order of :data:`cnn_widgets.choices.FV_RECIPES`);
each field is a keyword argument of ``feature_viz``."""


def make_params(recipe: str, overrides: dict[str, Any]) -> RecipeParams:
    """The settings of ``recipe`` with ``overrides`` applied and checked.

    Raises
    ------
    ValueError
        Unknown recipe (the valid ones are listed) or a value out of range.
    TypeError
        A keyword the recipe does not have (its keywords are listed).
    """
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(repr(r) for r in RECIPES)}")
    cls = RECIPES[recipe]
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(
            f"feature_viz got unexpected keyword argument(s) {', '.join(map(repr, unknown))} "
            f"for recipe {recipe!r}; its settings are: {', '.join(names)}"
        )
    params = cls(**overrides)
    _check(params)
    return params


def _check(params: RecipeParams) -> None:
    def positive(name: str) -> None:
        value = getattr(params, name)
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    if isinstance(params, NaiveParams):
        positive("step_size")
        if params.init_noise < 0:
            raise ValueError(f"init_noise must be >= 0, got {params.init_noise!r}")
        return
    for name in ("lr", "init_sd", "eps"):
        positive(name)
    for name in ("beta1", "beta2"):
        value = getattr(params, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if params.decay_power < 0:
        raise ValueError(f"decay_power must be >= 0, got {params.decay_power!r}")
    if (
        isinstance(params.warmup_steps, bool)
        or not isinstance(params.warmup_steps, int)
        or (params.warmup_steps < 0)
    ):
        raise ValueError(f"warmup_steps must be an int >= 0, got {params.warmup_steps!r}")
    for name in ("scales", "angles"):
        values = getattr(params, name)
        if len(values) == 0 or not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"{name} must be a non-empty sequence of finite numbers")
    if min(float(s) for s in params.scales) <= 0:
        raise ValueError("scales must all be > 0")
    if params.contrast is not None and not (
        isinstance(params.contrast, numbers.Real) and 0 < params.contrast < 0.5
    ):
        raise ValueError(
            f"contrast must be None (no penalty) or a number in (0, 0.5), got {params.contrast!r}"
        )


def draw_image(
    recipe: str,
    params: RecipeParams,
    rng: np.random.Generator,
    channels: int,
    size: tuple[int, int],
    steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's starting parameters and its ``(steps, 2, 3)`` views, from its generator.

    The start is drawn first, then the views, always in that order: the generator's stream is
    part of what makes a seed reproducible.
    """
    height, width = size
    if isinstance(params, NaiveParams):
        start = param.init_pixels(rng, channels, height, width, params.init_noise)
        return start, transforms.identity_views(steps)
    start = param.init_spectrum(rng, channels, height, width, params.init_sd)
    if not params.transforms:
        return start, transforms.identity_views(steps)
    mags = transforms.magnitudes(size, params.jitter, params.final_jitter)
    views = transforms.draw_views(
        rng,
        steps,
        size,
        mags,
        tuple(float(s) for s in params.scales),
        tuple(float(a) for a in params.angles),
    )
    return start, views
