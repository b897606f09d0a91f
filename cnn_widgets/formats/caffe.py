"""The Caffe reader: a ``deploy.prototxt`` (text) and a ``.caffemodel`` (binary) become a
:class:`~cnn_widgets.formats.graph.Graph`, read with protobuf alone (no Caffe, no generated
``_pb2``: the message classes come from :mod:`.caffe_proto`).

Caffe semantics kept: layers excluded from the TEST phase are skipped; in-place layers (top
== bottom) write a new version of the blob, so each layer's own output stays its own;
weights are matched to layers by name, and layers the weights file holds but the prototxt
lacks (a training snapshot's data and loss layers) are ignored; BatchNorm's third blob
divides its statistics; old V1 nets (the ``layers`` field, enum types, 4-D blobs) load too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format

from .caffe_proto import V1_TYPES, messages
from .graph import Graph, Node

SUPPORTED = (
    "BatchNorm", "Bias", "Concat", "Convolution", "Dropout", "Eltwise", "Flatten",
    "InnerProduct", "Input", "LRN", "PReLU", "Pooling", "ReLU", "Scale", "Sigmoid", "Slice",
    "Softmax", "Split", "TanH",
)  # fmt: skip
"""The Caffe layer types :func:`read_caffe` builds."""

# V1 enum names of the supported types (the rest keep their enum name in messages).
_V1_NAMES = {
    "BATCHNORM": "BatchNorm", "CONCAT": "Concat", "CONVOLUTION": "Convolution",
    "DROPOUT": "Dropout", "ELTWISE": "Eltwise", "FLATTEN": "Flatten",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "POOLING": "Pooling", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SLICE": "Slice", "SOFTMAX": "Softmax", "SPLIT": "Split",
    "TANH": "TanH",
}  # fmt: skip
_V1_BY_NUMBER = {number: name for name, number in V1_TYPES.items()}
_TEST = 1  # caffe.Phase.TEST: a deploy net runs in the test phase


def _layer_type(layer: Any, v1: bool) -> str:
    if not v1:
        return str(layer.type)
    name = _V1_BY_NUMBER.get(int(layer.type), str(layer.type))
    return _V1_NAMES.get(name, name)


def _runs_in_test(layer: Any) -> bool:
    """Caffe's NetStateRule, for the phase only (levels and stages are training matters)."""
    if any(rule.HasField("phase") and rule.phase == _TEST for rule in layer.exclude):
        return False
    if layer.include:
        return any(not rule.HasField("phase") or rule.phase == _TEST for rule in layer.include)
    return True


