"""A frozen TensorFlow graph as a Keras model: one Keras layer per graph layer operation.

Why a Keras model: the Keras backend already knows how to record a layer's output, stop a
pass after the last wanted layer, and run feature visualization (a traced step, the dead-ReLU
warm-up) on Keras layers. Wrapping each graph layer as a Keras layer gives a frozen graph all
of that without a third copy of the TensorFlow-side code.

How it computes: the frozen ``GraphDef`` is imported once into a
``tf.compat.v1.wrap_function`` (placeholders other than the input replaced by their fixed
values through ``input_map``), and each layer gets the *pruned* function that computes its op
from the tensors its plan says it is fed (earlier layers' outputs or the input). Pruned
wrapped functions are ordinary ConcreteFunctions: eager, differentiable, callable inside a
``tf.function``.

``Relu`` and ``Relu6`` layers compute their op's input with the pruned function and apply
``self.activation`` (``keras.activations.relu`` / ``relu6``) themselves: the same values, and
the attribute feature visualization swaps for its gradient-redirecting ReLU during the
warm-up, exactly as for a ``Conv2D(activation="relu")``.
"""

from __future__ import annotations

import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .tfgraph_plan import GraphIndex, Plan, op_name, tensor_name

_NOT_CONSTANT = frozenset(
    {"Placeholder", "PlaceholderWithDefault", "RandomUniform", "RandomStandardNormal",
     "TruncatedNormal", "RandomUniformInt", "Multinomial"}
)  # fmt: skip
_ACTIVATIONS = {"Relu": keras.activations.relu, "Relu6": keras.activations.relu6}


class GraphLayer(keras.layers.Layer):
    """One layer operation of a frozen graph; called with its feed tensors (one tensor, or a
    list when the op reads several layers' outputs)."""

    def __init__(self, op: str, op_type: str, function: Any, index: int) -> None:
        # Keras 3 refuses "/" in layer names; the adapter lists the op name itself.
        super().__init__(name=f"op{index}_{_keras_name(op)}")
        self.op, self.op_type = op, op_type
        # Not a tracked attribute: a ConcreteFunction is no layer state, only computation.
        object.__setattr__(self, "_function", function)
        if op_type in _ACTIVATIONS:
            self.activation = _ACTIVATIONS[op_type]

    def call(self, inputs: Any) -> Any:
        args = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        value = self._function(*args)
        return self.activation(value) if self.op_type in _ACTIVATIONS else value

    def compute_output_spec(self, inputs: Any) -> Any:
        raise NotImplementedError("graph layers run eagerly or traced, never symbolically")


class GraphSoftmax(keras.layers.Activation):
    """A ``Softmax`` op fed its logits directly by the layer before: a Keras ``Activation``,
    so that feature visualization's class objective reads its input, the logits, as it does
    for a Keras softmax layer."""

    def __init__(self, op: str, index: int) -> None:
        super().__init__("softmax", name=f"op{index}_{_keras_name(op)}")
        self.op, self.op_type = op, "Softmax"


