"""Attribution maps against independent implementations (test-only dependencies): captum and
torchcam for torch, tf-keras-vis for Keras, on small models of the shared catalogue.

Each comparison uses the same target, layer and no normalization; maps agree to 1e-5 relative
to the map's own scale (float32 sums in a different order differ in the last bits).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import attribution
from tests.cases import case

captum_attr = pytest.importorskip("captum.attr")
torchcam_methods = pytest.importorskip("torchcam.methods")
torch = pytest.importorskip("torch")

LAYER = "relu2"  # the last feature maps of the `sequential` case (16 x 16 x 16) in both
CLASS = 3




def image(shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float = 1e-5) -> None:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    scale = max(float(np.abs(theirs).max()), 1e-12)
    assert float(np.abs(ours - theirs).max()) <= rtol * scale, (
        float(np.abs(ours - theirs).max()), scale
    )
    assert np.abs(theirs).max() > 0  # a comparison of two empty maps proves nothing


# ------------------------------------------------------------------------------------ torch
@pytest.fixture(scope="module")
def torch_case() -> tuple[Any, cw.Adapter]:
    return case("torch")


def tensor(x: np.ndarray) -> Any:
    return torch.tensor(x[None])


@pytest.mark.parametrize(
    ("method", "extractor"), [("gradcam", "GradCAM"), ("layercam", "LayerCAM")]
)
def test_cam_methods_equal_torchcam(torch_case, method: str, extractor: str) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(adapter, x, method=method, target=CLASS, layer=LAYER)
    with getattr(torchcam_methods, extractor)(model, target_layer=LAYER) as cam:
        scores = model(tensor(x))
        theirs = cam(CLASS, scores, normalized=False)[0][0].detach().numpy()
    assert ours.layer == LAYER and ours.target == CLASS
    assert_close(ours.raw, theirs)


def test_hirescam_is_captums_gradient_times_activation_summed(torch_case) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(adapter, x, method="hirescam", target=CLASS, layer=LAYER)
    layer = dict(model.named_modules())[LAYER]
    gxa = captum_attr.LayerGradientXActivation(model, layer).attribute(tensor(x), target=CLASS)
    assert_close(ours.raw, np.maximum(gxa[0].detach().numpy().sum(axis=0), 0))


def test_guided_backprop_and_guided_gradcam_equal_captum(torch_case) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(adapter, x, method="guided_backprop", target=CLASS)
    theirs = captum_attr.GuidedBackprop(model).attribute(tensor(x), target=CLASS)
    assert_close(ours.raw, theirs[0].detach().numpy())
    ours = attribution(adapter, x, method="guided_gradcam", target=CLASS, layer=LAYER)
    layer = dict(model.named_modules())[LAYER]
    theirs = captum_attr.GuidedGradCam(model, layer).attribute(
        tensor(x), target=CLASS, interpolate_mode="bilinear"  # ours is bilinear, half-pixel
    )
    assert_close(ours.raw, theirs[0].detach().numpy())
    assert ours.layer == LAYER


def test_saliency_equals_captum(torch_case) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(adapter, x, method="saliency", target=CLASS)
    grad = captum_attr.Saliency(model).attribute(tensor(x), target=CLASS, abs=False)[0].numpy()
    assert_close(ours.raw, grad)
    assert_close(ours.map, np.abs(grad).max(axis=0))


def test_integrated_gradients_equal_captum_trapezoid(torch_case) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(adapter, x, method="integrated_gradients", target=CLASS, steps=24)
    ig = captum_attr.IntegratedGradients(model)
    theirs = ig.attribute(
        tensor(x), baselines=0.0, target=CLASS, n_steps=24, method="riemann_trapezoid"
    )[0].detach().numpy()
    # captum's trapezoid steps are 1/n on n points from 0 to 1, so its weights add up to
    # (n - 1)/n instead of 1 (completeness then misses by 1/n); ours are 1/(n - 1).
    theirs = theirs * 24 / 23
    assert_close(ours.raw, theirs)
    assert_close(ours.map, theirs.sum(axis=0))


def test_smoothgrad_is_the_mean_of_captum_gradients_on_the_same_noise(torch_case) -> None:
    model, adapter = torch_case
    x = image()
    ours = attribution(
        adapter, x, method="smoothgrad", target=CLASS, samples=6, noise=0.2, seed=7, batch_size=4
    )
    rng = np.random.default_rng(7)  # the documented draw: one normal array for all samples
    sigma = np.float32(0.2 * float(x.max() - x.min()))
    noisy = x[None] + rng.standard_normal((6, *x.shape), dtype=np.float32) * sigma
    saliency = captum_attr.Saliency(model)
    grads = [
        saliency.attribute(tensor(n), target=CLASS, abs=False)[0].numpy() for n in noisy
    ]
    assert_close(ours.raw, np.mean(grads, axis=0))


# ------------------------------------------------------------------------------------ keras
@pytest.fixture(scope="module")
def keras_case() -> tuple[Any, cw.Adapter]:
    pytest.importorskip("tf_keras_vis")
    return case("keras")


def keras_input(x: np.ndarray) -> np.ndarray:
    return x.transpose(1, 2, 0)[None]


def tf_keras_vis(name: str, model: Any) -> Any:
    module, cls = {
        "gradcam": ("tf_keras_vis.gradcam", "Gradcam"),
        "gradcam++": ("tf_keras_vis.gradcam_plus_plus", "GradcamPlusPlus"),
        "layercam": ("tf_keras_vis.layercam", "Layercam"),
        "scorecam": ("tf_keras_vis.scorecam", "Scorecam"),
        "saliency": ("tf_keras_vis.saliency", "Saliency"),
    }[name]
    return getattr(importlib.import_module(module), cls)(model, clone=False)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_cam_methods_equal_tf_keras_vis(keras_case, method: str) -> None:
    from tf_keras_vis.utils.scores import CategoricalScore

    model, adapter = keras_case
    x = image()
    ours = attribution(adapter, x, method=method, layer=LAYER)  # the top class
    theirs = tf_keras_vis(method, model)(
        CategoricalScore(ours.target), keras_input(x), penultimate_layer=LAYER,
        seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False,
    )[0]
    theirs = np.asarray(theirs)
    rtol = 1e-5
    if method == "gradcam++":  # the authors' code scales every map by exp(score); we do not
        theirs = theirs / np.exp(np.float64(ours.score))
        rtol = 1e-4  # their float32 products exp(score)·G³ round differently than G³ alone
    assert_close(ours.raw, theirs, rtol)


def test_scorecam_equals_tf_keras_vis_at_input_resolution(keras_case) -> None:
    # At the input's own resolution neither side resizes (tf-keras-vis resizes with
    # align-corners zoom, we with half-pixel bilinear), so the masks are the same.
    from tf_keras_vis.utils.scores import CategoricalScore

    model, adapter = keras_case
    x = image()
    ours = attribution(adapter, x, method="scorecam", layer="relu1")
    theirs = tf_keras_vis("scorecam", model)(
        CategoricalScore(ours.target), keras_input(x), penultimate_layer="relu1",
        seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False,
    )[0]
    # tf-keras-vis adds Keras's epsilon (1e-7) to each mask's value range.
    assert_close(ours.raw, np.asarray(theirs), rtol=1e-4)


def test_saliency_equals_tf_keras_vis(keras_case) -> None:
    from tf_keras_vis.utils.scores import CategoricalScore

    model, adapter = keras_case
    x = image()
    ours = attribution(adapter, x, method="saliency", target=CLASS)
    theirs = tf_keras_vis("saliency", model)(
        CategoricalScore(CLASS), keras_input(x), normalize_map=False
    )[0]
    assert_close(ours.map, np.asarray(theirs))


def test_keras_integrated_gradients_equal_a_plain_tape(keras_case) -> None:
    import tensorflow as tf

    model, adapter = keras_case
    x = image()
    ours = attribution(adapter, x, method="integrated_gradients", target=CLASS, steps=16)
    alphas = np.linspace(0, 1, 16, dtype=np.float32)
    path = tf.constant(alphas[:, None, None, None] * keras_input(x))
    with tf.GradientTape() as tape:
        tape.watch(path)
        score = tf.reduce_sum(model(path, training=False)[:, CLASS])
    grads = tape.gradient(score, path).numpy()
    weights = np.full(16, 1 / 15)
    weights[[0, -1]] /= 2
    theirs = keras_input(x)[0] * np.tensordot(weights, grads, axes=1)
    assert_close(ours.raw, theirs.transpose(2, 0, 1))


# ------------------------------------------------------------------------ ONNX through torch
def test_gradcam_of_an_onnx_model_equals_captum(tmp_path) -> None:
    """ONNX (and Caffe) models come through the torch backend: Grad-CAM of a SqueezeNet read
    from an ONNX file equals captum's LayerGradCam on the same torch module, its final softmax
    set aside as ours is (we attribute the logit)."""
    onnx = pytest.importorskip("onnx")
    from tests.formats_cases import randomized_light

    path = tmp_path / "squeezenet.onnx"
    onnx.save(randomized_light("light_squeezenet.onnx", 64), str(path))
    adapter = cw.load_onnx(path)
    assert adapter.output_layer().type == "Softmax"
    x = image((3, 64, 64), seed=3)
    ours = attribution(adapter, x, method="gradcam", target=CLASS)
    reference = cw.load_onnx(path).model  # a second module: the first stays as it is
    softmax = adapter.output_layer().name
    setattr(reference, softmax, torch.nn.Identity())
    layer = getattr(reference, ours.layer)
    cam = captum_attr.LayerGradCam(lambda t: reference(t).flatten(1), layer)
    theirs = cam.attribute(tensor(x), target=CLASS, relu_attributions=True)
    assert_close(ours.raw, theirs[0, 0].detach().numpy())
