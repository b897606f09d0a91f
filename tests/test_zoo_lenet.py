"""The bundled LeNet (one set of weights, PyTorch and Keras), the sample images, and the zoo's
front door (``cnn_widgets.zoo.load``)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import cnn_widgets.zoo as zoo
from cnn_widgets.zoo import lenet

DIGITS = [f"digit{d}" for d in range(10)]


def _digit_batch() -> tuple[np.ndarray, np.ndarray]:
    """The 10 bundled digits as an ``(10, 1, 28, 28)`` float batch in [0, 1], and their classes."""
    images = np.stack([zoo.sample_image(name) for name in DIGITS]).astype(np.float32) / 255.0
    return images[:, None], np.arange(10)


@pytest.fixture(scope="module")
def torch_lenet():
    import torch  # noqa: F401  (a missing package must fail, not skip)
    return lenet.build_torch()


@pytest.fixture(scope="module")
def keras_lenet():
    import keras  # noqa: F401  (a missing package must fail, not skip)
    return lenet.build_keras()


def _torch_logits(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


def _keras_logits(model, batch: np.ndarray) -> np.ndarray:
    import keras

    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    return keras.ops.convert_to_numpy(model(nhwc, training=False))


# -- the model ------------------------------------------------------------------------------


def test_lenet_layers_have_the_same_names_in_both_frameworks(torch_lenet, keras_lenet):
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2"]
    assert [name for name, _ in torch_lenet.named_children()] == names
    assert [layer.name for layer in keras_lenet.layers] == names
    assert not torch_lenet.training


def test_torch_and_keras_lenet_hold_bit_identical_weights(torch_lenet, keras_lenet):
    state = {k: v.detach().numpy() for k, v in torch_lenet.state_dict().items()}
    stored = lenet.torch_weights()
    assert set(state) == set(stored)
    for name, array in stored.items():
        assert state[name].dtype == np.float32
        assert np.array_equal(state[name], array), name

    for conv in ("conv1", "conv2"):
        kernel, bias = keras_lenet.get_layer(conv).get_weights()
        # Keras (kh, kw, in, out) back to torch (out, in, kh, kw): every filter, bit for bit.
        assert np.array_equal(kernel.transpose(3, 2, 0, 1), state[f"{conv}.weight"])
        assert np.array_equal(bias, state[f"{conv}.bias"])
    fc1_kernel, fc1_bias = keras_lenet.get_layer("fc1").get_weights()
    # Undo the (C, H, W) -> (H, W, C) reordering of fc1's input rows.
    as_torch = fc1_kernel.reshape(5, 5, 16, 64).transpose(3, 2, 0, 1).reshape(64, 400)
    assert np.array_equal(as_torch, state["fc1.weight"])
    assert np.array_equal(fc1_bias, state["fc1.bias"])
    fc2_kernel, fc2_bias = keras_lenet.get_layer("fc2").get_weights()
    assert np.array_equal(fc2_kernel.T, state["fc2.weight"])
    assert np.array_equal(fc2_bias, state["fc2.bias"])


def test_torch_and_keras_lenet_logits_agree_on_every_sample_digit(torch_lenet, keras_lenet):
    batch, _ = _digit_batch()
    torch_out = _torch_logits(torch_lenet, batch)
    keras_out = _keras_logits(keras_lenet, batch)
    assert torch_out.shape == keras_out.shape == (10, 10)
    # A wrong flatten order or kernel layout gives errors of the logits' own size, not 1e-4.
    scale = np.abs(torch_out).max(axis=1, keepdims=True)
    assert np.all(np.abs(keras_out - torch_out) <= 1e-4 * scale)


def test_torch_lenet_classifies_the_sample_digits(torch_lenet):
    batch, classes = _digit_batch()
    assert (_torch_logits(torch_lenet, batch).argmax(1) == classes).sum() >= 9


def test_keras_lenet_classifies_the_sample_digits(keras_lenet):
    batch, classes = _digit_batch()
    assert (_keras_logits(keras_lenet, batch).argmax(1) == classes).sum() >= 9


def test_lenet_weights_are_small_float32_and_record_their_accuracy():
    from importlib.resources import files

    size = files("cnn_widgets.zoo").joinpath("data", "lenet.npz").stat().st_size
    assert size < 100_000
    weights = lenet.torch_weights()
    assert weights["conv1.weight"].shape == (8, 1, 5, 5)
    assert weights["fc1.weight"].shape == (64, 400)
    assert all(w.dtype == np.float32 for w in weights.values())
    meta = lenet.metadata()
    assert meta["test_accuracy"] >= 0.97
    assert meta["test_size"] == 500
    assert isinstance(meta["seed"], int) and isinstance(meta["date"], str)


def test_lenet_first_layer_filters_are_alive_and_smooth():
    # Trained from a scaled-down init, every conv1 filter moved away from its tiny start
    # (std ~0.01 marks a dead one) and is smooth like a stroke or edge detector: neighbouring
    # taps differ by well under the filter's spread. For 5x5 white noise that ratio is ~1.1
    # (below 0.84 in none of 1000 draws); the trained filters sit at 0.4-0.75.
    filters = lenet.torch_weights()["conv1.weight"][:, 0]
    spread = filters.std(axis=(1, 2))
    assert np.all(spread > 0.05)
    step = (
        np.abs(np.diff(filters, axis=1)).mean(axis=(1, 2))
        + np.abs(np.diff(filters, axis=2)).mean(axis=(1, 2))
    ) / 2
    assert np.all(step < 0.8 * spread)


# -- sample images --------------------------------------------------------------------------


@pytest.mark.parametrize("name", zoo.list_samples())
def test_sample_image_loads_every_listed_name(name):
    if name in zoo.SAMPLE_IMAGES:
        import skimage  # noqa: F401  (a missing package must fail, not skip)
    image = zoo.sample_image(name)
    assert image.dtype == np.uint8
    if name.startswith("digit"):
        assert image.shape == (28, 28)
    elif name == "camera":
        assert image.ndim == 2
    else:
        assert image.ndim == 3 and image.shape[2] == 3
    assert image.max() > image.min()


def test_sample_image_returns_a_copy_each_call():
    first = zoo.sample_image("digit3")
    first[:] = 0
    assert zoo.sample_image("digit3").any()


def test_list_samples_names_photos_then_ten_digits():
    names = zoo.list_samples()
    assert names[: len(zoo.SAMPLE_IMAGES)] == list(zoo.SAMPLE_IMAGES)
    assert names[len(zoo.SAMPLE_IMAGES) :] == DIGITS


def test_sample_image_rejects_an_unknown_name_listing_valid_names():
    with pytest.raises(ValueError, match="no sample image named 'chelsae'") as err:
        zoo.sample_image("chelsae")
    message = str(err.value)
    assert "Did you mean 'chelsea'" in message
    for name in zoo.list_samples():
        assert name in message


def test_sample_photo_without_scikit_image_says_which_extra_to_install(monkeypatch):
    from cnn_widgets.zoo import images

    images._photo.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(ImportError, match=r"cnn_widgets\[demo\]"):
            zoo.sample_image("rocket")
        assert zoo.sample_image("digit1").shape == (28, 28)  # digits need no scikit-image
    finally:
        images._photo.cache_clear()


# -- the front door -------------------------------------------------------------------------


def test_zoo_load_rejects_an_unknown_framework_listing_choices():
    with pytest.raises(ValueError, match="framework='tensorflow'") as err:
        zoo.load("lenet", framework="tensorflow")
    for choice in ("'torch'", "'keras'", "'auto'"):
        assert choice in str(err.value)


def test_zoo_load_rejects_an_unknown_model_listing_names():
    with pytest.raises(ValueError, match="Did you mean 'lenet'") as err:
        zoo.load("lenet5", framework="torch")
    assert "efficientnet_lite0" in str(err.value) and "'imagenet'" in str(err.value)


def test_zoo_load_without_the_framework_names_the_pip_extra(monkeypatch):
    # A None entry in sys.modules makes the package look uninstalled to find_spec and import.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"cnn_widgets\[torch\]"):
        zoo.load("lenet", framework="torch")
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r"cnn_widgets\[torch\].*cnn_widgets\[tensorflow\]"):
        zoo.load("lenet", framework="auto")
    # A builder that fails to import its framework says the same.
    with pytest.raises(ImportError, match=r"cnn_widgets\[tensorflow\]"):
        zoo.MODELS["lenet"].build("keras")


def test_zoo_auto_framework_takes_keras_when_torch_is_missing(monkeypatch):
    import keras
    monkeypatch.setitem(sys.modules, "torch", None)
    assert isinstance(zoo.build("lenet", framework="auto"), keras.Model)


def test_zoo_resolves_the_imagenet_alias_and_default_model():
    assert zoo.info("imagenet") is zoo.MODELS[zoo.DEFAULT_MODEL]
    assert zoo.DEFAULT_MODEL == "efficientnet_lite0"
    record = zoo.info("lenet")
    assert record.resolved_labels() == tuple("0123456789")
    assert record.resolved_preprocess() is None
    assert record.input_shape == (1, 28, 28)
    assert record.default_image in zoo.list_samples()


def test_zoo_registry_entries_are_resolved_only_on_load(monkeypatch):
    missing = zoo.ZooModel(
        name="missing",
        description="an entry whose module does not exist",
        input_shape=(3, 32, 32),
        default_image="chelsea",
        default_layer="conv",
        builders={"torch": ".no_such_module:build_torch"},
    )
    monkeypatch.setitem(zoo.MODELS, "missing", missing)
    assert "missing" not in zoo.available()
    assert "lenet" in zoo.available()
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        missing.build("torch")


def test_importing_the_zoo_imports_no_framework():
    code = (
        "import sys; import cnn_widgets.zoo as z; z.sample_image('digit0'); z.available(); "
        "print(sorted(m for m in ('torch', 'keras', 'tensorflow', 'skimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_zoo_load_lenet_returns_an_adapter_with_the_input_spec(framework):
    importlib.import_module(framework)
    model = zoo.load("lenet", framework=framework)
    assert model.spec.shape == (1, 28, 28)
    assert model.spec.preprocess is None
    assert model.spec.labels == tuple("0123456789")
    assert model.framework == framework
    assert type(model.model).__module__.split(".")[0] == framework


def test_zoo_lenet_shows_identical_filters_and_feature_maps_in_both_frameworks():
    import keras  # noqa: F401  (a missing package must fail, not skip)
    import torch  # noqa: F401  (a missing package must fail, not skip)
    torch_model = zoo.load("lenet", framework="torch")
    keras_model = zoo.load("lenet", framework="keras")
    assert [i.name for i in torch_model.layers()] == [i.name for i in keras_model.layers()]
    for conv in ("conv1", "conv2"):
        assert np.array_equal(torch_model.filters(conv), keras_model.filters(conv))
    batch, _ = _digit_batch()
    names = ["relu1", "pool2", "fc2"]
    from_torch = torch_model.activations(batch, names)
    from_keras = keras_model.activations(batch, names)
    for name in names:
        assert from_torch[name].shape == from_keras[name].shape
        scale = np.abs(from_torch[name]).max()
        assert np.abs(from_torch[name] - from_keras[name]).max() <= 1e-4 * scale, name