class GraphModel(keras.Model):
    """The layers of a frozen graph, run in topological order on NHWC images.

    Attributes (not Keras state)
    ----------------------------
    graph_def, plan:
        The frozen graph and what :func:`.make_plan` read from it.
    source:
        The user's object (session, function, path) the graph was frozen from.
    """

    def __init__(self, graph_def: Any, plan: Plan, source: Any) -> None:
        super().__init__(name="tf_graph")
        for key, value in (("graph_def", graph_def), ("plan", plan), ("source", source)):
            object.__setattr__(self, key, value)

        def imported() -> None:
            fixed = {tensor_name(k): tf.constant(v) for k, v in plan.fixed.items()}
            tf.import_graph_def(graph_def, input_map=fixed, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        object.__setattr__(self, "_wrapped", wrapped)
        graph = wrapped.graph
        self._placeholder = graph.get_tensor_by_name(tensor_name(plan.input))
        layers = []
        for index, name in enumerate(plan.layers):
            op = graph.get_operation_by_name(name)
            if op.type == "Softmax" and plan.feeds[name] == (op.inputs[0].name,):
                layers.append(GraphSoftmax(name, index))
                continue
            fetch = op.inputs[0] if op.type in _ACTIVATIONS else op.outputs[0]
            feeds = [graph.get_tensor_by_name(t) for t in plan.feeds[name]]
            function = wrapped.prune(feeds=feeds, fetches=fetch)
            layers.append(GraphLayer(name, op.type, function, index))
        self.graph_layers = layers

    # -- the input ---------------------------------------------------------------------------
    @property
    def placeholder_shape(self) -> tuple[int | None, ...] | None:
        """The input placeholder's shape; None when even its rank is unknown (Lucid-era
        frozen graphs declare ``input`` so)."""
        shape = self._placeholder.shape
        return None if shape.rank is None else tuple(shape.as_list())

    def static_shape(self, tensor: str) -> tuple[int | None, ...] | None:
        shape = self._wrapped.graph.get_tensor_by_name(tensor_name(tensor)).shape
        return None if shape.rank is None else tuple(shape.as_list())

    def graph_input(self, images: Any) -> Any:
        """NHWC images -> what the placeholder takes: the same tensor for an image
        placeholder; flattened (``[None, 784]``) or without the channel axis (``[None, H,
        W]``) when the placeholder has another rank and the element counts agree."""
        images = tf.cast(images, self._placeholder.dtype)
        shape = self.placeholder_shape
        if shape is None or len(shape) == 4:
            return images
        return tf.reshape(images, [-1, *(-1 if d is None else d for d in shape[1:])])

    # -- running -----------------------------------------------------------------------------
    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.forward(inputs)[tensor_name(self.plan.output)]

    def forward(self, inputs: Any) -> dict[str, Any]:
        """Every layer's output (``"op:0"`` -> tensor) for NHWC ``inputs``; each layer is
        called through ``Layer.__call__`` so that recording wrappers see it."""
        values = {tensor_name(self.plan.input): self.graph_input(inputs)}
        for layer in self.graph_layers:
            args = [values[t] for t in self.plan.feeds[layer.op]]
            values[tensor_name(layer.op)] = layer(args[0] if len(args) == 1 else args)
        return values

    def tensors(self, images: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """Values of arbitrary graph tensors (``"op:k"``) for NHWC ``images``: a function
        pruned from the input to them, built for this call."""
        pruned = self.__dict__.setdefault("_pruned", {})
        key = tuple(names)
        if key not in pruned:  # pruning costs more than a small forward pass: once per set
            graph = self._wrapped.graph
            pruned[key] = self._wrapped.prune(
                feeds=[self._placeholder], fetches=[graph.get_tensor_by_name(n) for n in names]
            )
        return [np.asarray(v.numpy()) for v in pruned[key](self.graph_input(images))]

    def const(self, tensor: str) -> np.ndarray | None:
        """The value of a tensor that depends on no placeholder (a kernel read from a
        ``Const`` through identities, a bias reshaped for broadcasting), or None."""
        tensor = tensor_name(tensor)
        cache = self.__dict__.setdefault("_consts", {})
        if tensor not in cache:
            index = graph_index(self)
            name = index.const_source(tensor)
            if name is not None:
                cache[tensor] = tf.make_ndarray(index.nodes[name].attr["value"].tensor)
            elif any(index.op_type(n) in _NOT_CONSTANT for n in index.upstream(op_name(tensor))):
                cache[tensor] = None
            else:
                fetch = self._wrapped.graph.get_tensor_by_name(tensor)
                cache[tensor] = np.asarray(self._wrapped.prune(feeds=[], fetches=fetch)().numpy())
        return cache[tensor]

    def node(self, name: str) -> Any:
        return graph_index(self).nodes[op_name(name)]


def _keras_name(op: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", op)


def graph_index(model: GraphModel) -> GraphIndex:
    """The :class:`.GraphIndex` of the model's frozen graph (built once)."""
    index = model.__dict__.get("_graph_index")
    if index is None:
        index = GraphIndex(model.graph_def)
        object.__setattr__(model, "_graph_index", index)
    return index
