"""Reading a TensorFlow ``GraphDef``: which operations are a CNN's layers, and what each one
needs to be computed on its own.

Pure protobuf and numpy work on the graph's nodes (no session, no eager op), shared by
:mod:`.tfgraph_sources` (which asks it for the output node before freezing a session's
graph) and :mod:`.tfgraph` (which builds one function per layer from the plan).

Vocabulary: a *tensor* is ``"op:k"``; ``"op"`` alone means ``"op:0"``. The *data path* is
every operation whose value depends on the input's values; a ``Shape`` of a tensor depends
only on its size, so the path stops there (the random mask of a dropout is not a layer).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LAYER_TYPES = frozenset(
    {
        "Conv2D", "DepthwiseConv2dNative", "BiasAdd",
        "Relu", "Relu6", "Elu", "LeakyRelu", "Sigmoid", "Tanh",
        "MaxPool", "AvgPool", "MatMul", "Add", "AddV2", "ConcatV2", "Mean",
        "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Reshape", "Softmax",
    }
)  # fmt: skip
"""Operation types listed as layers (the rest of the data path is computed but not shown)."""

_SIZE_ONLY = frozenset({"Shape", "ShapeN", "Size", "Rank"})
_FLOATS = frozenset({1, 2, 19, 14})  # DT_FLOAT, DT_DOUBLE, DT_HALF, DT_BFLOAT16
_CONTROL_FLOW = frozenset(
    {
        "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
        "While", "StatelessWhile", "If", "StatelessIf", "Case",
        "PartitionedCall", "StatefulPartitionedCall",
    }
)  # fmt: skip
_CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
_PASS_THROUGH = frozenset({"Identity", "ReadVariableOp", "Enter", "Snapshot"})
_PLACEHOLDERS = frozenset({"Placeholder", "PlaceholderWithDefault"})


def op_name(tensor: str) -> str:
    """``"conv/Conv2D:0"`` / ``"^conv"`` -> ``"conv/Conv2D"``."""
    return tensor.lstrip("^").split(":")[0]


def tensor_name(tensor: str) -> str:
    """``"a"`` -> ``"a:0"``; ``"a:1"`` unchanged."""
    return tensor if ":" in tensor else f"{tensor}:0"


@dataclass(frozen=True)
class Plan:
    """What a frozen graph shows: its input, its layers in order, and how to compute each.

    Attributes
    ----------
    input:
        The input placeholder's op name.
    input_shape:
        The placeholder's shape, ``None`` for an unknown dimension (batch first).
    layers:
        Op names of the layers, topologically ordered; the last is the output layer.
    types:
        Op name -> op type, for the layers.
    feeds:
        Op name -> the tensors its function takes: outputs of earlier layers (``"L:0"``) or
        the input (``"x:0"``), the points where the walk back from the op stopped.
    fixed:
        Placeholders other than the input, with the values they take (from ``feed=`` or
        their default) when the graph is frozen.
    """

    input: str
    input_shape: tuple[int | None, ...] | None
    layers: tuple[str, ...]
    types: Mapping[str, str]
    feeds: Mapping[str, tuple[str, ...]]
    fixed: Mapping[str, np.ndarray]

    @property
    def output(self) -> str:
        return self.layers[-1]


class GraphIndex:
    """The nodes of a ``GraphDef`` with their data inputs and consumers."""

    def __init__(self, graph_def: Any) -> None:
        self.nodes = {node.name: node for node in graph_def.node}
        self.position = {name: i for i, name in enumerate(self.nodes)}
        self.inputs: dict[str, list[str]] = {}
        self.controls: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in graph_def.node:
            data = [i for i in node.input if not i.startswith("^")]
            self.inputs[node.name] = data
            self.controls[node.name] = [op_name(i) for i in node.input if i.startswith("^")]
            for source in {op_name(i) for i in node.input}:
                if source in self.consumers:
                    self.consumers[source].append(node.name)

    def op_type(self, name: str) -> str:
        return self.nodes[name].op

    def resolve(self, name: str, what: str) -> str:
        """The op name of ``name`` (``"x"``, ``"x:0"``), or a ValueError with close names."""
        op = op_name(name)
        if op in self.nodes:
            return op
        close = difflib.get_close_matches(op, list(self.nodes), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"{what}={name!r} is no operation of this graph.{hint}")

    def placeholders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.op in _PLACEHOLDERS]

    def is_float(self, name: str) -> bool:
        return self.nodes[name].attr["dtype"].type in _FLOATS

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        attr = self.nodes[name].attr.get("shape")
        if attr is None or attr.shape.unknown_rank:
            return None
        return tuple(None if d.size < 0 else int(d.size) for d in attr.shape.dim)

    def topological(self, names: Iterable[str]) -> list[str]:
        """``names`` in an order where every op comes after the ops it reads (iterative DFS,
        so deep graphs do not hit the recursion limit)."""
        wanted = set(names)
        order: list[str] = []
        state: dict[str, int] = {}
        for root in sorted(wanted, key=self.position.__getitem__):
            stack = [(root, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    state[node] = 2
                    order.append(node)
                    continue
                if state.get(node):
                    continue
                state[node] = 1
                stack.append((node, True))
                for source in self.inputs[node] + self.controls[node]:
                    src = op_name(source)
                    if src in wanted and not state.get(src):
                        stack.append((src, False))
        return order

    def downstream(self, start: str) -> set[str]:
        """Ops on the data path from ``start`` (itself included), stopping at size-only ops."""
        seen, stack = {start}, [start]
        while stack:
            for consumer in self.consumers[stack.pop()]:
                if consumer in seen or self.op_type(consumer) in _SIZE_ONLY:
                    continue
                if not any(op_name(i) in seen for i in self.inputs[consumer]):
                    continue  # reached through a control input only
                seen.add(consumer)
                stack.append(consumer)
        return seen

    def upstream(self, end: str) -> set[str]:
        seen, stack = {end}, [end]
        while stack:
            node = stack.pop()
            for source in self.inputs[node] + self.controls[node]:
                src = op_name(source)
                if src in self.nodes and src not in seen:
                    seen.add(src)
                    stack.append(src)
        return seen

    def const_source(self, tensor: str) -> str | None:
        """The ``Const`` a tensor is read from through identities, or None."""
        name = op_name(tensor)
        while name in self.nodes:
            node = self.nodes[name]
            if node.op == "Const":
                return name
            if node.op not in _PASS_THROUGH or not self.inputs[name]:
                return None
            name = op_name(self.inputs[name][0])
        return None


def find_input(index: GraphIndex, given: str | None, fed: Iterable[str]) -> str:
    """The input placeholder: ``given``, or the only float placeholder not given a value
    (among several, the only one whose data path reaches a convolution)."""
    if given is not None:
        name = index.resolve(given, "input")
        if index.op_type(name) not in _PLACEHOLDERS:
            raise ValueError(
                f"input={given!r} is a {index.op_type(name)} operation, not a placeholder; "
                f"placeholders: {_listing(index.placeholders())}"
            )
        return name
    fed = set(fed)
    floats = [p for p in index.placeholders() if index.is_float(p) and p not in fed]
    floats = [p for p in floats if index.op_type(p) == "Placeholder"] or floats
    if len(floats) > 1:
        convs = [
            p for p in floats
            if any(index.op_type(n) in ("Conv2D", "DepthwiseConv2dNative")
                   for n in index.downstream(p))
        ]  # fmt: skip
        floats = convs if len(convs) == 1 else floats
    if len(floats) != 1:
        found = "no float placeholder" if not floats else f"several: {_listing(floats)}"
        raise ValueError(
            f"cannot tell which placeholder is the image input ({found}); name it with "
            f"input=... (placeholders: {_listing(index.placeholders()) or 'none'})"
        )
    return floats[0]


def make_plan(
    index: GraphIndex,
    input: str | None = None,
    output: str | None = None,
    feed: Mapping[str, Any] | None = None,
) -> Plan:
    """Work out a graph's layers.

    Raises
    ------
    ValueError
        No usable input placeholder, a name that is no op (close names suggested), an output
        the input does not reach, a placeholder on the way without a value, or control flow.
    """
    feed = {index.resolve(getattr(k, "name", k), "feed"): v for k, v in (feed or {}).items()}
    source = find_input(index, input, feed)
    reached = index.downstream(source)
    free = _needs_unfed(index, source, feed)
    if output is None:
        end = _default_output(index, reached, free)
    else:
        end = index.resolve(output, "output")
        if end not in reached:
            raise ValueError(
                f"output={output!r} does not depend on the input {source!r}; outputs that do "
                f"include {_listing(_sinks(index, reached, free))}"
            )
    path = (reached & index.upstream(end)) - free
    if end in free:
        _refuse_unfed(index, end, free)
    layers = [n for n in index.topological(path) if index.op_type(n) in LAYER_TYPES]
    if not layers:
        raise ValueError(
            f"no layer operation lies between the input {source!r} and {end!r}; layer "
            f"types: {', '.join(sorted(LAYER_TYPES))}"
        )
    flow = sorted(n for n in index.upstream(end) if index.op_type(n) in _CONTROL_FLOW)
    calls = [n for n in flow if index.op_type(n) in _CALLS]
    if calls:  # kept whole by freezing: XLA-compiled (Keras's grouped conv on CPU), say
        raise ValueError(
            f"the graph computes {end!r} through function calls TensorFlow does not inline "
            f"({_listing(calls)}; a function compiled with jit_compile=True, say), which "
            "cannot be split into layers; name an earlier output=... or export the model "
            "without them"
        )
    if flow:
        raise ValueError(
            f"the graph computes {end!r} with control flow ({_listing(flow)}), which cannot "
            "be split into layers; export the model without loops or conditionals"
        )
    _check_layout(index, layers)
    fixed = _fixed_values(index, index.upstream(end), source, feed)
    layer_set = set(layers)
    feeds = {name: _feeds(index, name, layer_set, source) for name in layers}
    types = {name: index.op_type(name) for name in layers}
    return Plan(source, index.shape(source), tuple(layers), types, feeds, fixed)


def _needs_unfed(index: GraphIndex, source: str, feed: Mapping[str, Any]) -> set[str]:
    """Ops that need a placeholder other than the input and those given a value: labels,
    the loss, its gradients, the optimizer's updates."""
    unfed = {
        p for p in index.placeholders()
        if p != source and p not in feed and index.op_type(p) == "Placeholder"
    }  # fmt: skip
    bad: set[str] = set()
    for name in index.topological(index.nodes):
        if name in unfed or any(
            op_name(i) in bad for i in index.inputs[name] + index.controls[name]
        ):
            bad.add(name)
    return bad


