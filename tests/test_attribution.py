"""The attribution API for both frameworks: invariants that need no oracle (completeness,
nested Keras bases, the sanity check), bad input, and the model left untouched."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import CAM_METHODS, attribution, sanity_check, spearman
from cnn_widgets.choices import ATTRIBUTION_METHODS, values
from tests.cases import case

METHODS = values(ATTRIBUTION_METHODS)

FRAMEWORKS = ["torch", "keras"]
FAST = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}, "scorecam": {"k": 4}}




def image(shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ------------------------------------------------------------------------------ the result
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_method_gives_a_map_at_input_resolution(framework) -> None:
    _, adapter = case(framework)
    for method in METHODS:
        result = attribution(adapter, image(), method=method, **FAST.get(method, {}))
        assert result.map.shape == (32, 32) and result.map.dtype == np.float32, method
        assert np.isfinite(result.map).all() and np.abs(result.map).max() > 0, method
        assert result.method == method
        top = int(np.argmax(adapter.gradients(image()[None], (), None, backward=False).logits))
        assert result.target == top, method  # None means the top class
        if method == "guided_gradcam":  # guided backprop (per channel) x Grad-CAM
            assert result.layer is not None and result.raw.shape == (3, 32, 32)
        elif method in CAM_METHODS:
            assert result.layer is not None and result.raw.ndim == 2
        else:
            assert result.layer is None and result.raw.shape == (3, 32, 32)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_integrated_gradients_are_complete(framework) -> None:
    """Sum of attributions = score(image) - score(black), within 2 % at the default steps."""
    _, adapter = case(framework)
    x = image(seed=1)
    result = attribution(adapter, x, method="integrated_gradients", target=2)
    black = adapter.gradients(np.zeros((1, 3, 32, 32), np.float32), (), 2, backward=False)
    difference = result.score - float(black.scores[0])
    assert abs(difference) > 1e-3  # otherwise the check says nothing
    assert abs(float(result.map.sum()) - difference) <= 0.02 * abs(difference)
    assert np.isclose(result.map.sum(), result.raw.sum(), rtol=1e-5)


def test_integration_steps_travel_in_near_equal_batches() -> None:
    """50 steps by batch_size 8: 7 batches of 7 or 8 (no batch of 2 at the end), and the map
    does not depend on the batching (float32 sums in another order: last bits)."""
    _, adapter = case("torch")
    x = image(seed=2)
    done: list[int] = []
    batched = attribution(
        adapter, x, method="integrated_gradients", target=2,
        progress=lambda n, total: done.append(n),
    )
    sizes = np.diff([0, *done]).tolist()
    assert done[-1] == 50 and len(sizes) == 7 and set(sizes) <= {7, 8}, sizes
    whole = attribution(adapter, x, method="integrated_gradients", target=2, batch_size=50)
    scale = np.abs(whole.raw).max()
    np.testing.assert_allclose(batched.raw, whole.raw, rtol=1e-4, atol=1e-5 * scale)


def test_integrated_gradients_from_a_blurred_baseline() -> None:
    """baseline="blur" integrates from the image blurred as insertion starts from; still
    complete (the sum is score(image) - score(blur)); other strings are refused."""
    from cnn_widgets.attribution.faithfulness import blurred

    _, adapter = case("torch")
    x = image(seed=3)
    blur = attribution(adapter, x, method="integrated_gradients", target=2, baseline="blur")
    given = attribution(
        adapter, x, method="integrated_gradients", target=2, baseline=blurred(x)
    )
    assert np.array_equal(blur.raw, given.raw)
    start = adapter.gradients(blurred(x)[None], (), 2, backward=False)
    difference = blur.score - float(start.scores[0])
    assert abs(difference) > 1e-3
    assert abs(float(blur.map.sum()) - difference) <= 0.02 * abs(difference)
    with pytest.raises(ValueError, match=r"'blur'.*'gray'"):
        attribution(adapter, x, method="integrated_gradients", baseline="gray")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_list_of_images_gives_the_same_maps_as_one_at_a_time(framework) -> None:
    _, adapter = case(framework)
    images = [image(seed=s) for s in range(3)]
    together = attribution(adapter, images, method="gradcam", target=[1, 2, 3])
    assert [r.target for r in together] == [1, 2, 3]
    for x, r, t in zip(images, together, (1, 2, 3), strict=True):
        alone = attribution(adapter, x, method="gradcam", target=t)
        # batched and single convolutions sum in another order: float32 last bits
        assert np.allclose(r.map, alone.map, rtol=1e-4, atol=1e-5 * np.abs(alone.map).max())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_callable_target_is_the_difference_of_two_logits(framework) -> None:
    _, adapter = case(framework)
    x = image()
    a = attribution(adapter, x, method="saliency", target=lambda out: out[:, 3] - out[:, 5])
    three = attribution(adapter, x, method="integrated_gradients", target=3, steps=8)
    five = attribution(adapter, x, method="integrated_gradients", target=5, steps=8)
    both = attribution(
        adapter, x, method="integrated_gradients", target=lambda o: o[:, 3] - o[:, 5], steps=8
    )
    assert a.target is None and both.target is None
    assert np.allclose(both.raw, three.raw - five.raw, atol=1e-5 * np.abs(both.raw).max())
    assert np.isclose(both.score, three.score - five.score, rtol=1e-5, atol=1e-6)


def test_a_softmax_output_is_read_before_the_softmax() -> None:
    keras = pytest.importorskip("keras")
    inner, _ = case("keras")  # the sequential case ends in Dense(10) logits
    soft = keras.Sequential([inner, keras.layers.Softmax(name="probs")])
    soft.build((None, 32, 32, 3))
    x = image()
    plain = attribution(cw.adapt(inner, input_shape=(3, 32, 32)), x, method="saliency", target=4)
    ends = attribution(cw.adapt(soft, input_shape=(3, 32, 32)), x, method="saliency", target=4)
    assert np.isclose(plain.score, ends.score, rtol=1e-5)
    assert np.allclose(plain.raw, ends.raw, atol=1e-5 * np.abs(plain.raw).max())


def test_a_dense_layer_with_softmax_activation_is_read_before_its_softmax() -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(1)
    L = keras.layers
    inputs = keras.Input((32, 32, 3))
    features = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu", name="conv")(inputs))
    soft = keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(features))
    linear = keras.Model(inputs, L.Dense(10, name="logits")(features))
    linear.get_layer("logits").set_weights(soft.get_layer("probs").get_weights())
    x = image()
    a = attribution(cw.adapt(soft), x, method="saliency", target=4)
    b = attribution(cw.adapt(linear), x, method="saliency", target=4)
    assert np.isclose(a.score, b.score, rtol=1e-5)  # the logit, not a probability
    assert np.allclose(a.raw, b.raw, atol=1e-5 * np.abs(b.raw).max())
    assert soft.get_layer("probs").activation is keras.activations.softmax  # put back


def test_the_overlay_is_not_washed_out_by_a_few_bright_pixels() -> None:
    from cnn_widgets.attribution import overlay

    heat = np.ones((32, 32))
    heat[0, 0] = 1000.0  # one outlier: scaled by the maximum, the rest would look like 0
    heat[16:, :] = 0.0
    shown = overlay(np.zeros((3, 32, 32), np.float32), heat, alpha=1.0).pixels
    assert np.array_equal(shown[5, 5], shown[0, 0])  # both at the top of the colormap
    assert not np.array_equal(shown[5, 5], shown[20, 5])  # and unlike the zeros


def test_render_overlays_the_map_and_plot_returns_a_figure() -> None:
    _, adapter = case("torch")
    result = attribution(adapter, image(), method="gradcam")
    shown = result.render(alpha=0.5)
    assert shown.pixels.shape == (32, 32, 3) and shown.pixels.dtype == np.uint8
    hidden = result.render(alpha=0.0)  # alpha 0 is the image itself
    assert np.array_equal(hidden.pixels, np.rint(result.image.transpose(1, 2, 0) * 255))
    assert not np.array_equal(shown.pixels, hidden.pixels)
    assert result._repr_png_().startswith(b"\x89PNG")
    fig = cw.plot_attribution(result)
    assert fig.axes and "gradcam" in fig.axes[0].get_title()


# ----------------------------------------------------------------------------- nested Keras
def test_gradcam_through_a_keras_applications_base_equals_the_flattened_model() -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3), alpha=0.35
    )
    pool, head = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, name="head")
    inputs = keras.Input((64, 64, 3))  # out_relu is 2 x 2
    nested = keras.Model(inputs, head(pool(base(inputs))))
    flat = keras.Model(base.input, head(pool(base.output)))  # the same layers, one level
    x = image((3, 64, 64), seed=4)
    inside = f"{base.name}/"  # layers of a nested model are named through it
    deep, shallow = cw.adapt(nested), cw.adapt(flat)
    for layer in ("out_relu", "block_13_expand_relu"):
        a = attribution(deep, x, target=1, layer=inside + layer)
        b = attribution(shallow, x, target=1, layer=layer)
        assert (a.layer, b.layer) == (inside + layer, layer)
        assert np.abs(b.map).max() > 0
        assert np.allclose(a.map, b.map, atol=1e-5 * np.abs(b.map).max())
    auto = attribution(deep, x, target=1)
    assert auto.layer == inside + "out_relu"  # the last spatial layer, found inside the base


# --------------------------------------------------------------------------- sanity check
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_sanity_check_correlations_fall_and_the_model_is_restored(framework, method) -> None:
    """On the trained LeNet: once weights are randomized the maps keep little of the original
    (|rho| well below the 1 of an unchanged map), and the weights come back bit for bit."""
    pytest.importorskip("torch" if framework == "torch" else "keras")
    adapter = cw.zoo.load("lenet", framework)
    before = adapter.snapshot()
    report = sanity_check(adapter, cw.zoo.sample_image("digit3"), method=method)
    assert adapter.same_state(before, adapter.snapshot())
    assert report.layers == ("fc2", "fc1", "conv2", "conv1")  # from the output backwards
    assert len(report.correlations) == len(report.layers) == len(report.maps)
    assert np.ptp(report.original) > 0  # a constant original would correlate with nothing
    assert max(abs(c) for c in report.correlations) < 0.9
    assert report.passed
    assert "passed" in report._repr_html_() and report.method in report.table()
    assert report.plot().axes


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_guided_backprop_fails_the_sanity_check(framework) -> None:
    """Adebayo et al.'s finding: guided backprop's map survives randomizing every layer."""
    pytest.importorskip("torch" if framework == "torch" else "keras")
    adapter = cw.zoo.load("lenet", framework)
    report = sanity_check(adapter, cw.zoo.sample_image("digit3"), method="guided_backprop")
    assert not report.passed and "FAILED" in report.table()
    assert abs(report.correlations[-1]) >= 0.5


def test_keras_guided_backprop_guides_relu_activations_and_relu_layers() -> None:
    """``Conv2D(activation="relu")`` and ``Conv2D`` + ``ReLU()`` give the same guided map,
    different from the plain gradient."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(2)
    L = keras.layers
    inputs = keras.Input((32, 32, 3))
    conv1, conv2 = L.Conv2D(8, 3, activation="relu"), L.Conv2D(8, 3)
    head = L.Dense(5)
    fused = keras.Model(inputs, head(L.GlobalAveragePooling2D()(conv1(inputs))))
    split = keras.Model(inputs, head(L.GlobalAveragePooling2D()(L.ReLU()(conv2(inputs)))))
    conv2.set_weights(conv1.get_weights())
    x = image()
    a = attribution(cw.adapt(fused), x, method="guided_backprop", target=1)
    b = attribution(cw.adapt(split), x, method="guided_backprop", target=1)
    plain = attribution(cw.adapt(split), x, method="saliency", target=1)
    assert np.allclose(a.raw, b.raw, atol=1e-6 * np.abs(b.raw).max())
    assert not np.allclose(b.raw, plain.raw, atol=1e-3 * np.abs(plain.raw).max())
    assert conv1.activation is keras.activations.relu  # put back


