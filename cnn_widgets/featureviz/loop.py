"""The optimization loop, written once for every framework.

It resolves the objectives against the model, picks and checks the image size, draws every
image's start and views (:mod:`.spec`), splits the images into chunks that fit a memory
budget, and steps all chunks in lock-step, so that a callback sees the whole page after every
step and a stop request lands within one step. The framework work (parameterization,
transforms, the truncated forward, gradients, the update) is a backend *session*, from
:mod:`.torch_impl` or :mod:`.keras_impl`, imported only when a model of that framework comes.

A session implements::

    probe(size) -> list of output shapes      # one forward to the captures, or ForwardError
    compile(run: RunSpec) -> None
    start(chunk: ChunkSpec) -> state
    step(state, step: int) -> np.ndarray      # objective value of each image, then update
    images(state) -> np.ndarray               # (k, H, W, C) float32 in [0, 1]
    gains(state) -> np.ndarray                # (k,) max |d objective / d pixel| at the start
    set_penalty(state, weights) -> None       # (k,) weights of sum((image - 0.5) ** 2)
    close() -> None
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..backends.base import Adapter, LayerInfo
from .objectives import Capture, Objective, ResolvedTerm, Term, capture_for, resolve_terms
from .param import color_matrix, spectrum_from_image, spectrum_scale
from .recipes import draw_image
from .spec import (
    ChunkSpec,
    ForwardError,
    LucidParams,
    RecipeParams,
    RunSpec,
    group_terms,
    image_key,
    image_rng,
)

__all__ = ["DEFAULT_MEMORY_BUDGET", "MAX_STEPS_ENV", "optimize"]

MAX_STEPS_ENV = "CNN_WIDGETS_MAX_STEPS"
"""Environment variable that caps ``steps`` (test suites set it to stay fast)."""

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes of activations one chunk may hold (by :func:`estimate_bytes_per_image`), unless the
session names its own (``session.memory_budget``: torch on CPU takes
:data:`.torch_impl.CPU_MEMORY_BUDGET`). On CPU the time per image is lowest for batches of a
few hundred MB: measured on EfficientNet-Lite0 at 128 px, 8-12 images to ``_blocks.6`` (55 MB
each) take ~3.5 ms per image and step, 16-32 images two to three times as long, as the batch
falls out of cache. The default lands there (9 images for that layer, 15 for ``_blocks.2``, 7
for ``_blocks.10``). Keras on one CPU thread takes a smaller one
(:data:`.keras_impl.ONE_THREAD_MEMORY_BUDGET`, measured there)."""

# Activations kept for the backward pass, their gradients, and temporaries: bytes per output
# element of every layer up to the target, a rough upper estimate.
_BYTES_PER_ELEMENT = 4 * 3

_BACKENDS = {"torch": ".torch_impl", "keras": ".keras_impl"}

StepCallback = Callable[[int, np.ndarray, np.ndarray], "bool | None"]
Frames = list[np.ndarray]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


def optimize(
    adapter: Adapter,
    objectives: Sequence[Objective],
    *,
    recipe: str,
    params: RecipeParams,
    size: int | tuple[int, int] | None,
    steps: int,
    seed: int,
    batch_size: int | None,
    memory_budget: int | None,
    callback: StepCallback | None,
    callback_every: int,
    stop: StopFlag | None,
    start_image: np.ndarray | None = None,
    frames: Frames | None = None,
    record_every: int = 1,
) -> np.ndarray:
    """Run the optimization for already parsed arguments; see :func:`feature_viz`.

    ``start_image`` (``(C, H, W)`` in [0, 1], at ``size``) replaces every image's random
    start. When ``frames`` is a list, the images every ``record_every`` steps (and the final
    ones) are appended to it.
    """
    steps = _capped_steps(steps)
    infos = adapter.layers()
    captures, bound = _captures(adapter, objectives)
    backend = _backend(adapter)
    channels = adapter.spec.channels
    with adapter.protect():
        session = backend.Session(adapter, captures)
        try:
            hw, shapes = _choose_size(session, adapter, captures, size)
            per_image = [
                tuple(
                    resolved
                    for term, cap in terms
                    for resolved in resolve_terms(
                        term, cap, adapter.layer(captures[cap].layer), shapes[cap]
                    )
                )
                for terms in bound
            ]
            group_keys = tuple(
                dict.fromkeys((t.kind, t.capture) for terms in per_image for t in terms)
            )
            run = RunSpec(
                recipe=recipe,
                params=params,
                size=hw,
                channels=channels,
                steps=steps,
                captures=captures,
                group_keys=group_keys,
                color=color_matrix(
                    channels, isinstance(params, LucidParams) and params.decorrelate
                ),
                spectrum_scale=spectrum_scale(
                    hw[0], hw[1], params.decay_power if isinstance(params, LucidParams) else 1.0
                ),
            )
            per_image_bytes = estimate_bytes_per_image(adapter, infos, captures, hw)
            if memory_budget is None:
                memory_budget = getattr(session, "memory_budget", None)
            chunk = _chunk_size(len(per_image), per_image_bytes, batch_size, memory_budget)
            if "diversity" in {kind for kind, _ in group_keys}:
                chunk = len(per_image)  # the penalty compares images: one batch
            chunks = _chunks(run, per_image, seed, chunk, start_image)
            session.compile(run)
            states = [session.start(c) for c in chunks]
            contrast = getattr(params, "contrast", None)
            if contrast is not None:
                for state in states:
                    # A linear objective v = g . image is maximized under the pull
                    # lam * |image - 0.5|^2 by image = 0.5 + g / (2 lam): the strongest pixel
                    # then sits `contrast` from gray instead of saturating.
                    gains = session.gains(state)
                    session.set_penalty(state, gains / (2.0 * contrast))
            return _loop(
                session, states, steps, callback, callback_every, stop, frames, record_every
            )
        finally:
            session.close()