def _sinks(index: GraphIndex, reached: set[str], free: set[str]) -> list[str]:
    """Layer ops on the data path with no layer op after them, in graph order."""
    live = reached - free
    layers = {n for n in live if index.op_type(n) in LAYER_TYPES}
    order = index.topological(live)
    feeds_a_layer: set[str] = set()  # ops with a layer op somewhere after them
    for name in reversed(order):
        if any(c in layers or c in feeds_a_layer for c in index.consumers[name] if c in live):
            feeds_a_layer.add(name)
    return [n for n in order if n in layers and n not in feeds_a_layer]


def _default_output(index: GraphIndex, reached: set[str], free: set[str]) -> str:
    """The last Softmax the input reaches (a loss may add to its output: ``log(y + eps)``),
    else the last sink."""
    sinks = _sinks(index, reached, free)
    if not sinks:
        raise ValueError("no layer operation depends on the input alone")
    live = reached - free
    softmax = [s for s in index.topological(reached) if index.op_type(s) == "Softmax"]
    if softmax and softmax[-1] not in live:  # the head needs a value, e.g. dropout's keep_prob
        _refuse_unfed(index, softmax[-1], free)
    return ([s for s in softmax if s in live] or sinks)[-1]


def _refuse_unfed(index: GraphIndex, end: str, free: set[str]) -> None:
    names = sorted(p for p in index.upstream(end) if p in free and p in index.placeholders())
    raise ValueError(
        f"output {end!r} needs placeholders other than the input ({_listing(names)}); give "
        "them values with feed={name: value}, or name an earlier output=..."
    )


