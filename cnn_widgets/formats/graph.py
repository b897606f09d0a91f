"""The one graph form the readers produce and the torch builder consumes.

A Caffe net and an ONNX graph are the same kind of thing: named nodes that read tensors,
write tensors and carry settings and weights. Each reader (:mod:`.caffe`, :mod:`.onnx`)
turns its file into a :class:`Graph` in the builder's small vocabulary of operations
(:data:`OPS`); :func:`cnn_widgets.formats.builder.build` turns any :class:`Graph` into one
``torch.nn.Module``. This module imports neither torch nor protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPS = (
    "activation",  # attrs: kind (relu, leaky_relu, sigmoid, tanh, hardsigmoid, hardswish, clip)
    "affine",  # per-channel scale and/or shift (Caffe Scale / Bias)
    "batchnorm",
    "concat",
    "conv",
    "eltwise",  # sum (with coefficients), sub, prod, div, max, min, mean of its inputs
    "fill",  # a constant of a given shape (ONNX ConstantOfShape); always folded
    "flatten",
    "identity",  # Dropout at inference, ONNX Identity
    "linear",  # Caffe InnerProduct, ONNX Gemm / MatMul with a constant matrix
    "lrn",
    "matmul",  # two tensors computed at run time
    "pad",
    "pool",
    "prelu",
    "reshape",
    "slice",  # Caffe Slice: several outputs along one axis
    "softmax",
    "split",  # Caffe Split: the same tensor under several names
    "squeeze",
    "transpose",
    "unsqueeze",
)
"""The operations :func:`~cnn_widgets.formats.builder.build` knows."""


@dataclass(frozen=True)
class Node:
    """One layer (Caffe) or node (ONNX).

    Attributes
    ----------
    name:
        The layer's or node's name in the file; the built module's submodule name.
    op:
        One of :data:`OPS`.
    source_type:
        The type as the file spells it (``Convolution``, ``Conv``): shown as the layer type.
    inputs:
        Names of the tensors the node reads at run time (or constants, for an operand such
        as an ONNX ``Mul`` by a fixed tensor).
    outputs:
        Names of the tensors it writes; a Caffe layer whose top is its bottom (in place)
        writes a new version of that name, which later layers read.
    attrs:
        Settings (strides, axes, ...), plain Python values.
    consts:
        Values that must be known when the module is built: weights (``weight``, ``bias``,
        ``mean``, ...) and settings carried as tensors (an ONNX ``Reshape``'s shape). Each is
        an array, the name of a constant of the graph, or None for a weight the file does not
        give (the builder then makes one of the right shape).
    """

    name: str
    op: str
    source_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    consts: Mapping[str, np.ndarray | str | None] = field(default_factory=dict)

    def describe(self, file_format: str) -> str:
        """``Caffe layer 'conv1' (Convolution)``: how messages name this node."""
        noun = "layer" if file_format == "Caffe" else "node"
        return f"{file_format} {noun} {self.name!r} ({self.source_type})"


@dataclass
class Graph:
    """A whole model: one image input, nodes in an order where each reads only tensors
    written before it, and the tensor the model returns.

    Attributes
    ----------
    name:
        The net's or graph's name (may be empty).
    format:
        ``"Caffe"`` or ``"ONNX"``, for messages.
    input_name, input_shape:
        The image tensor and its shape without the batch dimension, ``(C, H, W)``; ``H``
        and ``W`` are None when the file leaves them open.
    nodes:
        In run order.
    output:
        The tensor the built module returns.
    constants:
        Tensors known before anything runs (ONNX initializers and ``Constant`` nodes).
    """

    name: str
    format: str
    input_name: str
    input_shape: tuple[int, int | None, int | None]
    nodes: list[Node]
    output: str
    constants: dict[str, np.ndarray] = field(default_factory=dict)
