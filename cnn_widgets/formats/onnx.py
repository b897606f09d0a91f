"""The ONNX reader: a ``.onnx`` file becomes a :class:`~cnn_widgets.formats.graph.Graph`.

One node per ONNX node, named after the node (or after its first output when the node has
no name), for the operators CNNs use, opsets 7 to 22. Weights may be initializers or
``Constant`` nodes; constants computed from constants (a ``Reshape`` of a weight) are folded
by the builder. Settings an operator takes as inputs in newer opsets (``Clip``'s bounds,
``Pad``'s pads, ``Squeeze``'s axes) are read from constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .graph import Graph, Node

OPSETS = (7, 22)
"""The opsets of the default domain that :func:`read_onnx` reads (inclusive)."""

Converted = tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]


class _Reader:
    """What converters need besides the node: the opset and the constants known so far."""

    def __init__(self, opset: int, constants: dict[str, np.ndarray]) -> None:
        self.opset, self.constants = opset, constants

    def value(self, node: Any, index: int, default: Any = None) -> Any:
        """The constant behind input ``index`` (absent or empty: ``default``)."""
        if index >= len(node.input) or not node.input[index]:
            return default
        name = node.input[index]
        if name not in self.constants:
            raise ValueError(
                f"ONNX node {_name(node)!r} ({node.op_type}): input {index} ({name!r}) must be a "
                "constant, but it is computed at run time; such graphs are not supported"
            )
        return self.constants[name]


def _name(node: Any) -> str:
    return node.name or node.output[0]


def _attrs(node: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _load(path: str | Path) -> Any:
    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx.load raises by file kind: DecodeError, ParseError, ...
        raise ValueError(
            f"{str(path)!r} is not a readable ONNX model (protobuf could not parse it): {err}"
        ) from err
    if not model.graph.node or model.ir_version <= 0:
        raise ValueError(f"{str(path)!r} is not an ONNX model: it has no graph nodes")
    return model


def read_onnx(path: str | Path, input_shape: Sequence[int] | None = None) -> Graph:
    """The :class:`Graph` of an ONNX model.

    Parameters
    ----------
    path:
        The ``.onnx`` file.
    input_shape:
        ``(C, H, W)`` of the image input, for files that leave the size open, or to use
        another size than the file declares.

    Raises
    ------
    ValueError
        A file that is no ONNX model, an opset outside :data:`OPSETS`, more than one image
        input, or an operator this reader does not build (named, with the node and opset).
    """
    model = _load(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSETS[0] <= opset <= OPSETS[1]:
        raise ValueError(
            f"{str(path)!r} uses ONNX opset {opset}; cnn_widgets reads opsets "
            f"{OPSETS[0]} to {OPSETS[1]}"
        )
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    image = _image_input(graph, constants, input_shape, path)
    reader = _Reader(opset, constants)
    nodes = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            _refuse(node, opset, f"domain {node.domain!r}")
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant(_attrs(node))
            continue
        convert = _CONVERTERS.get(node.op_type)
        if convert is None:
            _refuse(node, opset)
        op, inputs, attrs, consts = convert(node, _attrs(node), reader)
        outputs = tuple(node.output) if op == "split" else tuple(node.output[:1])
        nodes.append(Node(_name(node), op, node.op_type, inputs, outputs, attrs, consts))
    return Graph(
        name=graph.name,
        format="ONNX",
        input_name=image[0],
        input_shape=image[1],
        nodes=nodes,
        output=graph.output[0].name,
        constants=constants,
    )


def _image_input(
    graph: Any, constants: Mapping[str, np.ndarray], shape: Sequence[int] | None, path: Any
) -> tuple[str, tuple[int, int | None, int | None]]:
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ValueError(
            f"{str(path)!r} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
            "cnn_widgets reads models with one image input"
        )
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    if shape is not None:
        return inputs[0].name, tuple(shape)  # type: ignore[return-value]
    if len(dims) != 4 or dims[1] is None:
        raise ValueError(
            f"the input {inputs[0].name!r} of {str(path)!r} has shape {dims}; pass "
            "input_shape=(C, H, W) for an image input (N, C, H, W)"
        )
    return inputs[0].name, (int(dims[1]), dims[2], dims[3])


def _constant(attrs: Mapping[str, Any]) -> np.ndarray:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise ValueError(f"a Constant node with {sorted(attrs)} is not supported")


def _refuse(node: Any, opset: int, why: str = "") -> None:
    extra = f" from {why}" if why else ""
    hint = (
        " (transposed convolutions are not supported)" if node.op_type == "ConvTranspose" else ""
    )
    raise ValueError(
        f"ONNX operator {node.op_type!r}{extra} (node {_name(node)!r}, opset {opset}) is not "
        f"supported{hint}. Supported operators: {', '.join(SUPPORTED)}"
    )


def _ints(values: Any, default: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values) if values is not None else tuple(default)


def _pads(node: Any, attrs: Mapping[str, Any]) -> tuple[int, int, int, int] | str:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return auto
    return _ints(attrs.get("pads"), (0, 0, 0, 0))  # type: ignore[return-value]


def _conv(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    settings = {
        "stride": _ints(attrs.get("strides"), (1, 1)),
        "dilation": _ints(attrs.get("dilations"), (1, 1)),
        "groups": int(attrs.get("group", 1)),
        "pads": _pads(node, attrs),
    }
    if len(settings["stride"]) != 2:
        raise ValueError(f"ONNX node {_name(node)!r}: only 2-D convolutions are supported")
    consts = {"weight": node.input[1]}
    if len(node.input) > 2 and node.input[2]:
        consts["bias"] = node.input[2]
    return "conv", (node.input[0],), settings, consts


def _pool(mode: str) -> Callable[[Any, Mapping[str, Any], _Reader], Converted]:
    def convert(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
        if node.op_type.startswith("Global"):
            return "pool", (node.input[0],), {"mode": mode, "kernel": None}, {}
        pads = _pads(node, attrs)
        if isinstance(pads, str):
            raise ValueError(f"ONNX node {_name(node)!r}: {node.op_type} with auto_pad {pads} "
                             "is not supported; give explicit pads")  # fmt: skip
        settings = {
            "mode": mode, "kernel": _ints(attrs["kernel_shape"], ()),
            "stride": _ints(attrs.get("strides"), (1, 1)), "pads": pads,
            "ceil": bool(attrs.get("ceil_mode", 0)),
            "count_include_pad": bool(attrs.get("count_include_pad", 0)),
            "dilation": _ints(attrs.get("dilations"), (1, 1)),
        }  # fmt: skip
        return "pool", (node.input[0],), settings, {}

    return convert


def _batchnorm(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    keys = ("weight", "bias", "mean", "variance")
    return "batchnorm", (node.input[0],), {"eps": float(attrs.get("epsilon", 1e-5))}, dict(
        zip(keys, node.input[1:5], strict=True)
    )


def _gemm(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    if attrs.get("transA", 0):
        raise ValueError(f"ONNX node {_name(node)!r}: Gemm with transA=1 is not supported")
    consts = {"weight": node.input[1]}
    if len(node.input) > 2 and node.input[2]:
        consts["bias"] = node.input[2]
    settings = {"axis": 1, "alpha": float(attrs.get("alpha", 1.0)),
                "beta": float(attrs.get("beta", 1.0)),
                "transpose_weight": not attrs.get("transB", 0)}  # fmt: skip
    return "linear", (node.input[0],), settings, consts


def _matmul(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    if node.input[1] in reader.constants and reader.constants[node.input[1]].ndim == 2:
        settings = {"axis": None, "transpose_weight": True}
        return "linear", (node.input[0],), settings, {"weight": node.input[1]}
    return "matmul", tuple(node.input[:2]), {}, {}


def _activation(kind: str, **defaults: float) -> Callable[..., Converted]:
    def convert(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
        settings = {key: float(attrs.get(key, value)) for key, value in defaults.items()}
        if kind == "leaky_relu":
            return "activation", (node.input[0],), {"kind": "relu", "slope": settings["alpha"]}, {}
        return "activation", (node.input[0],), {"kind": kind, **settings}, {}

    return convert


def _clip(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    if reader.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low, high = reader.value(node, 1), reader.value(node, 2)
    bounds = {
        "min": None if low is None else float(np.asarray(low)),
        "max": None if high is None else float(np.asarray(high)),
    }
    return "activation", (node.input[0],), {"kind": "clip", **bounds}, {}


def _eltwise(mode: str) -> Callable[..., Converted]:
    return lambda node, attrs, reader: ("eltwise", tuple(node.input), {"mode": mode}, {})


def _axes(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an input from 13 on."""
    axes = attrs.get("axes") if reader.opset < 13 else reader.value(node, 1)
    return None if axes is None else [int(a) for a in np.ravel(axes)]


