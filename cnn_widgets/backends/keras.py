"""Keras 3 backend: a :class:`~cnn_widgets.backends.base.Adapter` for ``keras.Model``.

How it sees inside a model
--------------------------
Keras has no forward hooks, so this backend records a layer's output by wrapping its ``call``
for the duration of one eager forward pass: ``Layer.__call__`` looks ``self.call`` up on the
instance every time, so a function stored in the instance ``__dict__`` (set with
``object.__setattr__``, which skips Keras's attribute tracking) shadows the class method.
The wrapper is removed in a ``finally`` block, restoring exactly what was there before. This
works the same for Sequential, functional, nested and subclassed models, needs no model
rebuild, and lets a pass stop as soon as the last requested layer has run.

Conventions
-----------
* **channels_last only.** Inputs are NHWC and outputs are converted by moving the last axis to
  the front (``(H, W, C) -> (C, H, W)``, ``(L, C) -> (C, L)``, ``(D, H, W, C) -> (C, D, H, W)``,
  ``(N,)`` unchanged). A layer with ``data_format="channels_first"`` is refused at adapt time.
* **Layer names.** A layer's own name; layers inside a nested ``keras.Model`` are listed as
  ``outer/inner`` (recursively) and the nested model itself is not listed. ``InputLayer`` is
  skipped. A user-defined (non-Keras) layer made of other layers is opened the same way and is
  listed too, after its sublayers, because its output (a residual block's, say) is worth
  seeing. Duplicate names, possible only in subclassed models, get a ``#2``, ``#3`` suffix.
* **Filters** are ``(out, in_per_group, kh, kw)``. ``SeparableConv2D`` shows its depthwise
  kernel (its pointwise step is a 1x1 mixing, not a spatial filter). ``DepthwiseConv2D``
  channels are numbered like Keras's output: input channel ``c``, multiplier ``m`` -> output
  ``c * depth_multiplier + m``. ``Conv2DTranspose`` kernels ``(kh, kw, out, in)`` are shown as
  ``(out, in, kh, kw)``, the same orientation as the torch backend gives ``ConvTranspose2d``.
* **Mode.** Keras has no global train/eval switch: every pass here calls
  ``model(x, training=False)``.
* **Not observed:** layers of quantized models (Keras runs ``quantized_call`` instead of
  ``call``) and layers inside a ``call`` the user compiled with ``tf.function`` (they run in a
  graph, not eagerly); such layers are listed last with ``output_shape=None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from .base import (
    Adapter,
    ConvConfig,
    InputSpec,
    LayerInfo,
    LayerKey,
    Normalization,
    Preprocess,
    Shape,
)
from .keras_inputs import _check_normalization, _resolve_input_shape
from .keras_layers import (
    _MISSING,
    _channels_first_shape,
    _depthwise_oihw,
    _flatten_channels_first,
    _kind,
    _numpy,
    _pair,
    _param_shapes,
    _recording_call,
    _to_channels_first,
    _to_float32,
    all_layers,
    first_tensor,
    restore_attribute,
    swapped_attributes,
    unique,
    walk,
)
from .output_finder import OutputFinder

__all__ = ["KerasAdapter", "first_tensor"]

FALLBACK_SPATIAL = (64, 64)
"""Dummy ``(H, W)`` for the discovery pass when neither the model nor the user gives a size."""

class _StopForward(BaseException):
    """Ends a recording pass once every requested layer has run.

    A BaseException, so that neither Keras's error decorators (which rewrap ``Exception``) nor
    a user's ``except Exception`` in a subclassed ``call`` swallow or rewrite it; ``finally``
    blocks (Keras's call-context cleanup, our unwrapping) still run.
    """


@dataclass(frozen=True)
class _KerasState:
    """What :meth:`KerasAdapter.snapshot` captures; compare with ``same_state``."""

    variables: tuple[tuple[str, str, tuple[int, ...], bytes, bool], ...]
    trainable: tuple[tuple[str, bool], ...]
    call_attrs: tuple[Any, ...]  # per layer: its instance-level ``call`` or none


class KerasAdapter(Adapter):
    """A Keras 3 model (TensorFlow backend) behind the framework-neutral contract."""

    framework = "keras"

    def __init__(self, model: Any, spec: InputSpec) -> None:
        super().__init__(model, spec)
        # name -> layer object, filled by _discover_layers (every lookup goes through layers()).
        self._objects: dict[str, keras.layers.Layer] = {}

    @classmethod
    def _input_shape(
        cls, model: Any, shape: Shape | None, preprocess: Preprocess
    ) -> tuple[int, int | None, int | None]:
        """Check a Keras 3 model (Sequential, functional or subclassed, channels_last) and
        work out its ``(C, H, W)``: the model's own, with ``shape`` filling in a size the
        model leaves open; ``shape`` is needed for a subclassed model that was never built.
        ``preprocess`` is applied to NHWC tensors.

        Raises
        ------
        TypeError
            ``model`` is not a Keras 3 ``keras.Model``.
        ValueError
            The input shape cannot be found or contradicts ``shape``, the model takes several
            inputs or non-image input, a layer is channels_first, or a Normalization does not
            fit the channel count.
        """
        if not isinstance(model, keras.Model):
            hint = (
                " Keras 2 (tf_keras / tf.keras on TensorFlow < 2.16) models are not supported."
                if type(model).__module__.startswith(("tf_keras", "tensorflow"))
                else " Wrap a single layer in keras.Sequential([keras.Input(...), layer])."
            )
            raise TypeError(
                f"expected a Keras 3 keras.Model, got {type(model).__module__}."
                f"{type(model).__name__}.{hint}"
            )
        for name, layer in walk(model):
            if getattr(layer, "data_format", None) == "channels_first":
                raise ValueError(
                    f"layer {name!r} ({type(layer).__name__}) uses data_format='channels_first'; "
                    "cnn_widgets supports channels_last Keras models only"
                )
        spec_shape = _resolve_input_shape(model, shape)
        if isinstance(preprocess, Normalization):
            _check_normalization(preprocess, spec_shape[0])
        return spec_shape


    # -- discovery -------------------------------------------------------------------------
    def _discover_layers(self) -> list[LayerInfo]:
        entries = walk(self.model)
        h, w = self.spec.spatial or FALLBACK_SPATIAL
        dummy = np.zeros((1, self.spec.channels, h, w), np.float32)
        first_shape: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = dict.fromkeys((n for n, _ in entries), 0)
        finder = OutputFinder()

        def on_output(name: str, output: Any, inputs: tuple[Any, ...] = ()) -> None:
            calls[name] += 1
            tensor = first_tensor(output)
            finder.saw(name, calls[name] == 1, tensor)
            if name not in first_shape:
                first_shape[name] = _channels_first_shape(tensor.shape[1:])

        with self._recording(entries, on_output):
            result = self.model(self._model_input(dummy), training=False)
        # The layer that returned the model's output tensor (a subclassed model may list an
        # unused layer after it); None falls back to the last layer that ran.
        self._output_name = finder.producer(first_tensor(result))

        ran = list(first_shape)  # insertion order = order of first calls
        rest = [n for n, _ in entries if n not in first_shape]
        objects = dict(entries)
        infos = []
        for index, name in enumerate(ran + rest):
            layer = objects[name]
            params = _param_shapes(layer)
            kind = _kind(layer)
            infos.append(
                LayerInfo(
                    name=name,
                    type=type(layer).__name__,
                    output_shape=first_shape.get(name),
                    param_shapes=params,
                    num_params=int(sum(int(np.prod(s)) for s in params.values())),
                    has_filters=kind == "conv2d",
                    index=index,
                    kind=kind,
                    calls=max(calls[name], 1) if name in first_shape else 0,
                )
            )
        self._objects = objects
        return infos

    # -- filters & geometry ----------------------------------------------------------------
    def _filters(self, info: LayerInfo) -> np.ndarray:
        layer = self._object(info)
        if isinstance(layer, keras.layers.SeparableConv2D):
            return _depthwise_oihw(layer.depthwise_kernel)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return _depthwise_oihw(layer.kernel)
        kernel = _to_float32(layer.kernel)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))  # (kh,kw,out,in)
        return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (kh,kw,in/groups,out)

    def conv_config(self, layer: LayerKey) -> ConvConfig:
        """Stride, padding (``"same"``/``"valid"``), dilation and groups of a 2-D conv.

        ``DepthwiseConv2D`` and ``SeparableConv2D`` report ``groups`` = input channels, the
        geometry of the depthwise kernels :meth:`filters` shows; a ``SeparableConv2D`` reports
        ``has_bias=False`` because its bias is added after the pointwise step.
        """
        info = self.layer(layer)
        if not info.has_filters:
            self._refuse_no_filters(info)
        obj = self._object(info)
        if isinstance(obj, keras.layers.SeparableConv2D):
            groups, has_bias = int(obj.depthwise_kernel.shape[2]), False
        elif isinstance(obj, keras.layers.DepthwiseConv2D):
            groups, has_bias = int(obj.kernel.shape[2]), bool(obj.use_bias)
        else:
            groups, has_bias = int(getattr(obj, "groups", 1) or 1), bool(obj.use_bias)
        return ConvConfig(
            stride=_pair(obj.strides),
            padding=str(obj.padding).lower(),
            dilation=_pair(obj.dilation_rate),
            groups=groups,
            has_bias=has_bias,
        )

    # -- activations -----------------------------------------------------------------------
    def _activations(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        def output(name: str, result: Any, args: tuple[Any, ...]) -> np.ndarray:
            array = _to_channels_first(_to_float32(first_tensor(result)))
            if isinstance(self._objects[name], keras.layers.Flatten) and args:
                array = _flatten_channels_first(array, args[0])
            return array

        return self._recorded_pass(batch, names, output, "activations")

    def _recorded_pass(
        self,
        batch: np.ndarray,
        names: Sequence[str],
        pick: Any,
        what: str,
    ) -> dict[str, np.ndarray]:
        """One eager forward pass of ``batch`` that records ``pick(name, output, args)`` at
        each named layer's first call and stops once all are recorded."""
        if batch.ndim != 4 or batch.shape[1] != self.spec.channels:
            raise ValueError(
                f"expected a batch of shape (N, {self.spec.channels}, H, W), got {batch.shape}"
            )
        wanted = list(dict.fromkeys(names))
        if not self._objects:
            self.layers()
        recorded: dict[str, np.ndarray] = {}

        def on_call(name: str, result: Any, args: tuple[Any, ...] = ()) -> None:
            if name in recorded:
                return  # a layer called again: its first call is the one shown
            recorded[name] = pick(name, result, args)
            if len(recorded) == len(wanted):
                raise _StopForward  # the rest of the network is not needed

        entries = [(n, self._objects[n]) for n in wanted]
        with self._recording(entries, on_call), suppress(_StopForward):
            self.model(self._model_input(batch), training=False)
        missing = [n for n in wanted if n not in recorded]
        if missing:
            raise ValueError(
                f"layer(s) {', '.join(repr(n) for n in missing)} did not run in the forward "
                f"pass, so they have no {what}"
            )
        return recorded

    def _recording(self, entries: Sequence[tuple[str, Any]], on_call: Any) -> Any:
        """Wrap each layer's ``call`` so ``on_call(name, output, args)`` sees its eager calls."""
        return self.swapped(
            (layer, "call", _recording_call(name, layer.call, on_call)) for name, layer in entries
        )

    def _model_input(self, batch: np.ndarray) -> Any:
        """``(N, C, H, W)`` [0, 1] numpy -> the preprocessed NHWC tensor the model takes."""
        x = keras.ops.convert_to_tensor(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)))
        return self.preprocess(x)

    def preprocess(self, x: Any) -> Any:
        """The spec's preprocessing of an NHWC tensor of [0, 1] images, as tensor ops (so
        gradients flow through it)."""
        pre = self.spec.preprocess
        if pre is None:
            return x
        if isinstance(pre, Normalization):
            mean = np.asarray(pre.mean, np.float32)
            std = np.asarray(pre.std, np.float32)
            return (x * np.float32(pre.scale) - mean) / std  # broadcasts over the last axis
        return pre(x)

    def _gradients(
        self,
        batch: np.ndarray,
        names: Sequence[str],
        target: Any,
        backward: bool,
        input_grad: bool = True,
        guided: bool = False,
    ) -> Any:
        """See :meth:`Adapter.gradients` (:mod:`.keras_gradients`)."""
        from .keras_gradients import keras_gradients  # imports TensorFlow itself

        return keras_gradients(self, batch, names, target, backward, input_grad, guided)

    def _weight_handles(self, name: str) -> list[Any]:
        layer = self.layer_object(name)
        stats = {id(getattr(layer, a, None)) for a in ("moving_mean", "moving_variance")}
        return [v for v in unique(layer.weights) if id(v) not in stats]

    def _read_weight(self, handle: Any) -> np.ndarray:
        return np.array(_numpy(handle))

    def _write_weight(self, handle: Any, values: np.ndarray) -> None:
        handle.assign(values)
    def _weight_arrays(self) -> Iterator[tuple[str, Any]]:
        for v in unique(self.model.variables):
            yield v.path, _numpy(v)

    # -- never harm the model --------------------------------------------------------------
    def snapshot(self) -> _KerasState:
        layers = all_layers(self.model)
        variables = tuple(
            (
                v.path,
                str(v.dtype),
                tuple(int(d) for d in v.shape),
                np.ascontiguousarray(_numpy(v)).tobytes(),
                bool(v.trainable),
            )
            for v in unique(self.model.variables)
        )
        trainable = tuple((layer.name, bool(layer.trainable)) for layer in layers)
        call_attrs = tuple(layer.__dict__.get("call", _MISSING) for layer in layers)
        return _KerasState(variables, trainable, call_attrs)

    def same_state(self, before: Any, after: Any) -> bool:
        # Bytes, not values: NaN at the same position compares equal and -0.0 != 0.0.
        return (
            before.variables == after.variables
            and before.trainable == after.trainable
            and len(before.call_attrs) == len(after.call_attrs)
            and all(a is b for a, b in zip(before.call_attrs, after.call_attrs, strict=True))
        )

    @contextmanager
    def protect(self) -> Iterator[None]:
        """Run a block, holding the model lock, and restore every ``trainable`` flag (layers
        and variables) and every layer's ``call`` attribute afterwards, also when it raises."""
        with self._lock:
            layers = all_layers(self.model)  # pre-order: a container before its sublayers
            flags = [(layer, layer.trainable) for layer in layers]
            var_flags = [(v, v.trainable) for v in unique(self.model.variables)]
            call_attrs = [(layer, layer.__dict__.get("call", _MISSING)) for layer in layers]
            try:
                yield
            finally:
                # Setting a container's flag cascades to its sublayers, so go outer to inner
                # and touch only what changed; then repair variables a cascade may have flipped.
                for layer, flag in flags:
                    if layer.trainable != flag:
                        layer.trainable = flag
                for variable, flag in var_flags:
                    if variable.trainable != flag:
                        variable.trainable = flag
                for layer, attr in call_attrs:
                    restore_attribute(layer, "call", attr)

    @contextmanager
    def swapped(self, changes: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
        """Give layers other instance attributes (their ``call``, their ``activation``) for
        the block, holding the model lock, and put back exactly what was there afterwards.

        ``changes`` holds ``(layer, attribute name, value)``; it is read lazily, so a value
        may wrap what an earlier change put in place. For code that runs its own passes on
        the model (feature visualization); see :func:`.keras_layers.swapped_attributes`.
        """
        with self._lock, swapped_attributes(changes):
            yield

    def all_layers(self) -> list[Any]:
        """The model and every layer under it (containers, InputLayers, built-in internals),
        pre-order, each once."""
        return all_layers(self.model)

    def layer_object(self, layer: LayerKey | LayerInfo) -> Any:
        """The live ``keras.layers.Layer`` of a listed layer (name, index or LayerInfo)."""
        return self._object(self.layer(layer))

    # -- helpers ---------------------------------------------------------------------------
    def _object(self, info: LayerInfo) -> keras.layers.Layer:
        if not self._objects:
            self.layers()
        return self._objects[info.name]

    # -- layer inputs and conv parameters (for cnn_widgets.analysis) -----------------------
    def _layer_inputs(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Each named layer's first positional input at its first eager call, channels-first
        (the recording wrapper sees the arguments ``call`` gets)."""

        def first_input(name: str, result: Any, args: tuple[Any, ...]) -> np.ndarray:
            if not args:
                raise ValueError(
                    f"layer {name!r} was called with its input as a keyword argument, "
                    "which this backend cannot see"
                )
            return _to_channels_first(_to_float32(first_tensor(args[0])))

        return self._recorded_pass(batch, names, first_input, "inputs")

    def conv_bias(self, layer: LayerKey) -> np.ndarray | None:
        """The layer's ``bias`` as float32, or None without one. ``SeparableConv2D`` gives
        None: its bias is added after the pointwise step, not to the depthwise kernels'
        output that :meth:`filters` and :meth:`conv_config` describe."""
        config = self.conv_config(layer)  # refuses layers without 2-D filters
        if not config.has_bias:
            return None
        return _to_float32(self._object(self.layer(layer)).bias)