def test_sanity_check_fails_a_map_that_ignores_the_weights(monkeypatch) -> None:
    """The negative control: a "method" that shows the image itself keeps rho = 1."""
    sanity = importlib.import_module("cnn_widgets.attribution.sanity")
    methods = importlib.import_module("cnn_widgets.attribution.methods")
    _, adapter = case("torch")

    def edges(adapter: Any, batch: np.ndarray, *args: Any, **kwargs: Any) -> list[Any]:
        picture = np.abs(np.diff(batch[0].mean(axis=0), axis=0, append=0))
        return [methods.Computed(picture, picture, 3, None, 0.0)]

    monkeypatch.setattr(sanity, "compute", edges)
    report = sanity_check(adapter, image(), method="saliency")
    assert report.correlations == pytest.approx((1.0,) * 4)
    assert not report.passed and "FAILED" in report.table()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sanity_check_restores_the_model_after_an_error(framework, monkeypatch) -> None:
    # cnn_widgets.attribution is the function; the module is reached by its full name
    sanity = importlib.import_module("cnn_widgets.attribution.sanity")
    _, adapter = case(framework)
    before = adapter.snapshot()
    real, calls = sanity.compute, []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:  # inside the second randomization
            raise RuntimeError("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(sanity, "compute", failing)
    with pytest.raises(RuntimeError, match="stopped"):
        sanity_check(adapter, image(), method="gradcam")
    assert adapter.same_state(before, adapter.snapshot())


def test_spearman_ranks_ties_and_constants() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones_like(a)) == 0.0
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0])) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- never harm
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_method_harms_the_model(framework) -> None:
    model, adapter = case(framework, "residual")  # batch norm: train mode would show
    if framework == "torch":
        model.train()
    before = adapter.snapshot()
    for method in METHODS:
        attribution(model, image(), method=method, **FAST.get(method, {}))
    with pytest.raises(ValueError):
        attribution(model, image(), method="gradcam", target=99)
    assert adapter.same_state(before, adapter.snapshot())
    if framework == "torch":
        assert model.training


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_input_is_refused_with_the_valid_choices(framework) -> None:
    _, adapter = case(framework)
    x = image()
    with pytest.raises(ValueError, match=r"gradcam.*saliency") as err:
        attribution(adapter, x, method="gradkam")
    assert "gradkam" in str(err.value)
    with pytest.raises(ValueError, match=r"out of range.*10 classes.*0\.\.9"):
        attribution(adapter, x, target=10)
    with pytest.raises(ValueError, match=r"'fc1'.*\(C, H, W\).*'relu2'"):
        attribution(adapter, x, method="gradcam", layer="fc1")
    with pytest.raises(TypeError, match=r"one score per image.*\(1, 10\)"):
        attribution(adapter, x, method="saliency", target=lambda out: out)
    with pytest.raises(TypeError, match=r"samples.*noise"):
        attribution(adapter, x, method="smoothgrad", steps=3)
    with pytest.raises(ValueError, match="layer= applies to the CAM methods"):
        attribution(adapter, x, method="saliency", layer="relu2")
    with pytest.raises(TypeError, match="got str"):
        attribution(adapter, x, target="cat")