def _loop(
    session: Any,
    states: list[Any],
    steps: int,
    callback: StepCallback | None,
    every: int,
    stop: StopFlag | None,
    frames: Frames | None,
    record_every: int,
) -> np.ndarray:
    done = 0
    # Decoding the pictures costs about as much as a tenth of a step: skipped for a callback
    # that says it only wants the values (``wants_images = False``, an atlas's loss curve).
    pictures = getattr(callback, "wants_images", True) is not False
    for step in range(1, steps + 1):
        if stop is not None and stop.is_set():
            break
        values = np.concatenate([session.step(state, step - 1) for state in states])
        done = step
        wanted = callback is not None and (step % every == 0 or step == steps)
        record = frames is not None and step % record_every == 0
        images = None
        if record or (wanted and pictures):
            images = np.concatenate([session.images(state) for state in states])
            if record:
                frames.append(images)
        if wanted and callback(step, images, values) is False:
            break
    final = np.concatenate([session.images(state) for state in states])
    if frames is not None and (done == 0 or done % record_every != 0):
        frames.append(final)  # the last frame is always the returned images
    return final


# -- objectives -> captures ----------------------------------------------------------------
def _captures(
    adapter: Adapter, objectives: Sequence[Objective]
) -> tuple[tuple[Capture, ...], list[list[tuple[Term, int]]]]:
    """The captures every objective needs, in forward order, and each image's terms bound to
    a capture index."""
    found: dict[tuple[str, bool], Capture] = {}
    pending: list[list[tuple[Term, tuple[str, bool]]]] = []
    for objective in objectives:
        terms = []
        for term in objective.terms:
            info = _term_layer(adapter, term)
            if info.output_shape is None:
                raise ValueError(
                    f"layer {info.name!r} ({info.type}) did not run in a forward pass of this "
                    "model, so it cannot be visualized"
                )
            capture = capture_for(term, info)
            key = (capture.layer, capture.logits)
            found.setdefault(key, capture)
            terms.append((term, key))
        pending.append(terms)
    ordered = sorted(found.values(), key=lambda c: (c.order, c.logits))
    index = {(c.layer, c.logits): i for i, c in enumerate(ordered)}
    bound = [[(term, index[key]) for term, key in terms] for terms in pending]
    return tuple(ordered), bound


def _term_layer(adapter: Adapter, term: Term) -> LayerInfo:
    if term.layer is not None:
        return adapter.layer(term.layer)
    return adapter.output_layer()  # class objectives: the layer that gives the model's output


# -- sizes ---------------------------------------------------------------------------------
def parse_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``int`` or ``(height, width)`` of positive ints -> ``(h, w)``; None stays None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        values: tuple[Any, ...] = (size, size)
    else:
        try:
            values = tuple(size)  # type: ignore[arg-type]
        except TypeError:
            values = ()
    if len(values) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(f"size must be an int or (height, width) of ints > 0, got {size!r}")
    return int(values[0]), int(values[1])


def _choose_size(
    session: Any,
    adapter: Adapter,
    captures: tuple[Capture, ...],
    size: int | tuple[int, int] | None,
) -> tuple[tuple[int, int], list[tuple[int, ...]]]:
    """The image size and the captures' output shapes at that size.

    ``size=None``: 128 x 128, or the model's own input size when that is smaller (a 28-pixel
    MNIST model), or the model's own size when the layers cannot be reached at 128.
    """
    requested = parse_size(size)
    spatial = adapter.spec.spatial
    if requested is None:
        # A model trained on small images (28 px digits) sees features at its own scale.
        requested = spatial if spatial is not None and min(spatial) < 128 else (128, 128)
        try:
            return requested, session.probe(requested)
        except ForwardError as err:
            if spatial is not None and spatial != requested and _works(session, spatial):
                return spatial, session.probe(spatial)
            raise ValueError(_size_message(session, adapter, captures, requested, err)) from None
    try:
        return requested, session.probe(requested)
    except ForwardError as err:
        raise ValueError(_size_message(session, adapter, captures, requested, err)) from None


def _works(session: Any, hw: tuple[int, int]) -> bool:
    try:
        session.probe(hw)
    except ForwardError:
        return False
    return True