def _read_bytes(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the Caffe {what} {str(path)!r}: {err}") from err


def parse_prototxt(path: str | Path) -> Any:
    """The ``NetParameter`` of a text prototxt.

    Raises
    ------
    ValueError
        The file cannot be read or is not a prototxt (protobuf's message, with the line).
    """
    net = messages()["NetParameter"]()
    try:
        text = _read_bytes(path, "prototxt").decode("utf-8")
        text_format.Parse(text, net, allow_unknown_field=True)
    except (UnicodeDecodeError, text_format.ParseError) as err:
        raise ValueError(
            f"{str(path)!r} is not a readable Caffe prototxt (a text NetParameter): {err}"
        ) from err
    if not net.layer and not net.layers:
        raise ValueError(f"{str(path)!r} is not a Caffe prototxt: it defines no layers")
    return net


def parse_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Each layer's blobs, by layer name, from a binary ``.caffemodel``.

    Raises
    ------
    ValueError
        The file is truncated or not a binary NetParameter.
    """
    data = _read_bytes(path, "weights file")
    try:
        net = messages()["NetParameter"].FromString(data)
    except pb_message.DecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not a readable .caffemodel (a binary NetParameter; the file "
            f"may be truncated or of another kind): {err}"
        ) from err
    layers = list(net.layer) or list(net.layers)
    if not layers:
        raise ValueError(f"{str(path)!r} is not a .caffemodel: it holds no layers")
    return {layer.name: [_blob(layer.name, blob) for blob in layer.blobs] for layer in layers}


def _blob(layer: str, blob: Any) -> np.ndarray:
    values = blob.double_data if len(blob.double_data) else blob.data
    shape = (
        tuple(blob.shape.dim)
        if blob.HasField("shape")
        else tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))
    )
    array = np.asarray(values, dtype=np.float32)
    if int(np.prod(shape)) != array.size:
        raise ValueError(
            f"the weights of Caffe layer {layer!r} are broken: a blob of shape {shape} holds "
            f"{array.size} values"
        )
    return array.reshape(shape)


def _input(net: Any, layers: Sequence[Any], v1: bool) -> tuple[str, tuple[int, ...]]:
    """The one image input: an Input layer, or the legacy ``input`` fields."""
    found = [
        (layer.top[0], tuple(layer.input_param.shape[0].dim))
        for layer in layers
        if not v1 and layer.type == "Input" and layer.input_param.shape
    ]
    for index, name in enumerate(net.input):
        if index < len(net.input_shape):
            found.append((name, tuple(net.input_shape[index].dim)))
        else:
            found.append((name, tuple(net.input_dim[4 * index : 4 * index + 4])))
    if len(found) != 1 or len(found[0][1]) != 4:
        raise ValueError(
            "a Caffe net for cnn_widgets takes one image input of shape (N, C, H, W); this one "
            f"declares {[(name, shape) for name, shape in found]}"
        )
    return found[0]


def read_caffe(prototxt: str | Path, weights: str | Path | None = None) -> Graph:
    """The :class:`Graph` of a Caffe net.

    Parameters
    ----------
    prototxt:
        Path of the net definition (``deploy.prototxt``).
    weights:
        Path of the trained weights (``.caffemodel``), or None for weights the builder
        makes (shapes only: for looking at the architecture).

    Raises
    ------
    ValueError
        A file that cannot be read, a layer type outside :data:`SUPPORTED` (named, with its
        type), a layer the weights file lacks or whose blobs do not fit.
    """
    net = parse_prototxt(prototxt)
    blobs = parse_caffemodel(weights) if weights is not None else None
    v1 = not net.layer
    layers = [layer for layer in (net.layers if v1 else net.layer) if _runs_in_test(layer)]
    input_name, shape = _input(net, layers, v1)
    current = {input_name: input_name}  # blob name -> the tensor holding its latest version
    written = {input_name}
    nodes = []
    for layer in layers:
        kind = _layer_type(layer, v1)
        if kind == "Input":
            continue
        if kind not in _CONVERTERS:
            raise ValueError(
                f"Caffe layer {layer.name!r} has type {kind!r}, which cnn_widgets cannot "
                f"build. Supported types: {', '.join(SUPPORTED)}"
            )
        missing = [b for b in layer.bottom if b not in current]
        if missing:
            raise ValueError(
                f"Caffe layer {layer.name!r} ({kind}) reads blob {missing[0]!r}, which no "
                "earlier layer writes"
            )
        inputs = tuple(current[b] for b in layer.bottom)
        outputs = []
        for top in layer.top:
            # An in-place layer writes a new version of its blob: later layers read that,
            # while the earlier layer's own output stays what its hooks report.
            tensor = top if top not in written else f"{top}@{layer.name}"
            written.add(tensor)
            current[top] = tensor
            outputs.append(tensor)
        if not outputs:
            raise ValueError(f"Caffe layer {layer.name!r} ({kind}) has no top blob")
        layer_blobs = _layer_blobs(layer.name, kind, blobs)
        op, attrs, consts = _CONVERTERS[kind](layer, layer_blobs)
        nodes.append(Node(layer.name, op, kind, inputs, tuple(outputs), attrs, consts))
    if not nodes:
        raise ValueError(f"the Caffe net {str(prototxt)!r} has no layers after its input")
    return Graph(
        name=net.name,
        format="Caffe",
        input_name=input_name,
        input_shape=shape[1:],  # type: ignore[arg-type]
        nodes=nodes,
        output=nodes[-1].outputs[0],
    )


_WITH_WEIGHTS = {"Convolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "PReLU"}


def _layer_blobs(
    name: str, kind: str, blobs: dict[str, list[np.ndarray]] | None
) -> list[np.ndarray] | None:
    if blobs is None or kind not in _WITH_WEIGHTS:
        return None
    if not blobs.get(name):
        raise ValueError(
            f"the weights file has no weights for Caffe layer {name!r} ({kind}); it has "
            f"weights for: {', '.join(repr(n) for n, b in blobs.items() if b)[:300]}"
        )
    return blobs[name]


def _blobs_or_none(
    name: str, kind: str, blobs: list[np.ndarray] | None, wanted: Sequence[str]
) -> dict[str, np.ndarray | None]:
    """The layer's blobs under the builder's names, or None each when there is no weights
    file. A layer with too few blobs is refused by name."""
    if blobs is None:
        return dict.fromkeys(wanted)
    if len(blobs) < len(wanted):
        raise ValueError(
            f"Caffe layer {name!r} ({kind}) needs {len(wanted)} blobs ({', '.join(wanted)}) "
            f"but the weights file has {len(blobs)}"
        )
    return dict(zip(wanted, blobs, strict=False))


def _pair(
    repeated: Sequence[int], one: int | None, h: int, w: int, has_hw: bool, default: int
) -> tuple[int, int]:
    """A (height, width) setting: the ``_h``/``_w`` fields when given, else the repeated
    field (one value for both, or two), else the single field, else ``default``."""
    if has_hw:
        return (int(h), int(w))
    if len(repeated) == 0 and one is None:
        return (default, default)
    values = list(repeated) if one is None else [one]
    return (int(values[0]), int(values[-1]))


Converted = tuple[str, dict[str, Any], dict[str, Any]]


def _convolution(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.convolution_param
    if p.axis != 1:
        raise ValueError(f"Caffe layer {layer.name!r}: Convolution with axis {p.axis} (only 1)")
    kernel = _pair(p.kernel_size, None, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 0)
    pad = _pair(p.pad, None, p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
    stride = _pair(p.stride, None, p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
    dilation = _pair(p.dilation, None, 1, 1, False, 1)
    if 0 in kernel or not p.num_output:
        raise ValueError(
            f"Caffe layer {layer.name!r}: Convolution needs num_output and a kernel size"
        )
    wanted = ("weight", "bias") if p.bias_term else ("weight",)
    attrs = {
        "out_channels": int(p.num_output), "kernel": kernel, "stride": stride,
        "dilation": dilation, "groups": int(p.group), "pads": (*pad, *pad),
    }  # fmt: skip
    return "conv", attrs, _blobs_or_none(layer.name, "Convolution", blobs, wanted)


def _pooling(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.pooling_param
    if p.pool not in (0, 1):
        raise ValueError(f"Caffe layer {layer.name!r}: only MAX and AVE pooling are supported")
    kernel = None
    if not p.global_pooling:
        kernel = _pair((), p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 0)
        if 0 in kernel:
            raise ValueError(f"Caffe layer {layer.name!r}: Pooling needs a kernel size")
    pad = _pair((), p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
    attrs = {
        "mode": "max" if p.pool == 0 else "avg", "kernel": kernel,
        "stride": _pair((), p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1),
        "pads": (*pad, *pad), "ceil": p.round_mode == 0, "count_include_pad": True,
    }  # fmt: skip
    return "pool", attrs, {}


def _inner_product(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.inner_product_param
    wanted = ("weight", "bias") if p.bias_term else ("weight",)
    consts = _blobs_or_none(layer.name, "InnerProduct", blobs, wanted)
    if p.transpose and consts["weight"] is not None:  # stored (in, out)
        consts["weight"] = np.ascontiguousarray(consts["weight"].reshape(-1, p.num_output).T)
    return "linear", {"out_features": int(p.num_output), "axis": int(p.axis)}, consts


def _batch_norm(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    consts = _blobs_or_none(layer.name, "BatchNorm", blobs, ("mean", "variance", "factor"))
    factor = consts.pop("factor")
    if factor is not None:  # Caffe's moving-average normalizer: statistics / factor
        scale = 0.0 if factor.ravel()[0] == 0 else 1.0 / float(factor.ravel()[0])
        consts = {key: value * np.float32(scale) for key, value in consts.items()}
    return "batchnorm", {"eps": float(layer.batch_norm_param.eps)}, consts


def _scale(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.scale_param
    attrs = {"axis": int(p.axis), "num_axes": int(p.num_axes)}
    wanted = ("weight",) if len(layer.bottom) == 1 else ()
    wanted += ("bias",) if p.bias_term else ()
    return "affine", attrs, _blobs_or_none(layer.name, "Scale", blobs, wanted)


def _bias(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    if len(layer.bottom) != 1:
        raise ValueError(f"Caffe layer {layer.name!r}: Bias with two bottoms is not supported")
    attrs = {"axis": int(layer.bias_param.axis), "num_axes": int(layer.bias_param.num_axes)}
    return "affine", attrs, _blobs_or_none(layer.name, "Bias", blobs, ("bias",))


def _prelu(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    attrs = {"axis": 1, "shared": bool(layer.prelu_param.channel_shared)}
    return "prelu", attrs, _blobs_or_none(layer.name, "PReLU", blobs, ("weight",))


def _lrn(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.lrn_param
    if p.norm_region != 0:
        raise ValueError(
            f"Caffe layer {layer.name!r}: LRN over WITHIN_CHANNEL is not supported "
            "(only ACROSS_CHANNELS)"
        )
    return "lrn", {"size": int(p.local_size), "alpha": p.alpha, "beta": p.beta, "k": p.k}, {}


def _eltwise(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.eltwise_param
    mode = {0: "prod", 1: "sum", 2: "max"}[int(p.operation)]
    coeffs = tuple(p.coeff) if mode == "sum" else ()
    if coeffs and len(coeffs) != len(layer.bottom):
        raise ValueError(
            f"Caffe layer {layer.name!r}: Eltwise has {len(coeffs)} coefficients for "
            f"{len(layer.bottom)} bottoms"
        )
    return "eltwise", {"mode": mode, "coeffs": coeffs}, {}


def _slice(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = layer.slice_param
    points = list(p.slice_point) or len(layer.top)
    return "slice", {"axis": int(p.axis), "points": points}, {}


def _flatten(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    p = getattr(layer, "flatten_param", None)  # V1 layers have none: the defaults
    start, end = (1, -1) if p is None else (int(p.axis), int(p.end_axis))
    return "flatten", {"start": start, "end": end}, {}


def _relu(layer: Any, blobs: list[np.ndarray] | None) -> Converted:
    return "activation", {"kind": "relu", "slope": layer.relu_param.negative_slope}, {}


def _simple(op: str, **attrs: Any) -> Callable[[Any, Any], Converted]:
    return lambda layer, blobs: (op, dict(attrs), {})


_CONVERTERS: dict[str, Callable[[Any, list[np.ndarray] | None], Converted]] = {
    "BatchNorm": _batch_norm,
    "Bias": _bias,
    "Concat": lambda layer, blobs: ("concat", {"axis": int(layer.concat_param.axis)}, {}),
    "Convolution": _convolution,
    "Dropout": _simple("identity"),
    "Eltwise": _eltwise,
    "Flatten": _flatten,
    "InnerProduct": _inner_product,
    "LRN": _lrn,
    "PReLU": _prelu,
    "Pooling": _pooling,
    "ReLU": _relu,
    "Scale": _scale,
    "Sigmoid": _simple("activation", kind="sigmoid"),
    "Slice": _slice,
    "Softmax": lambda layer, blobs: ("softmax", {"axis": int(layer.softmax_param.axis)}, {}),
    "Split": lambda layer, blobs: ("split", {"count": len(layer.top)}, {}),
    "TanH": _simple("activation", kind="tanh"),
}
