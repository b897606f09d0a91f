"""The input spec of a Keras model: its ``(C, H, W)`` as the model records it, reconciled
with what the user gave ``adapt``, and the checks on a ``Normalization`` for it."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from .base import Normalization


def _model_input_shape(
    model: keras.Model,
) -> tuple[tuple[int, int | None, int | None], bool] | None:
    """``((C, H, W), fixed)`` from the model, or None when it does not know.

    ``fixed`` is False when the shape only records the batch a subclassed model was built
    with, which the user may override.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # subclassed, or Sequential without an Input
        inputs = None
    if inputs:
        if len(inputs) != 1:
            raise ValueError(
                f"{model.name!r} takes {len(inputs)} inputs; cnn_widgets needs a single image input"
            )
        return _chw(inputs[0].shape, model.name), True
    # A subclassed model built by calling it records that call's input shape.
    built_with = getattr(model, "_build_shapes_dict", None)
    if model.built and isinstance(built_with, dict) and len(built_with) == 1:
        (shape,) = built_with.values()
        if shape is not None and len(shape) == 4 and shape[-1] is not None:
            return _chw(shape, model.name), False
    return None


def _chw(nhwc: Sequence[int | None], model_name: str) -> tuple[int, int | None, int | None]:
    shape = tuple(nhwc)
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            f"{model_name!r} takes input of shape {shape}; cnn_widgets needs images "
            "(batch, H, W, C) with a known channel count (channels_last)"
        )
    _, h, w, c = shape
    return (int(c), None if h is None else int(h), None if w is None else int(w))


def _resolve_input_shape(
    model: keras.Model, given: tuple[int, int | None, int | None] | None
) -> tuple[int, int | None, int | None]:
    known = _model_input_shape(model)
    if known is None:
        if given is None:
            state = "has been built without a recorded input" if model.built else "is not built"
            raise ValueError(
                f"{type(model).__name__} {model.name!r} {state}, so its input size is unknown; "
                "pass input_shape=(C, H, W) to cnn_widgets.adapt (or build it with "
                "keras.Input / by calling it once on a batch)"
            )
        return given
    (c, h, w), fixed = known
    if given is None:
        return (c, h, w)
    gc, gh, gw = given
    if gc != c:
        raise ValueError(f"input_shape={given} has {gc} channels but the model takes {c}")
    if fixed and (
        (h is not None and gh not in (None, h)) or (w is not None and gw not in (None, w))
    ):
        raise ValueError(
            f"input_shape={given} does not match the model's fixed input size {(c, h, w)}"
        )
    return (c, gh if gh is not None else h, gw if gw is not None else w)


def _check_normalization(norm: Normalization, channels: int) -> None:
    for label, values in (("mean", norm.mean), ("std", norm.std)):
        if len(values) not in (1, channels):
            raise ValueError(
                f"Normalization {label} has {len(values)} values but the model takes "
                f"{channels} channels"
            )