def _shaping(op: str) -> Callable[..., Converted]:
    def convert(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
        x = (node.input[0],)
        if op == "flatten":
            return op, x, {"start": int(attrs.get("axis", 1)), "matrix": True}, {}
        if op == "reshape":
            return op, x, {"allowzero": int(attrs.get("allowzero", 0))}, {"shape": node.input[1]}
        if op in ("squeeze", "unsqueeze"):
            return op, x, {"axes": _axes(node, attrs, reader)}, {}
        if op == "transpose":
            if "perm" not in attrs:
                raise ValueError(f"ONNX node {_name(node)!r}: Transpose without perm")
            return op, x, {"perm": list(attrs["perm"])}, {}
        if op == "concat":
            return op, tuple(node.input), {"axis": int(attrs["axis"])}, {}
        if op == "softmax":
            legacy = reader.opset < 13  # before 13: softmax over everything from axis on
            axis = int(attrs.get("axis", 1 if legacy else -1))
            return op, x, {"axis": axis, "legacy": legacy}, {}
        return "identity", x, {}, {}

    return convert


def _pad(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    if reader.opset < 11:
        pads, value = attrs.get("pads"), attrs.get("value", 0.0)
    else:
        pads, value = reader.value(node, 1), reader.value(node, 2, 0.0)
        if reader.value(node, 3) is not None:
            raise ValueError(f"ONNX node {_name(node)!r}: Pad with axes is not supported")
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("constant", "reflect", "edge"):
        raise ValueError(f"ONNX node {_name(node)!r}: Pad mode {mode!r} is not supported")
    pads = [int(p) for p in np.ravel(pads)]
    half = len(pads) // 2
    # ONNX lists all begins, then all ends, first axis first; F.pad wants the last axis
    # first, begin and end together.
    torch_pads = [p for axis in reversed(range(half)) for p in (pads[axis], pads[half + axis])]
    settings = {"pads": torch_pads, "mode": "replicate" if mode == "edge" else mode,
                "value": float(np.asarray(value))}  # fmt: skip
    return "pad", (node.input[0],), settings, {}


def _fill(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    settings = {"value": value.ravel()[0].item(), "dtype": str(value.dtype)}
    return "fill", (), settings, {"shape": node.input[0]}


def _lrn(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    settings = {
        "size": int(attrs["size"]), "alpha": float(attrs.get("alpha", 1e-4)),
        "beta": float(attrs.get("beta", 0.75)), "k": float(attrs.get("bias", 1.0)),
    }  # fmt: skip
    return "lrn", (node.input[0],), settings, {}


def _prelu(node: Any, attrs: Mapping[str, Any], reader: _Reader) -> Converted:
    return "prelu", (node.input[0],), {"axis": None}, {"weight": node.input[1]}


_CONVERTERS: dict[str, Callable[[Any, Mapping[str, Any], _Reader], Converted]] = {
    "Add": _eltwise("sum"),
    "AveragePool": _pool("avg"),
    "BatchNormalization": _batchnorm,
    "Clip": _clip,
    "Concat": _shaping("concat"),
    "ConstantOfShape": _fill,
    "Conv": _conv,
    "Div": _eltwise("div"),
    "Dropout": _shaping("identity"),
    "Elu": _activation("elu", alpha=1.0),
    "Flatten": _shaping("flatten"),
    "Gemm": _gemm,
    "GlobalAveragePool": _pool("avg"),
    "GlobalMaxPool": _pool("max"),
    "HardSigmoid": _activation("hardsigmoid", alpha=0.2, beta=0.5),
    "HardSwish": _activation("hardswish"),
    "Identity": _shaping("identity"),
    "LeakyRelu": _activation("leaky_relu", alpha=0.01),
    "LRN": _lrn,
    "MatMul": _matmul,
    "Max": _eltwise("max"),
    "MaxPool": _pool("max"),
    "Mean": _eltwise("mean"),
    "Min": _eltwise("min"),
    "Mul": _eltwise("prod"),
    "Pad": _pad,
    "PRelu": _prelu,
    "Relu": _activation("relu"),
    "Reshape": _shaping("reshape"),
    "Sigmoid": _activation("sigmoid"),
    "Softmax": _shaping("softmax"),
    "Squeeze": _shaping("squeeze"),
    "Sub": _eltwise("sub"),
    "Sum": _eltwise("sum"),
    "Tanh": _activation("tanh"),
    "Transpose": _shaping("transpose"),
    "Unsqueeze": _shaping("unsqueeze"),
}

SUPPORTED = ("Constant", *sorted(_CONVERTERS))
"""The ONNX operators :func:`read_onnx` reads."""