# ------------------------------------------------------------------------- cross-framework
@pytest.fixture(scope="module")
def lite0() -> dict[str, cw.Adapter]:
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    return {f: cw.zoo.load("efficientnet_lite0", f) for f in FRAMEWORKS}


@pytest.mark.parametrize(
    ("photo", "method"),
    [("chelsea", "gradcam"), ("coffee", "gradcam"), ("chelsea", "guided_backprop")],
)
def test_the_torch_and_keras_twins_agree(lite0, photo: str, method: str) -> None:
    """The bundled EfficientNet-Lite0 has the same weights in both frameworks: the maps of the
    sample photos correlate > 0.999 (float32 sums differ in the last bits). Guided backprop
    guides the ReLU6 modules of the torch twin and the relu6 activations of the Keras one."""
    x = cw.zoo.sample_image(photo)
    torch_map = attribution(lite0["torch"], x, method=method)
    keras_map = attribution(lite0["keras"], x, method=method)
    assert torch_map.target == keras_map.target
    shape = (7, 7) if method == "gradcam" else (3, 224, 224)
    assert torch_map.raw.shape == keras_map.raw.shape == shape
    assert np.abs(torch_map.map).max() > 0
    r = np.corrcoef(torch_map.map.ravel(), keras_map.map.ravel())[0, 1]
    assert r > 0.999, r


