"""One builder: any :class:`~cnn_widgets.formats.graph.Graph` becomes one ``torch.nn.Module``.

Each node becomes a leaf submodule named after it (dots, which torch does not allow in a
submodule name, become ``_``), so the torch backend lists exactly the file's layers, in the
file's order. While building, the builder runs every new module once on a zero image of the
input size (when the file gives one): that works out the shapes of weights a file leaves out
(a prototxt without a .caffemodel), checks given weights against what actually flows into
the layer, and names the layer when something does not fit. Nodes whose inputs are all
known constants (an ONNX ``Reshape`` of a weight, ``Unsqueeze`` of a constant) are computed
then and there ("constant folding") and leave no module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .graph import Graph, Node
from .torch_ops import (
    LRN,
    Activation,
    Affine,
    BatchNorm,
    Conv,
    Eltwise,
    Linear,
    Pool,
    PReLU,
    Shaping,
)

__all__ = ["GraphModule", "build"]

# Only operations that merely move or combine values are computed at build time; a node
# that owns weights always stays a layer.
_FOLDABLE = {
    "concat", "eltwise", "fill", "flatten", "identity", "reshape", "slice", "split",
    "squeeze", "transpose", "unsqueeze",
}  # fmt: skip

Shapes = Sequence[tuple[int, ...] | None]
Attrs = Mapping[str, Any]


class GraphModule(nn.Module):
    """A model read from a file: one submodule per layer, run in the file's order.

    Attributes
    ----------
    file_format:
        ``"Caffe"`` or ``"ONNX"``.
    graph_name:
        The net's name in the file.
    """

    def __init__(
        self,
        graph: Graph,
        modules: Mapping[str, nn.Module],
        steps: Sequence[tuple[str, tuple[str, ...], tuple[str, ...]]],
        constants: Mapping[str, torch.Tensor],
    ) -> None:
        super().__init__()
        self.file_format = graph.format
        self.graph_name = graph.name
        self._input = graph.input_name
        self._output = graph.output
        self._steps = tuple(steps)
        for name, module in modules.items():
            self.add_module(name, module)
        # Constants read at run time (an operand of an ONNX Mul) travel with the module.
        self._constant_names: dict[str, str] = {}
        for index, (tensor_name, value) in enumerate(constants.items()):
            self.register_buffer(f"_constant_{index}", value)
            self._constant_names[tensor_name] = f"_constant_{index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensors: dict[str, Any] = {
            name: getattr(self, attr) for name, attr in self._constant_names.items()
        }
        tensors[self._input] = x
        for name, inputs, outputs in self._steps:
            _store(tensors, outputs, self._modules[name](*(tensors[i] for i in inputs)))
        return tensors[self._output]

    def extra_repr(self) -> str:
        return f"{self.file_format} {self.graph_name!r}"


def _store(tensors: dict[str, Any], outputs: Sequence[str], result: Any) -> None:
    results = result if isinstance(result, tuple) else (result,)
    for name, value in zip(outputs, results, strict=False):
        tensors[name] = value


def _tensor(value: Any) -> torch.Tensor:
    array = np.asarray(value)
    dtype = np.float32 if array.dtype.kind == "f" else array.dtype
    # One copy: the module never shares memory with what the reader holds.
    return torch.from_numpy(np.array(array, dtype=dtype, copy=True))


_OWN_ATTRIBUTES = ("file_format", "graph_name")


def _module_name(name: str, used: set[str]) -> str:
    base = name.replace(".", "_") or "node"
    # A name torch's Module already uses, or one of ours (private names start with "_"),
    # gets a trailing "_".
    if hasattr(GraphModule, base) or base.startswith("_") or base in _OWN_ATTRIBUTES:
        base += "_"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate


def build(graph: Graph, *, seed: int = 0) -> GraphModule:
    """Build ``graph`` into a :class:`GraphModule` in eval mode.

    Parameters
    ----------
    graph:
        What a reader made of a file.
    seed:
        Seeds the weights a file does not give (He-normal kernels, zero biases, identity
        normalization), so a prototxt alone gives the same model every time.

    Raises
    ------
    ValueError
        Naming the layer: a weight whose shape does not fit, a tensor no layer writes, a
        layer that fails on the shapes that reach it. Nothing is built then.
    """
    fmt = graph.format
    constants = {name: _tensor(value) for name, value in graph.constants.items()}
    probe: dict[str, torch.Tensor] = {}
    if None not in graph.input_shape:
        probe[graph.input_name] = torch.zeros((1, *graph.input_shape), device="meta")  # type: ignore[misc]
    written = {graph.input_name}
    modules: dict[str, nn.Module] = {}
    steps: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    used: set[str] = set()
    generator = torch.Generator().manual_seed(seed)
    for node in graph.nodes:
        for name in node.inputs:
            if name not in constants and name not in written:
                raise ValueError(
                    f"{node.describe(fmt)} reads {name!r}, which no earlier "
                    f"{'layer' if fmt == 'Caffe' else 'node'} writes"
                )
        values = {
            key: _resolve(node, key, value, constants, fmt) for key, value in node.consts.items()
        }
        shapes = [_shape(name, probe, constants) for name in node.inputs]
        try:
            module = _FACTORIES[node.op](node.attrs, values, shapes, generator)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{node.describe(fmt)}: {err}") from None
        if node.op in _FOLDABLE and all(i in constants for i in node.inputs):
            with torch.no_grad():
                _store(constants, node.outputs, module(*(constants[i] for i in node.inputs)))
            continue
        module.source_type = node.source_type  # type: ignore[assignment]
        name = _module_name(node.name, used)
        modules[name] = module
        steps.append((name, node.inputs, node.outputs))
        written.update(node.outputs)
        _probe(node, module, probe, constants, fmt)
    if graph.output not in written:
        raise ValueError(f"the {fmt} model's output {graph.output!r} is written by no layer")
    runtime = {name for _, inputs, _ in steps for name in inputs}
    model = GraphModule(
        graph, modules, steps, {k: v for k, v in constants.items() if k in runtime}
    )
    return model.eval()


def _shape(
    name: str, probe: Mapping[str, torch.Tensor], constants: Mapping[str, torch.Tensor]
) -> tuple[int, ...] | None:
    tensor = probe.get(name, constants.get(name))
    return None if tensor is None else tuple(tensor.shape)


def _resolve(
    node: Node, key: str, value: Any, constants: Mapping[str, torch.Tensor], fmt: str
) -> np.ndarray | None:
    if value is None or not isinstance(value, str):
        return value
    if value not in constants:
        raise ValueError(
            f"{node.describe(fmt)}: its {key} {value!r} must be known before the model runs, "
            "but it is computed from the input; such graphs are not supported"
        )
    return constants[value].numpy()


def _probe(
    node: Node,
    module: nn.Module,
    probe: dict[str, torch.Tensor],
    constants: Mapping[str, torch.Tensor],
    fmt: str,
) -> None:
    """Run the new module on the input's shapes, when they are known. On the meta device:
    shapes flow and mismatches raise as they would, but nothing is computed."""
    if not all(i in probe or i in constants for i in node.inputs):
        return
    inputs = [probe[i] if i in probe else constants[i].to("meta") for i in node.inputs]
    state = {
        name: tensor.to("meta")
        for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers())
    }
    try:
        with torch.no_grad():
            _store(probe, node.outputs, torch.func.functional_call(module, state, tuple(inputs)))
    except (RuntimeError, ValueError, IndexError) as err:
        shapes = ", ".join(str(tuple(t.shape)[1:]) for t in inputs)
        raise ValueError(
            f"{node.describe(fmt)} does not fit what reaches it (input shapes without the "
            f"batch: {shapes}): {err}"
        ) from None


# -- weights -----------------------------------------------------------------------------


def _leading_ones_dropped(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _weight(
    values: Mapping[str, Any],
    key: str,
    expected: tuple[int, ...] | None,
    make: Callable[[tuple[int, ...]], torch.Tensor],
) -> torch.Tensor | None:
    """The weight ``key``: the file's, checked against ``expected`` (None: not known), or
    ``make(expected)`` when the file gives none. Old Caffe files store every blob as 4-D
    (num, channels, height, width); those fit when only leading 1s differ."""
    if key not in values:
        return None
    given = values[key]
    if given is None:
        if expected is None:
            raise ValueError(f"the file gives no {key} and the input size is not known")
        return make(expected)
    array = np.asarray(given, dtype=np.float32)
    if expected is not None and array.shape != expected:
        if _leading_ones_dropped(array.shape) != _leading_ones_dropped(expected):
            raise ValueError(
                f"the weights file's {key} has shape {array.shape}, but the input and the "
                f"layer's settings make it {expected}"
            )
        array = array.reshape(expected)
    return torch.from_numpy(array.copy())


def _he(generator: torch.Generator) -> Callable[[tuple[int, ...]], torch.Tensor]:
    def make(shape: tuple[int, ...]) -> torch.Tensor:
        fan_in = math.prod(shape[1:]) or 1
        return torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)

    return make


def _zeros(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros(shape)


def _ones(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.ones(shape)


# -- one factory per operation ------------------------------------------------------------


def _conv(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    groups = int(attrs.get("groups", 1))
    expected = None
    if shapes[0] is not None and "out_channels" in attrs:
        channels = shapes[0][1]
        if channels % groups:
            raise ValueError(f"{channels} input channels do not split into {groups} groups")
        expected = (attrs["out_channels"], channels // groups, *attrs["kernel"])
    weight = _weight(values, "weight", expected, _he(gen))
    assert weight is not None  # every reader asks for a weight
    bias = _weight(values, "bias", (weight.shape[0],), _zeros)
    return Conv(weight, bias, attrs.get("stride", (1, 1)), attrs.get("dilation", (1, 1)),
                groups, attrs.get("pads", (0, 0, 0, 0)))  # fmt: skip


def _linear(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    axis = attrs.get("axis", 1)
    if attrs.get("transpose_weight") and values.get("weight") is not None:  # ONNX (in, out)
        values = {**values, "weight": np.asarray(values["weight"]).T}
    expected = None
    if shapes[0] is not None and "out_features" in attrs:
        expected = (attrs["out_features"], math.prod(shapes[0][axis:]))
    weight = _weight(values, "weight", expected, _he(gen))
    assert weight is not None
    bias = _weight(values, "bias", (weight.shape[0],), _zeros)
    return Linear(weight, bias, axis, attrs.get("alpha", 1.0), attrs.get("beta", 1.0))


def _channels(shapes: Shapes, axis: int = 1) -> tuple[int, ...] | None:
    return None if shapes[0] is None else (shapes[0][axis],)


def _batchnorm(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    shape = _channels(shapes)
    mean = _weight(values, "mean", shape, _zeros)
    variance = _weight(values, "variance", shape, _ones)
    assert mean is not None and variance is not None
    weight = _weight(values, "weight", shape, _ones)
    bias = _weight(values, "bias", shape, _zeros)
    return BatchNorm(mean, variance, weight, bias, float(attrs.get("eps", 1e-5)))


def _affine(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    axis, count = attrs.get("axis", 1), attrs.get("num_axes", 1)
    shape = None
    if shapes[0] is not None:
        axis %= len(shapes[0])
        shape = tuple(shapes[0][axis:] if count == -1 else shapes[0][axis : axis + count])
    weight = _weight(values, "weight", shape, _ones)
    return Affine(weight, _weight(values, "bias", shape, _zeros), axis)


def _prelu(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    axis = attrs.get("axis")
    shape = (1,) if attrs.get("shared") else _channels(shapes) if axis is not None else None
    weight = _weight(values, "weight", shape, lambda s: torch.full(s, 0.25))
    assert weight is not None
    return PReLU(weight, axis)


def _pool(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
    return Pool(attrs["mode"], attrs.get("kernel"), attrs.get("stride", (1, 1)),
                attrs.get("pads", (0, 0, 0, 0)), bool(attrs.get("ceil", False)),
                bool(attrs.get("count_include_pad", True)),
                attrs.get("dilation", (1, 1)))  # fmt: skip


def _shaping(op: str) -> Callable[..., nn.Module]:
    def factory(attrs: Attrs, values: Attrs, shapes: Shapes, gen: torch.Generator) -> nn.Module:
        settings = dict(attrs)
        for key, value in values.items():  # settings an ONNX file gives as constant tensors
            settings[key] = None if value is None else [int(v) for v in np.ravel(value)]
        return Shaping(op, **settings)

    return factory


_SHAPING = (
    "concat", "fill", "flatten", "identity", "matmul", "pad", "reshape", "slice", "softmax",
    "split", "squeeze", "transpose", "unsqueeze",
)  # fmt: skip

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "activation": lambda a, v, s, g: Activation(**a),
    "affine": _affine,
    "batchnorm": _batchnorm,
    "conv": _conv,
    "eltwise": lambda a, v, s, g: Eltwise(a["mode"], a.get("coeffs", ())),
    "linear": _linear,
    "lrn": lambda a, v, s, g: LRN(a["size"], a["alpha"], a["beta"], a["k"]),
    "pool": _pool,
    "prelu": _prelu,
    **{op: _shaping(op) for op in _SHAPING},
}