def _size_message(
    session: Any,
    adapter: Adapter,
    captures: tuple[Capture, ...],
    hw: tuple[int, int],
    err: ForwardError,
) -> str:
    """Why ``hw`` fails, with the smallest square size that works when there is one.

    The smallest size is found by trial forward passes (doubling, then bisection), which
    assumes that every size above the minimum works: true for convolution and pooling stacks.
    """
    target = captures[-1].layer
    spatial = adapter.spec.spatial
    where = f"layer {target!r}" if len(captures) == 1 else f"layers up to {target!r}"
    ceiling = max(1024, 2 * max(hw))
    upper = max(hw)
    while upper <= ceiling and not _works(session, (upper, upper)):
        upper *= 2
    if upper > ceiling:
        if spatial is not None and _works(session, spatial):
            return (
                f"size {hw[0]}x{hw[1]} does not work for {where}: this model reaches them "
                f"only at its input size {spatial[0]}x{spatial[1]} (pass size={spatial}); "
                f"the forward pass failed with: {err}"
            )
        return f"the forward pass to {where} fails at size {hw[0]}x{hw[1]}: {err}"
    lower = 0  # largest size known to fail (0: none tested)
    while upper - lower > 1:
        middle = (lower + upper) // 2
        if _works(session, (middle, middle)):
            upper = middle
        else:
            lower = middle
    if min(hw) < upper:
        return (
            f"size {hw[0]}x{hw[1]} is smaller than this model's minimum for {where}: the "
            f"smallest size whose forward pass reaches them is {upper}x{upper} (found by trial "
            f"passes); the pass at {hw[0]}x{hw[1]} failed with: {err}"
        )
    hint = f" or the model's input size {spatial}" if spatial is not None else ""
    return (
        f"the forward pass to {where} fails at size {hw[0]}x{hw[1]} ({err}); it works at "
        f"{upper}x{upper}{hint}"
    )


# -- chunks --------------------------------------------------------------------------------
def _chunk_size(
    count: int, per_image: float, batch_size: int | None, memory_budget: int | None
) -> int:
    if batch_size is not None:
        return max(1, min(count, batch_size))
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    return max(1, min(count, int(budget // max(per_image, 1.0))))


def estimate_bytes_per_image(
    adapter: Adapter,
    infos: list[LayerInfo],
    captures: tuple[Capture, ...],
    size: tuple[int, int],
) -> float:
    """Rough bytes one image needs for a forward and backward pass to the last capture.

    Sums the output sizes of every layer up to the last capture, as :meth:`Adapter.layers`
    measured them at the discovery size (the model's input size, else 64 x 64), scaled by the
    area ratio of the image size used here, times 12 bytes per element (the activation kept
    for the backward pass, its gradient, temporaries).
    """
    last = max(c.order for c in captures)
    found = adapter.spec.spatial or getattr(adapter, "assumed_spatial", None) or (64, 64)
    ratio = (size[0] * size[1]) / (found[0] * found[1])
    elements = sum(
        math.prod(info.output_shape)
        for info in infos
        if info.index <= last and info.output_shape is not None
    )
    return elements * ratio * _BYTES_PER_ELEMENT


def _chunks(
    run: RunSpec,
    per_image: list[tuple[ResolvedTerm, ...]],
    seed: int,
    chunk: int,
    start_image: np.ndarray | None = None,
) -> list[ChunkSpec]:
    count = len(per_image)
    starts, views, seen = [], [], {}
    given = None
    if start_image is not None:
        given = (
            spectrum_from_image(start_image, run.color, run.spectrum_scale)
            if isinstance(run.params, LucidParams)
            else start_image.astype(np.float32)
        )
    for terms in per_image:
        key = image_key(terms, run.captures, seen.setdefault(terms, 0))
        seen[terms] += 1
        # The random start is drawn even when an image replaces it: the views come next
        # from the same generator, and must not depend on how the image started.
        start, view = draw_image(
            run.recipe, run.params, image_rng(seed, key), run.channels, run.size, run.steps
        )
        starts.append(start if given is None else given)
        views.append(view)
    # As many chunks as needed, as even as possible (64 at most 24 -> 22 + 21 + 21).
    parts = math.ceil(count / chunk)
    bounds = np.linspace(0, count, parts + 1).round().astype(int)
    result = []
    for lo, hi in itertools.pairwise(bounds):
        indices = tuple(range(int(lo), int(hi)))
        result.append(
            ChunkSpec(
                indices=indices,
                init=np.stack([starts[i] for i in indices]),
                views=np.stack([views[i] for i in indices]),
                groups=group_terms([per_image[i] for i in indices], run.group_keys),
            )
        )
    return result


# -- small helpers -------------------------------------------------------------------------
def _capped_steps(steps: int) -> int:
    cap = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not cap:
        return steps
    try:
        limit = int(cap)
    except ValueError:
        raise ValueError(f"{MAX_STEPS_ENV} must be an int, got {cap!r}") from None
    return max(1, min(steps, limit))


def _backend(adapter: Adapter) -> Any:
    name = _BACKENDS.get(adapter.framework)
    if name is None:
        raise TypeError(
            f"feature visualization supports torch and keras adapters, got framework "
            f"{adapter.framework!r}"
        )
    return importlib.import_module(name, package=__package__)