# ----------------------------------------------------------------------------- faithfulness
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_deletion_and_insertion_curves_run_from_their_ends(framework) -> None:
    from cnn_widgets.attribution import deletion_insertion
    from cnn_widgets.attribution.faithfulness import blurred

    _, adapter = case(framework)
    x = image(seed=5)
    heat = attribution(adapter, x, method="gradcam", target=1).map
    result = deletion_insertion(adapter, x, heat, 1, steps=8)

    def prob(batch: np.ndarray) -> float:
        logits = adapter.gradients(batch[None], (), 1, backward=False).logits[0].astype(float)
        return float(np.exp(logits[1] - logits.max()) / np.exp(logits - logits.max()).sum())

    assert np.array_equal(result.fractions, np.linspace(0, 1, 9))
    # untouched image, then all black; blurred image, then the image again
    assert result.deletion_curve[0] == pytest.approx(prob(x), rel=1e-5)
    assert result.deletion_curve[-1] == pytest.approx(prob(np.zeros_like(x)), rel=1e-5)
    assert result.insertion_curve[0] == pytest.approx(prob(blurred(x)), rel=1e-5)
    assert result.insertion_curve[-1] == pytest.approx(prob(x), rel=1e-5)
    middle = (result.deletion_curve[1:] + result.deletion_curve[:-1]) / 2
    assert result.deletion == pytest.approx(float(middle.mean()))  # equal steps of 1/8
    # the first step deletes exactly the top eighth of the map's pixels
    top = np.argsort(-heat.ravel(), kind="stable")[: 32 * 32 // 8]
    first = x.reshape(3, -1).copy()
    first[:, top] = 0
    assert result.deletion_curve[1] == pytest.approx(prob(first.reshape(x.shape)), rel=1e-5)
    with pytest.raises(ValueError, match=r"heat must be \(H, W\)"):
        deletion_insertion(adapter, x, heat[:5], 1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gradients_without_the_image_give_the_same_layer_gradients(framework) -> None:
    """CAM methods skip the image's gradient (the backward pass stops at the layer)."""
    _, adapter = case(framework)
    batch = np.stack([image(seed=s) for s in range(2)])
    full = adapter.gradients(batch, ["relu2", "conv1"], 3)
    short = adapter.gradients(batch, ["relu2", "conv1"], 3, input_grad=False)
    assert short.input_grad is None and full.input_grad is not None
    for name in ("relu2", "conv1"):
        assert np.abs(full.layer_grads[name]).max() > 0
        assert np.allclose(short.layer_grads[name], full.layer_grads[name], rtol=1e-5, atol=1e-7)
        assert np.array_equal(short.activations[name], full.activations[name])
    assert np.array_equal(short.logits, full.logits)
