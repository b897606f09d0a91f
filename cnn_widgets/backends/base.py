"""The adapter contract every framework backend implements.

Everything above this module (rendering, analysis, widgets) talks to an :class:`Adapter` and
receives numpy arrays, channels-first: filters ``(out, in_per_group, kh, kw)``, activations
``(C, H, W)`` for conv-like outputs or ``(N,)`` for dense ones. Framework layouts (Keras NHWC,
HWIO kernels) are converted inside the backends and nowhere else.
"""

from __future__ import annotations

import difflib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .gradients import Gradients, Target, resolve_target

LayerKey = str | int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model, as every public function sees it.

    Attributes
    ----------
    name:
        torch: the dot name from ``named_modules()`` (``layer1.0.conv1``); Keras: the layer
        name, nested models flattened as ``outer/inner``.
    type:
        The layer's class name (``Conv2d``, ``DepthwiseConv2D``, ...).
    output_shape:
        Channels-first, batch dimension dropped, from a real forward pass on a dummy input.
        ``None`` when the layer did not run in that pass.
    param_shapes:
        Parameter name -> shape, in the framework's own layout (what ``net.params`` prints).
    num_params:
        Total number of parameters the layer owns directly.
    has_filters:
        True for 2-D convolutions, whose kernels :func:`cnn_widgets.filters` can show.
    index:
        Position in forward order; every public function accepts it instead of the name.
    kind:
        ``"conv2d"``, ``"conv1d"``, ``"conv3d"``, ``"dense"``, ``"input"`` or ``"other"``.
    calls:
        How often the layer ran in one forward pass. A torch module called several times
        (a shared ReLU, say) is reported at its *first* call: its position and its
        activations are those of that call. 0 for a layer that did not run (see :attr:`ran`).
    """

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    num_params: int = 0
    has_filters: bool = False
    index: int = -1
    kind: str = "other"
    calls: int = 1

    def __hash__(self) -> int:  # param_shapes is a dict; hash on the identity fields
        return hash((self.name, self.type, self.output_shape, self.index))

    @property
    def ran(self) -> bool:
        """True when the layer ran in the discovery forward pass.

        A layer that did not (torchvision's ``stochastic_depth`` of a block without a
        residual, an unused branch, a head the forward never calls) is still listed, after
        those that ran, so that a user looking for it finds it; it has no activations, and it
        is never taken as the output layer, a default, or a negative index.
        """
        return self.calls > 0

    @property
    def is_spatial(self) -> bool:
        """True when the output is a ``(C, H, W)`` feature map."""
        return self.output_shape is not None and len(self.output_shape) == 3


@dataclass(frozen=True)
class ConvConfig:
    """Geometry of a 2-D convolution, framework-neutral (used by kernel x image responses)."""

    stride: tuple[int, int]
    padding: tuple[int, int] | str  # explicit (ph, pw) or "same" / "valid"
    dilation: tuple[int, int]
    groups: int
    has_bias: bool


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine preprocessing: ``(x * scale - mean) / std`` on a [0, 1] image."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0

    @classmethod
    def imagenet(cls) -> Normalization:
        return cls(IMAGENET_MEAN, IMAGENET_STD)


Preprocess = Normalization | Callable[[Any], Any] | None
Shape = tuple[int, int | None, int | None]
"""``(C, H, W)`` of a model's input; ``H``/``W`` None when any size goes."""


@dataclass(frozen=True)
class InputSpec:
    """What a model expects.

    ``shape`` is ``(C, H, W)``; ``H``/``W`` are ``None`` when the model accepts any size and
    nobody said which one to use. Images always arrive as float ``[0, 1]``; ``preprocess``
    turns that into what the model was trained on: ``None`` (unchanged), a
    :class:`Normalization`, or a callable that takes and returns a framework tensor in the
    framework's own layout (torch NCHW, Keras NHWC).
    """

    shape: tuple[int, int | None, int | None]
    preprocess: Preprocess = None
    labels: tuple[str, ...] | None = None

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def spatial(self) -> tuple[int, int] | None:
        h, w = self.shape[1], self.shape[2]
        return (h, w) if h is not None and w is not None else None


# protect() saves and restores model-wide state; two threads inside it at once (a widget's
# worker and a notebook cell, maybe through two adapters of one model) could restore each
# other's half-changed state. One lock for all adapters keeps that simple and cheap.
_MODEL_LOCK = threading.RLock()


