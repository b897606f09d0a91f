"""TensorFlow graphs: a TF1 session, a SavedModel, a frozen ``.pb``, a ``tf.function``.

Every source is frozen into one constant ``GraphDef`` (:mod:`.tfgraph_sources`), read into
a plan of layer operations (:mod:`.tfgraph_plan`) and run as a Keras model of one layer per
operation (:mod:`.tfgraph_model`). :class:`TFGraphAdapter` is a :class:`.KerasAdapter` over
that model, so activations, recording, never-harm bookkeeping and feature visualization are
the Keras backend's own; what differs is what the graph knows and Keras does not: layer names
and types are the graph's op names and types, filters come from a convolution's constant
kernel, and "never harm" covers the user's source (a session's graph and variables, a
function's variables, the files) besides the wrapping model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .base import ConvConfig, LayerInfo, LayerKey, Normalization, Preprocess, Shape
from .keras import KerasAdapter
from .keras_inputs import _check_normalization
from .keras_layers import _channels_first_shape, _depthwise_oihw, _to_channels_first
from .tfgraph_model import GraphModel, graph_index
from .tfgraph_plan import op_name, tensor_name
from .tfgraph_sources import freeze, is_session

__all__ = ["TFGraphAdapter", "load_tf_graph"]

_CONVS = ("Conv2D", "DepthwiseConv2dNative")
_BIASES = ("BiasAdd", "Add", "AddV2")


@dataclass(frozen=True)
class _GraphState:
    """:meth:`TFGraphAdapter.snapshot`: the wrapping model's Keras state and the source's."""

    keras: Any
    source: tuple[Any, ...]


class TFGraphAdapter(KerasAdapter):
    """A frozen TensorFlow graph behind the framework-neutral contract.

    ``model`` is the :class:`.GraphModel` (a Keras model) so that Keras-side code runs on it
    unchanged; the user's session, function or path is :attr:`source`.
    """

    @property
    def source(self) -> Any:
        return self.model.source

    @classmethod
    def _input_shape(
        cls, model: Any, shape: Shape | None, preprocess: Preprocess
    ) -> tuple[int, int | None, int | None]:
        if not isinstance(model, GraphModel):
            raise TypeError(
                f"expected a model from cnn_widgets.load_tf_graph, got {type(model).__name__}"
            )
        spec_shape = _graph_input_shape(model, shape)
        if isinstance(preprocess, Normalization):
            _check_normalization(preprocess, spec_shape[0])
        return spec_shape

    # -- discovery ---------------------------------------------------------------------------
    def _discover_layers(self) -> list[LayerInfo]:
        c, h, w = self.spec.shape
        if h is None or w is None:  # an image placeholder with open sizes: any size goes
            h, w = 64, 64
        values = self.model.forward(tf.zeros((1, h, w, c), tf.float32))
        index = graph_index(self.model)
        infos = []
        for position, layer in enumerate(self.model.graph_layers):
            params = self._params(layer.op)
            kind = {"MatMul": "dense"}.get(layer.op_type, "other")
            if layer.op_type in _CONVS and "kernel" in params and len(params["kernel"]) == 4:
                kind = "conv2d"
            infos.append(
                LayerInfo(
                    name=layer.op,
                    type=index.op_type(layer.op),
                    output_shape=_channels_first_shape(values[tensor_name(layer.op)].shape[1:]),
                    param_shapes=params,
                    num_params=int(sum(int(np.prod(s)) for s in params.values())),
                    has_filters=kind == "conv2d",
                    index=position,
                    kind=kind,
                )
            )
        self._objects = {layer.op: layer for layer in self.model.graph_layers}
        self._output_name = self.model.plan.output
        return infos

    def _params(self, op: str) -> dict[str, tuple[int, ...]]:
        """The constant operands of a layer op: ``kernel`` (Conv2D, depthwise, MatMul),
        ``bias`` (a 1-D constant added), ``scale``/``offset``/``mean``/``variance`` (batch
        norm), in the graph's own layout."""
        index = graph_index(self.model)
        op_type = index.op_type(op)
        names = {"Conv2D": ("", "kernel"), "DepthwiseConv2dNative": ("", "kernel"),
                 "MatMul": ("", "kernel"), "BiasAdd": ("", "bias"), "Add": ("", "bias"),
                 "AddV2": ("", "bias")}.get(op_type)  # fmt: skip
        if op_type.startswith("FusedBatchNorm"):
            names = ("", "scale", "offset", "mean", "variance")
        params = {}
        for label, tensor in zip(names or (), index.inputs[op], strict=False):
            value = self.model.const(tensor) if label else None
            if value is not None:
                params[label] = tuple(int(d) for d in value.shape)
        return params

    # -- filters & geometry ------------------------------------------------------------------
    def layer(self, key: LayerKey | LayerInfo) -> LayerInfo:
        """As :meth:`Adapter.layer`; besides, a convolution's kernel name (the variable the
        user's graph reads it from, ``"model/center/kernel"`` or ``"Variable:0"``, as
        ``tf.trainable_variables()`` lists it) stands for that convolution, so
        ``filters(model, W_conv1.name)`` works."""
        if isinstance(key, str) and key not in {i.name for i in self.layers()}:
            key = self._conv_of_kernel(key)
        return super().layer(key)

    def _conv_of_kernel(self, name: str) -> str:
        index = graph_index(self.model)
        for info in self.conv_layers():
            if index.const_source(index.inputs[info.name][1]) == op_name(name):
                return info.name
        if op_name(name) in index.nodes:
            convs = ", ".join(repr(i.name) for i in self.conv_layers()[:12])
            raise ValueError(
                f"{name!r} is a {index.op_type(op_name(name))} operation of the graph, neither "
                f"a layer nor a kernel a 2-D convolution reads; layers with filters: "
                f"{convs or 'none'}"
            )
        return name  # not a node either: the usual "no layer named" error with suggestions

    def _filters(self, info: LayerInfo) -> np.ndarray:
        kernel = np.asarray(self._kernel(info), np.float32)
        if info.type == "DepthwiseConv2dNative":
            return _depthwise_oihw(kernel)
        return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (kh, kw, in, out)

    def _kernel(self, info: LayerInfo) -> np.ndarray:
        return self.model.const(graph_index(self.model).inputs[info.name][1])

    def conv_config(self, layer: LayerKey) -> ConvConfig:
        info = self.layer(layer)
        if not info.has_filters:
            self._refuse_no_filters(info)
        attr = self.model.node(info.name).attr
        padding = attr["padding"].s.decode().lower()
        if padding == "explicit":
            pads = list(attr["explicit_paddings"].list.i)  # NHWC: (before, after) per axis
            padding = (int(pads[2]), int(pads[4]))
        dilations = list(attr["dilations"].list.i) or [1, 1, 1, 1]
        kernel = self._kernel(info)
        if info.type == "DepthwiseConv2dNative":
            groups = int(kernel.shape[2])
        else:  # TensorFlow's Conv2D groups itself when the kernel sees fewer input channels
            index = graph_index(self.model)
            channels = self.model.static_shape(index.inputs[info.name][0])[-1]
            groups = int(channels) // int(kernel.shape[2]) if channels else 1
        return ConvConfig(
            stride=(int(attr["strides"].list.i[1]), int(attr["strides"].list.i[2])),
            padding=padding,
            dilation=(int(dilations[1]), int(dilations[2])),
            groups=groups,
            has_bias=self._bias(info) is not None,
        )

    def _bias(self, info: LayerInfo) -> np.ndarray | None:
        """The 1-D constant a ``BiasAdd``/``Add`` right after the convolution adds."""
        index = graph_index(self.model)
        out = self._filters(info).shape[0]
        for consumer in index.consumers[info.name]:
            if index.op_type(consumer) not in _BIASES:
                continue
            for tensor in index.inputs[consumer]:
                value = self.model.const(tensor)
                if value is not None and value.shape == (out,):
                    return value.astype(np.float32)
        return None

    def conv_bias(self, layer: LayerKey) -> np.ndarray | None:
        self.conv_config(layer)  # refuses layers without 2-D filters
        return self._bias(self.layer(layer))

    def _layer_inputs(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Each layer op's first data input, computed from the image by a pruned function."""
        index = graph_index(self.model)
        tensors = [tensor_name(index.inputs[name][0]) for name in names]
        values = self.model.tensors(self._model_input(batch), tensors)
        return {
            n: _to_channels_first(np.asarray(v, np.float32))
            for n, v in zip(names, values, strict=True)
        }

    # -- never harm the model ----------------------------------------------------------------
    def snapshot(self) -> _GraphState:
        return _GraphState(super().snapshot(), source_state(self.source))

    def same_state(self, before: Any, after: Any) -> bool:
        return before.source == after.source and super().same_state(before.keras, after.keras)


def _graph_input_shape(model: GraphModel, given: Shape | None) -> Shape:
    """``(C, H, W)`` of the images the graph takes.

    An image placeholder ``[N, H, W, C]`` says it (``given`` fills open sizes); a flat or
    3-D placeholder takes images whose element count matches, from ``given`` or from the
    rank-4 ``Reshape`` the graph applies to its input.
    """
    shape = model.placeholder_shape
    name = model.plan.input
    if shape is None:  # no shape at all: images as the user says
        if given is None or None in given:
            raise ValueError(
                f"input {name!r} declares no shape; pass input_shape=(C, H, W) for the "
                "images it takes"
            )
        return given
    if len(shape) == 4:
        if shape[3] is None:
            raise ValueError(f"input {name!r} has shape {shape} without a channel count")
        c, h, w = shape[3], shape[1], shape[2]
        if given is not None:
            if (
                given[0] != c
                or (h is not None and given[1] not in (None, h))
                or (w is not None and given[2] not in (None, w))
            ):
                raise ValueError(
                    f"input_shape={given} does not match the input {name!r} of shape "
                    f"{shape} (channels last: (C, H, W) = {(c, h, w)})"
                )
            h, w = h or given[1], w or given[2]
        return (c, h, w)
    size = int(np.prod([d for d in shape[1:] if d is not None])) if shape[1:] else 0
    if given is None:
        given = _reshaped_image(model)
    if given is None or None in given or None in shape[1:]:
        raise ValueError(
            f"input {name!r} has shape {shape}, not an image (N, H, W, C); pass "
            f"input_shape=(C, H, W) with C*H*W = {size or 'its size'}"
        )
    if int(np.prod(given)) != size:
        raise ValueError(
            f"input_shape={tuple(given)} has {int(np.prod(given))} values but the input "
            f"{name!r} of shape {shape} takes {size}"
        )
    return tuple(given)  # type: ignore[return-value]


def _reshaped_image(model: GraphModel) -> Shape | None:
    """``(C, H, W)`` when the graph's first op on the input is a Reshape to ``[-1, H, W, C]``
    (``tf.reshape(x, [-1, 28, 28, 1])``, as the seeds write it)."""
    index = graph_index(model)
    for consumer in index.consumers[model.plan.input]:
        if index.op_type(consumer) == "Reshape":
            shape = model.static_shape(consumer)
            if shape is not None and len(shape) == 4 and None not in shape[1:]:
                return (shape[3], shape[1], shape[2])
    return None


def source_state(source: Any) -> tuple[Any, ...]:
    """What "never harm" keeps of a graph source: a session's graph and variable values; a
    function's or module's variables; a file's or directory's bytes (as digests)."""
    if is_session(source):
        graph_def = source.graph.as_graph_def().SerializeToString(deterministic=True)
        variables = source.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        values = source.run(variables) if variables else []
        return (
            hashlib.sha256(graph_def).hexdigest(),
            tuple(
                (v.name, np.asarray(a).tobytes()) for v, a in zip(variables, values, strict=True)
            ),
        )
    if isinstance(source, (str, Path)):
        path = Path(source)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return tuple((str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files)
    variables = getattr(source, "variables", None)
    if variables is None and hasattr(source, "get_concrete_function"):
        variables = source.get_concrete_function().variables
    return tuple(
        (v.name, bool(v.trainable), np.asarray(v.numpy()).tobytes()) for v in variables or ()
    )


def load_tf_graph(
    source: Any,
    *,
    input: str | None = None,
    output: str | None = None,
    feed: dict[str, Any] | None = None,
    signature: str = "serving_default",
    input_shape: Sequence[int | None] | None = None,
    preprocess: str | Normalization | Callable[[Any], Any] | None = None,
    labels: Sequence[str] | None = None,
) -> TFGraphAdapter:
    """Open a TensorFlow graph like a Keras model: layers, filters, activations, feature
    visualization.

    Parameters
    ----------
    source:
        A ``tf.compat.v1.Session`` (its graph and current variable values), a SavedModel
        directory, a frozen ``GraphDef`` ``.pb`` file, a ``tf.function`` with an input
        signature (or a ConcreteFunction), or a ``tf.Module`` whose ``__call__`` is one. It
        is frozen into a constant graph; nothing is added to it and no variable changes.
    input:
        The image placeholder (``"x"`` or ``"x:0"``); found alone when exactly one float
        placeholder is left once ``feed`` is given.
    output:
        The op the layers lead to; by default the last layer op the input reaches, a
        ``Softmax`` preferred. Ops needing other placeholders (labels, the loss, training
        ops) are never layers.
    feed:
        Values of other placeholders (``{"keep_prob": 1.0}``), fixed when the graph is frozen.
    signature:
        The SavedModel signature to open.
    input_shape, preprocess, labels:
        As for :func:`cnn_widgets.adapt`. A placeholder that is not an image (``[None,
        784]``) takes images of ``input_shape`` (or of the ``[-1, H, W, C]`` shape the graph
        reshapes it to) flattened to its shape.

    Layers are the graph's layer ops (Conv2D, BiasAdd, Relu, MaxPool, MatMul, Softmax, ...)
    in topological order, named by their op names, typed by their op types.

    Raises
    ------
    TypeError
        ``source`` is none of the above, or a keyword has the wrong type.
    ValueError
        No or several float placeholders (listed), a name that is no op (close names
        suggested), a missing signature (the signatures listed), control flow, an
        uninitialized session, or an input of no image shape without ``input_shape``.
    """
    from . import _parse_input_shape, _parse_preprocess

    if not isinstance(signature, str):
        raise TypeError(f"signature must be a str, got {type(signature).__name__}")
    if feed is not None and not isinstance(feed, dict):
        raise TypeError(f"feed must be a dict of placeholder name -> value, got {feed!r}")
    graph_def, plan = freeze(source, input=input, output=output, feed=feed, signature=signature)
    model = GraphModel(graph_def, plan, source)
    adapter = TFGraphAdapter.create(
        model,
        _parse_input_shape(input_shape),
        _parse_preprocess(preprocess),
        tuple(str(x) for x in labels) if labels is not None else None,
    )
    return adapter  # type: ignore[return-value]
