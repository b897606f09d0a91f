"""Caffe's message types, built at run time from a table: no generated ``_pb2`` module, so
any protobuf release that has ``descriptor_pool`` and ``message_factory`` reads the files.

The table is the part of Caffe's schema (``src/caffe/proto/caffe.proto`` of BVLC Caffe,
BSD-2-Clause, Copyright (c) 2014-2017 The Regents of the University of California (Regents)
and the contributors) that the supported layers read, with the field numbers, types and
defaults of that schema, so binary ``.caffemodel`` files parse exactly. Fields not listed
(learning-rate multipliers, fillers, engines, data sources) are skipped by the text reader
and kept as unknown fields by the binary one.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "int64": _T.TYPE_INT64, "int32": _T.TYPE_INT32, "uint32": _T.TYPE_UINT32,
    "float": _T.TYPE_FLOAT, "double": _T.TYPE_DOUBLE, "bool": _T.TYPE_BOOL,
    "string": _T.TYPE_STRING,
}  # fmt: skip

# message -> [(field, number, "optional"/"repeated", type, default)], where a type that is
# not a scalar names a message or an enum of this table.
_MESSAGES: dict[str, list[tuple[str, int, str, str, str | None]]] = {
    "BlobShape": [("dim", 1, "repeated", "int64", None)],
    "BlobProto": [
        ("shape", 7, "optional", "BlobShape", None),
        ("data", 5, "repeated", "float", None),
        ("double_data", 8, "repeated", "double", None),
        ("num", 1, "optional", "int32", "0"),
        ("channels", 2, "optional", "int32", "0"),
        ("height", 3, "optional", "int32", "0"),
        ("width", 4, "optional", "int32", "0"),
    ],
    "NetParameter": [
        ("name", 1, "optional", "string", None),
        ("input", 3, "repeated", "string", None),
        ("input_shape", 8, "repeated", "BlobShape", None),
        ("input_dim", 4, "repeated", "int32", None),
        ("layer", 100, "repeated", "LayerParameter", None),
        ("layers", 2, "repeated", "V1LayerParameter", None),
    ],
    "NetStateRule": [("phase", 1, "optional", "Phase", None)],
    "LayerParameter": [
        ("name", 1, "optional", "string", None),
        ("type", 2, "optional", "string", None),
        ("bottom", 3, "repeated", "string", None),
        ("top", 4, "repeated", "string", None),
        ("phase", 10, "optional", "Phase", None),
        ("blobs", 7, "repeated", "BlobProto", None),
        ("include", 8, "repeated", "NetStateRule", None),
        ("exclude", 9, "repeated", "NetStateRule", None),
        ("batch_norm_param", 139, "optional", "BatchNormParameter", None),
        ("bias_param", 141, "optional", "BiasParameter", None),
        ("concat_param", 104, "optional", "ConcatParameter", None),
        ("convolution_param", 106, "optional", "ConvolutionParameter", None),
        ("dropout_param", 108, "optional", "DropoutParameter", None),
        ("eltwise_param", 110, "optional", "EltwiseParameter", None),
        ("flatten_param", 135, "optional", "FlattenParameter", None),
        ("inner_product_param", 117, "optional", "InnerProductParameter", None),
        ("input_param", 143, "optional", "InputParameter", None),
        ("lrn_param", 118, "optional", "LRNParameter", None),
        ("pooling_param", 121, "optional", "PoolingParameter", None),
        ("prelu_param", 131, "optional", "PReLUParameter", None),
        ("relu_param", 123, "optional", "ReLUParameter", None),
        ("scale_param", 142, "optional", "ScaleParameter", None),
        ("softmax_param", 125, "optional", "SoftmaxParameter", None),
        ("slice_param", 126, "optional", "SliceParameter", None),
    ],
    "V1LayerParameter": [
        ("bottom", 2, "repeated", "string", None),
        ("top", 3, "repeated", "string", None),
        ("name", 4, "optional", "string", None),
        ("include", 32, "repeated", "NetStateRule", None),
        ("exclude", 33, "repeated", "NetStateRule", None),
        ("type", 5, "optional", "LayerType", None),
        ("blobs", 6, "repeated", "BlobProto", None),
        ("concat_param", 9, "optional", "ConcatParameter", None),
        ("convolution_param", 10, "optional", "ConvolutionParameter", None),
        ("dropout_param", 12, "optional", "DropoutParameter", None),
        ("eltwise_param", 24, "optional", "EltwiseParameter", None),
        ("inner_product_param", 17, "optional", "InnerProductParameter", None),
        ("lrn_param", 18, "optional", "LRNParameter", None),
        ("pooling_param", 19, "optional", "PoolingParameter", None),
        ("relu_param", 30, "optional", "ReLUParameter", None),
        ("softmax_param", 39, "optional", "SoftmaxParameter", None),
        ("slice_param", 31, "optional", "SliceParameter", None),
    ],
    "BatchNormParameter": [
        ("use_global_stats", 1, "optional", "bool", None),
        ("eps", 3, "optional", "float", "1e-05"),
    ],
    "BiasParameter": [
        ("axis", 1, "optional", "int32", "1"),
        ("num_axes", 2, "optional", "int32", "1"),
    ],
    "ConcatParameter": [
        ("axis", 2, "optional", "int32", "1"),
        ("concat_dim", 1, "optional", "uint32", "1"),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, "optional", "uint32", None),
        ("bias_term", 2, "optional", "bool", "true"),
        ("pad", 3, "repeated", "uint32", None),
        ("kernel_size", 4, "repeated", "uint32", None),
        ("stride", 6, "repeated", "uint32", None),
        ("dilation", 18, "repeated", "uint32", None),
        ("pad_h", 9, "optional", "uint32", "0"),
        ("pad_w", 10, "optional", "uint32", "0"),
        ("kernel_h", 11, "optional", "uint32", None),
        ("kernel_w", 12, "optional", "uint32", None),
        ("stride_h", 13, "optional", "uint32", None),
        ("stride_w", 14, "optional", "uint32", None),
        ("group", 5, "optional", "uint32", "1"),
        ("axis", 16, "optional", "int32", "1"),
    ],
    "DropoutParameter": [("dropout_ratio", 1, "optional", "float", "0.5")],
    "EltwiseParameter": [
        ("operation", 1, "optional", "EltwiseOp", "SUM"),
        ("coeff", 2, "repeated", "float", None),
    ],
    "FlattenParameter": [
        ("axis", 1, "optional", "int32", "1"),
        ("end_axis", 2, "optional", "int32", "-1"),
    ],
    "InnerProductParameter": [
        ("num_output", 1, "optional", "uint32", None),
        ("bias_term", 2, "optional", "bool", "true"),
        ("axis", 5, "optional", "int32", "1"),
        ("transpose", 6, "optional", "bool", "false"),
    ],
    "InputParameter": [("shape", 1, "repeated", "BlobShape", None)],
    "LRNParameter": [
        ("local_size", 1, "optional", "uint32", "5"),
        ("alpha", 2, "optional", "float", "1"),
        ("beta", 3, "optional", "float", "0.75"),
        ("norm_region", 4, "optional", "NormRegion", "ACROSS_CHANNELS"),
        ("k", 5, "optional", "float", "1"),
    ],
    "PoolingParameter": [
        ("pool", 1, "optional", "PoolMethod", "MAX"),
        ("pad", 4, "optional", "uint32", "0"),
        ("pad_h", 9, "optional", "uint32", "0"),
        ("pad_w", 10, "optional", "uint32", "0"),
        ("kernel_size", 2, "optional", "uint32", None),
        ("kernel_h", 5, "optional", "uint32", None),
        ("kernel_w", 6, "optional", "uint32", None),
        ("stride", 3, "optional", "uint32", "1"),
        ("stride_h", 7, "optional", "uint32", None),
        ("stride_w", 8, "optional", "uint32", None),
        ("global_pooling", 12, "optional", "bool", "false"),
        ("round_mode", 13, "optional", "RoundMode", "CEIL"),
    ],
    "PReLUParameter": [("channel_shared", 2, "optional", "bool", "false")],
    "ReLUParameter": [("negative_slope", 1, "optional", "float", "0")],
    "ScaleParameter": [
        ("axis", 1, "optional", "int32", "1"),
        ("num_axes", 2, "optional", "int32", "1"),
        ("bias_term", 4, "optional", "bool", "false"),
    ],
    "SliceParameter": [
        ("axis", 3, "optional", "int32", "1"),
        ("slice_point", 2, "repeated", "uint32", None),
        ("slice_dim", 1, "optional", "uint32", "1"),
    ],
    "SoftmaxParameter": [("axis", 2, "optional", "int32", "1")],
}

# V1 layer types: the enum of the old "layers" field, value for value.
V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}  # fmt: skip

# enum -> (the message it is nested in, or None for a file-level enum; its values)
_ENUMS: dict[str, tuple[str | None, dict[str, int]]] = {
    "Phase": (None, {"TRAIN": 0, "TEST": 1}),
    "LayerType": ("V1LayerParameter", V1_TYPES),
    "EltwiseOp": ("EltwiseParameter", {"PROD": 0, "SUM": 1, "MAX": 2}),
    "NormRegion": ("LRNParameter", {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}),
    "PoolMethod": ("PoolingParameter", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}),
    "RoundMode": ("PoolingParameter", {"CEIL": 0, "FLOOR": 1}),
}


def _type_name(name: str) -> str:
    parent = _ENUMS[name][0] if name in _ENUMS else None
    return f".caffe.{parent}.{name}" if parent else f".caffe.{name}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="cnn_widgets_caffe.proto", package="caffe", syntax="proto2"
    )
    messages = {}
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        messages[name] = message
        for field_name, number, label, kind, default in fields:
            field = message.field.add(name=field_name, number=number)
            field.label = _T.LABEL_REPEATED if label == "repeated" else _T.LABEL_OPTIONAL
            if kind in _TYPES:
                field.type = _TYPES[kind]
                if label == "repeated" and kind not in ("string",):
                    field.options.packed = kind in ("float", "double", "int64") and name in (
                        "BlobProto", "BlobShape"
                    )  # fmt: skip
            else:
                field.type = _T.TYPE_ENUM if kind in _ENUMS else _T.TYPE_MESSAGE
                field.type_name = _type_name(kind)
            if default is not None:
                field.default_value = default
    for name, (parent, values) in _ENUMS.items():
        owner = messages[parent].enum_type if parent else proto.enum_type
        enum = owner.add(name=name)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    return proto


@functools.cache
def messages() -> dict[str, Any]:
    """The message classes by name (``NetParameter``, ``BlobProto``, ...), built once."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
        for name in _MESSAGES
    }