class Adapter(ABC):
    """A model plus its input spec, behind one framework-neutral interface.

    Backends implement the abstract methods; name resolution, error messages and the
    public helpers live here so they read the same for every framework.
    """

    framework: str = "?"

    def __init__(self, model: Any, spec: InputSpec) -> None:
        self.model = model
        self.spec = spec
        self._layers: list[LayerInfo] | None = None
        # Set by a backend's _discover_layers: the layer whose output *is* the model's output
        # (found by object identity in the discovery pass), or None when no layer's was.
        self._output_name: str | None = None
        self._lock = _MODEL_LOCK

    @classmethod
    def create(
        cls,
        model: Any,
        shape: Shape | None,
        preprocess: Preprocess,
        labels: tuple[str, ...] | None,
    ) -> Adapter:
        """Check ``model`` and wrap it; :func:`cnn_widgets.adapt` calls this with parsed
        arguments (``shape`` is ``(C, H, W)`` or None, ``labels`` the class names or None).

        Raises
        ------
        TypeError, ValueError
            From the backend's :meth:`_input_shape`: a model of another framework, or an input
            the backend cannot work out or use.
        """
        spec = InputSpec(cls._input_shape(model, shape, preprocess), preprocess, labels)
        return cls(model, spec)

    @classmethod
    @abstractmethod
    def _input_shape(
        cls, model: Any, shape: Shape | None, preprocess: Preprocess
    ) -> tuple[int, int | None, int | None]:
        """Check that ``model`` is this backend's kind and what input it takes: the
        ``(C, H, W)`` to use (``H``/``W`` None when any size goes and none was given)."""

    @property
    def lock(self) -> threading.RLock:
        """The lock every use of the model holds (one for all adapters): work that spans many
        adapter calls (a feature visualization, a health check) holds it for its whole run."""
        return self._lock

    # -- what a backend implements -------------------------------------------------------
    def weight_arrays(self) -> list[tuple[str, np.ndarray]]:
        """Every weight and buffer of the model as ``(name, array)`` copies, in a fixed order
        (what a fingerprint of the model reads). Reads only; the model is not touched."""
        with self.protect():
            return [(name, np.array(value, copy=True)) for name, value in self._weight_arrays()]

    def _weight_arrays(self) -> Iterator[tuple[str, Any]]:
        raise NotImplementedError(f"the {self.framework} backend cannot list its weights")

    @abstractmethod
    def _discover_layers(self) -> list[LayerInfo]:
        """Every layer in forward order, shapes from a real forward pass on a dummy input.

        Layers that did not run come last, with ``calls=0``. A backend that can tell which
        layer produced the model's output (an :class:`OutputFinder` does) stores its name in
        ``self._output_name``."""

    @abstractmethod
    def _filters(self, info: LayerInfo) -> np.ndarray:
        """``(out, in_per_group, kh, kw)`` float32 for a 2-D convolution."""

    @abstractmethod
    def _activations(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One forward pass of ``batch`` (``(N, C, H, W)`` float32 in [0, 1], before
        preprocessing); returns each named layer's output channels-first, batch kept."""

    @abstractmethod
    def conv_config(self, layer: LayerKey) -> ConvConfig:
        """Stride, padding, dilation and groups of a 2-D convolution."""

    @abstractmethod
    def snapshot(self) -> Any:
        """Everything "never harm the model" promises to keep: weights, mode, grad flags,
        ``.grad`` fields, hooks. Comparable with ``==`` via :meth:`same_state`."""

    @abstractmethod
    def same_state(self, before: Any, after: Any) -> bool:
        """True when two snapshots describe bit-identical model state."""

    @abstractmethod
    @contextmanager
    def protect(self) -> Iterator[None]:
        """Run a block holding :attr:`lock`, with the model in inference mode, and restore
        mode, grad flags and ``.grad`` afterwards, also when the block raises."""

    # -- shared behaviour ----------------------------------------------------------------
    def layers(self) -> list[LayerInfo]:
        if self._layers is None:
            with self.protect():
                self._layers = self._discover_layers()
            if not self._layers:
                raise ValueError(f"{type(self.model).__name__} has no layers to show")
        return list(self._layers)

    def output_layer(self) -> LayerInfo:
        """The layer whose output is the model's output.

        Found in the discovery pass: the layer whose (first-call) output is the very tensor
        the model returned. When no layer's is (the model applies a function after its last
        layer, say), the last layer that ran. Never a layer that did not run, however late it
        is listed.

        Raises
        ------
        ValueError
            When no layer ran in the discovery pass.
        """
        infos = self.layers()
        if self._output_name is not None:
            for info in infos:
                if info.name == self._output_name and info.ran:
                    return info
        ran = [info for info in infos if info.ran]
        if not ran:
            raise ValueError(
                f"no layer of {type(self.model).__name__} ran in a forward pass, so it has no "
                "output layer"
            )
        return ran[-1]

    def layer(self, key: LayerKey | LayerInfo) -> LayerInfo:
        """Resolve a name or an index to its LayerInfo.

        ``0..n-1`` is the position in :meth:`layers`. A negative index counts back from the
        model's output over the layers that ran: ``-1`` is :meth:`output_layer`, ``-2`` the
        layer that ran just before it, and so on. Layers that did not run in the forward pass
        (listed last) and layers that ran after the output layer are reachable by name or by
        a non-negative index only.
        """
        infos = self.layers()
        if isinstance(key, LayerInfo):
            key = key.name
        if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
            raise TypeError(
                f"a layer is given by name (str) or index (int), got {type(key).__name__}"
            )
        if isinstance(key, (int, np.integer)):
            n, index = len(infos), int(key)
            if 0 <= index < n:
                return infos[index]
            output = self.output_layer()
            back = [i for i in infos[: output.index + 1] if i.ran]
            if -len(back) <= index < 0:
                return back[index]
            raise ValueError(
                f"layer index {index} is out of range: this model has {n} layers "
                f"(valid: 0..{n - 1}, or -{len(back)}..-1 counting back from the output layer "
                f"{output.name!r} over the {len(back)} layers that ran up to it)"
            )
        for info in infos:
            if info.name == key:
                return info
        names = [i.name for i in infos]
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(repr(n) for n in names[:12]) + (" ..." if len(names) > 12 else "")
        raise ValueError(f"no layer named {key!r}.{hint} Layers: {shown}")

    def conv_layers(self) -> list[LayerInfo]:
        return [i for i in self.layers() if i.has_filters]

    def filters(self, layer: LayerKey) -> np.ndarray:
        info = self.layer(layer)
        if not info.has_filters:
            self._refuse_no_filters(info)
        with self.protect():
            out = np.asarray(self._filters(info), dtype=np.float32)
        return out

    def activations(
        self, batch: np.ndarray, layers: Sequence[LayerKey] | None = None
    ) -> dict[str, np.ndarray]:
        """Activations of ``batch`` (``(N, C, H, W)``, [0, 1]) for the given layers."""
        infos = self.layers() if layers is None else [self.layer(k) for k in layers]
        names = list(dict.fromkeys(i.name for i in infos))
        with self.protect():
            out = self._activations(np.ascontiguousarray(batch, dtype=np.float32), names)
        return {n: np.asarray(out[n], dtype=np.float32) for n in names}

    def gradients(
        self,
        batch: np.ndarray,
        layers: Sequence[LayerKey] = (),
        target: int | Sequence[int] | np.ndarray | Callable[[Any], Any] | None = None,
        *,
        backward: bool = True,
        input_grad: bool = True,
        guided: bool = False,
    ) -> Gradients:
        """The chosen layers' outputs and the gradients of a target with respect to them and
        to the image, from one forward and one backward pass of ``batch`` (``(N, C, H, W)``,
        [0, 1]), under :meth:`protect` (the model is left exactly as it was).

        The target is computed from the model's *logits*: when the output layer is a softmax
        (torch ``nn.Softmax``/``LogSoftmax``; Keras ``Softmax``, ``Activation("softmax")``, or
        a layer with ``activation="softmax"``), the values before it. ``target`` is None (each
        image's top class), a class index, one index per image, or a callable that receives
        the logits as a framework tensor ``(N, ...)`` and returns ``(N,)`` or a scalar. Each
        image's gradients are those of its own score: in inference mode images do not interact,
        so the backward pass of the summed scores gives every image its own.
        ``backward=False`` runs the forward pass only (``layer_grads`` empty, ``input_grad``
        None): logits and scores of many images, cheaply. ``input_grad=False`` leaves out the
        gradient with respect to the image (``input_grad`` None): the backward pass then stops
        at the chosen layers, which for a layer near the output is a fraction of the network.
        ``guided=True`` backpropagates through every ReLU (and ReLU6) only what is positive
        (Springenberg et al. 2015, guided backpropagation); the forward pass is unchanged.

        Raises
        ------
        ValueError
            A class index out of range, or a layer that did not run.
        TypeError
            A target of another type, or a callable whose result is not ``(N,)`` or a scalar.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        names = list(dict.fromkeys(self.layer(k).name for k in layers))
        resolved = resolve_target(target, len(batch))
        with self.protect():
            result = self._gradients(batch, names, resolved, backward, input_grad, guided)
        return result

    def _gradients(
        self,
        batch: np.ndarray,
        names: Sequence[str],
        target: Target,
        backward: bool,
        input_grad: bool = True,
        guided: bool = False,
    ) -> Gradients:
        raise NotImplementedError(f"{type(self).__name__} cannot compute gradients")

    @contextmanager
    def randomized(self, layers: Sequence[LayerKey], seed: int = 0) -> Iterator[None]:
        """Inside the block, the learned weights of ``layers`` are replaced by random values
        (normal, zero mean, each tensor's own standard deviation; 0.01 where that is 0);
        afterwards, also when the block raises, every value is put back bit for bit. Running
        statistics of batch norms are kept. Holds the model lock throughout. For Adebayo et
        al.'s sanity check (:func:`cnn_widgets.sanity_check`)."""
        names = list(dict.fromkeys(self.layer(k).name for k in layers))
        rng = np.random.default_rng(seed)
        with self._lock:
            saved: list[tuple[Any, np.ndarray]] = []
            try:
                for name in names:
                    for handle in self._weight_handles(name):
                        original = self._read_weight(handle)
                        saved.append((handle, original))
                        std = float(np.std(original.astype(np.float64))) or 0.01
                        noise = rng.normal(0.0, std, original.shape).astype(original.dtype)
                        self._write_weight(handle, noise)
                yield
            finally:
                for handle, original in reversed(saved):
                    self._write_weight(handle, original)

    def _weight_handles(self, name: str) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} cannot randomize weights")

    def _read_weight(self, handle: Any) -> np.ndarray:
        raise NotImplementedError

    def _write_weight(self, handle: Any, values: np.ndarray) -> None:
        raise NotImplementedError

    def _refuse_no_filters(self, info: LayerInfo) -> None:
        convs = [i.name for i in self.conv_layers()]
        if info.kind in ("conv1d", "conv3d"):
            what = f"a {info.kind[-2:].upper()} convolution ({info.type}); 2-D views need Conv2d"
        else:
            what = f"a {info.type} layer, which has no 2-D filters"
        choices = ", ".join(repr(c) for c in convs[:12]) + (" ..." if len(convs) > 12 else "")
        if not convs:
            raise ValueError(
                f"layer {info.name!r} is {what}, and this model has no 2-D conv layers"
            )
        raise ValueError(f"layer {info.name!r} is {what}. Layers with filters: {choices}")

    def __repr__(self) -> str:  # cheap: never triggers a forward pass
        return (
            f"<{type(self).__name__} {type(self.model).__name__} "
            f"input={self.spec.shape} preprocess={_describe_preprocess(self.spec.preprocess)}>"
        )

    # -- layer inputs and conv parameters (analysis: kernel x image responses, health) ---
    # Added for cnn_widgets.analysis; backends override the three hooks below. They have
    # defaults (not abstract) so that an adapter written before them keeps working.
    def layer_inputs(self, batch: np.ndarray, layers: Sequence[LayerKey]) -> dict[str, np.ndarray]:
        """What each layer *receives* for ``batch`` (``(N, C, H, W)``, [0, 1]), from one
        forward pass: the first tensor argument of the layer's first call, channels-first,
        batch kept. For the first layer that is the preprocessed image."""
        names = list(dict.fromkeys(self.layer(k).name for k in layers))
        with self.protect():
            out = self._layer_inputs(np.ascontiguousarray(batch, dtype=np.float32), names)
        return {n: np.asarray(out[n], dtype=np.float32) for n in names}

    def _layer_inputs(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} cannot capture layer inputs")

    def conv_bias(self, layer: LayerKey) -> np.ndarray | None:
        """The bias of a 2-D convolution as ``(out,)`` float32 (a copy), or None when the
        layer adds none (the same rule as :attr:`ConvConfig.has_bias`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read conv biases")

    def conv_padding_mode(self, layer: LayerKey) -> str:
        """How a 2-D convolution fills its padding: ``"zeros"`` (every Keras conv, and torch's
        default), or torch's ``"reflect"``, ``"replicate"``, ``"circular"``."""
        self.conv_config(layer)  # refuses layers that are no 2-D convolution
        return "zeros"


def _describe_preprocess(p: Preprocess) -> str:
    if p is None:
        return "none"
    if isinstance(p, Normalization):
        return "imagenet" if (p.mean, p.std) == (IMAGENET_MEAN, IMAGENET_STD) else "normalize"
    return getattr(p, "__name__", type(p).__name__)