def _feeds(index: GraphIndex, layer: str, layers: set[str], source: str) -> tuple[str, ...]:
    """Walk back from ``layer``'s data inputs to the first outputs of other layers or the
    input: the tensors the layer's own function is fed (in first-seen order)."""
    feeds: dict[str, None] = {}
    stack = list(reversed(index.inputs[layer]))
    seen: set[str] = set()
    while stack:
        tensor = tensor_name(stack.pop())
        if tensor in seen:
            continue
        seen.add(tensor)
        producer, k = op_name(tensor), tensor.split(":")[1]
        if producer == source or (producer in layers and k == "0"):
            feeds[tensor] = None
        else:
            stack.extend(reversed(index.inputs[producer]))
    return tuple(feeds)


def _fixed_values(
    index: GraphIndex, needed: set[str], source: str, feed: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    import tensorflow as tf  # only to decode a default value's TensorProto

    fixed = {}
    for name in index.placeholders():
        if name == source or name not in needed:
            continue
        node = index.nodes[name]
        if name in feed:
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            fixed[name] = np.asarray(feed[name], dtype=dtype)
        elif node.op == "PlaceholderWithDefault":
            default = index.const_source(index.inputs[name][0])
            if default is not None:
                fixed[name] = tf.make_ndarray(index.nodes[default].attr["value"].tensor)
    return fixed


def _check_layout(index: GraphIndex, layers: list[str]) -> None:
    for name in layers:
        fmt = index.nodes[name].attr.get("data_format")
        if fmt is not None and fmt.s.decode() not in ("", "NHWC"):
            raise ValueError(
                f"layer {name!r} ({index.op_type(name)}) uses data_format "
                f"{fmt.s.decode()!r}; graphs are read channels-last (NHWC) only"
            )


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (" ..." if len(names) > limit else "")
