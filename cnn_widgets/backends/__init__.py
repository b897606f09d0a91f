"""Backend selection: pick the adapter from the model's type without importing a framework
the user does not have."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Adapter, InputSpec, LayerInfo, Normalization, Preprocess

__all__ = [
    "Adapter", "InputSpec", "LayerInfo", "Normalization", "adapt", "framework_of", "is_tf_graph"
]  # fmt: skip


def framework_of(model: Any) -> str | None:
    """``"torch"``, ``"keras"`` or None, judged from the class hierarchy's modules so that
    neither framework is imported just to ask."""
    for cls in type(model).__mro__:
        module = cls.__module__ or ""
        if module.startswith("torch.") and cls.__name__ == "Module":
            return "torch"
        if module.startswith(("keras", "tf_keras", "tensorflow.python.keras")):
            return "keras"
    return None


def is_tf_graph(model: Any) -> bool:
    """True for what :func:`cnn_widgets.load_tf_graph` opens: a TF1 session, a ``tf.function``
    or ConcreteFunction, a ``tf.Module`` (not a Keras model), a SavedModel directory or a
    ``.pb`` file. Judged from types and paths, without importing TensorFlow."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        return (path / "saved_model.pb").is_file() or path.suffix == ".pb"
    if framework_of(model) is not None:
        return False
    for cls in type(model).__mro__:
        module = cls.__module__ or ""
        if module.startswith("tensorflow.") and cls.__name__ in (
            "BaseSession",
            "Function",
            "ConcreteFunction",
            "Module",
        ):
            return True
    return False


def _parse_preprocess(preprocess: Any) -> Preprocess:
    if preprocess is None or isinstance(preprocess, Normalization):
        return preprocess
    if isinstance(preprocess, str):
        if preprocess.lower() == "imagenet":
            return Normalization.imagenet()
        raise ValueError(
            f"preprocess={preprocess!r} is not known; use None, 'imagenet', a "
            "cnn_widgets.Normalization(mean, std, scale) or a callable on a framework tensor"
        )
    if isinstance(preprocess, dict):
        return Normalization(**preprocess)
    if callable(preprocess):
        return preprocess
    raise TypeError(
        "preprocess must be None, 'imagenet', a Normalization or a callable, "
        f"got {type(preprocess).__name__}"
    )


def _parse_input_shape(input_shape: Any) -> tuple[int, int | None, int | None] | None:
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if len(shape) == 2:  # (H, W): a grayscale model
        shape = (1, *shape)
    if len(shape) != 3 or not all(s is None or (isinstance(s, int) and s > 0) for s in shape):
        raise ValueError(
            "input_shape must be (C, H, W) with positive ints (H, W may be None), "
            f"got {input_shape!r}"
        )
    if shape[0] is None:
        raise ValueError(f"input_shape needs a channel count, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def adapt(
    model: Any,
    *,
    input_shape: Sequence[int | None] | None = None,
    preprocess: str | Normalization | Callable[[Any], Any] | None = None,
    labels: Sequence[str] | None = None,
    input: str | None = None,
    output: str | None = None,
    feed: Mapping[str, Any] | None = None,
    signature: str | None = None,
) -> Adapter:
    """Wrap a PyTorch ``nn.Module``, a Keras model or a TensorFlow graph for every
    cnn_widgets function.

    Parameters
    ----------
    model:
        A ``torch.nn.Module`` or a ``keras.Model`` (Keras 3). An already adapted model is
        returned as is (or re-adapted when you pass new settings).
    input_shape:
        ``(C, H, W)``. Keras models know theirs; for a torch model it is taken from the first
        convolution's channel count when left out, and the spatial size then follows the
        image you pass (a clear error says so where a size is needed).
    preprocess:
        What turns a [0, 1] image into model input: ``None`` (unchanged, the default),
        ``"imagenet"`` (mean/std of ImageNet), a :class:`Normalization`, or a callable on a
        framework tensor in the framework's own layout.
    labels:
        Class names for the output layer, shown in probability views.
    input, output, feed, signature:
        For TensorFlow graphs only (a TF1 session, a SavedModel directory, a frozen ``.pb``,
        a ``tf.function`` or ``tf.Module``): see :func:`cnn_widgets.load_tf_graph`.
    """
    graph = {"input": input, "output": output, "feed": feed, "signature": signature}
    if is_tf_graph(model):
        from .tfgraph import load_tf_graph

        given = {k: v for k, v in graph.items() if v is not None}
        return load_tf_graph(model, input_shape=input_shape, preprocess=preprocess,
                             labels=labels, **given)  # fmt: skip
    if any(v is not None for v in graph.values()):
        named = ", ".join(f"{k}=" for k, v in graph.items() if v is not None)
        raise TypeError(
            f"{named} apply to TensorFlow graphs (a session, a SavedModel, a .pb file, a "
            f"tf.function) only, not to {type(model).__module__}.{type(model).__name__}"
        )
    if isinstance(model, Adapter):
        if input_shape is None and preprocess is None and labels is None:
            return model
        spec = model.spec
        # Through create(), so the backend checks the new settings against the model again.
        return type(model).create(
            model.model,
            _parse_input_shape(input_shape) or spec.shape,
            _parse_preprocess(preprocess) if preprocess is not None else spec.preprocess,
            tuple(str(x) for x in labels) if labels is not None else spec.labels,
        )
    framework = framework_of(model)
    shape = _parse_input_shape(input_shape)
    pre = _parse_preprocess(preprocess)
    label_tuple = tuple(str(x) for x in labels) if labels is not None else None
    if framework == "torch":
        from .torch import TorchAdapter

        return TorchAdapter.create(model, shape, pre, label_tuple)
    if framework == "keras":
        from .keras import KerasAdapter

        return KerasAdapter.create(model, shape, pre, label_tuple)
    raise TypeError(
        "expected a torch.nn.Module or a keras.Model (or a TensorFlow graph: a "
        "tf.compat.v1.Session, a SavedModel directory, a frozen .pb file, a tf.function or "
        "tf.Module; or a model from cnn_widgets.adapt), "
        f"got {type(model).__module__}.{type(model).__name__}"
    )
