"""The plain-function API on the bundled models, for both frameworks: every view renders to
PNG, parity between the torch and Keras twins holds through our API, and bad input gets a
message that names the valid choices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.api import to_probabilities

ARTIFACTS = Path(__file__).parent / "artifacts" / "views"
FRAMEWORKS = ("torch", "keras")


@pytest.fixture(scope="module", params=FRAMEWORKS)
def imagenet(request) -> cw.Adapter:
    return cw.zoo.load("efficientnet_lite0", framework=request.param)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def lenet(request) -> cw.Adapter:
    return cw.zoo.load("lenet", framework=request.param)


def save(rendered, name: str) -> Image.Image:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rendered.save(ARTIFACTS / f"{name}.png")
    image = Image.open(io.BytesIO(rendered.png()))
    assert image.size == (rendered.width, rendered.height)
    return image


def test_every_view_of_the_imagenet_model_renders_to_png(imagenet: cw.Adapter) -> None:
    fw = imagenet.framework
    image = cw.zoo.sample_image("chelsea")
    views = {
        "filters_rgb": cw.render_filters(imagenet, "_conv_stem"),
        "filters_one_input_channel": cw.render_filters(imagenet, "_conv_stem", input_channel=1),
        "filters_mean": cw.render_filters(imagenet, "_conv_stem", input_channel="mean"),
        "filters_deep": cw.render_filters(imagenet, "_conv_head", channels=range(64)),
        "filter_single": cw.render_filters(imagenet, "_conv_stem", single=3),
        "maps_grid": cw.render_activations(imagenet, image, "_blocks.2._relu0"),
        "maps_sum": cw.render_activations(imagenet, image, "_blocks.2._relu0", view="sum"),
        "maps_channel": cw.render_activations(imagenet, image, "_relu0", view="channel",
                                               channel=5, colormap="gray"),
        "dense": cw.render_activations(imagenet, image, "_avg_pooling", view="dense"),
        "top5": cw.render_activations(imagenet, image, -1),
    }
    for name, rendered in views.items():
        pixels = np.asarray(save(rendered, f"imagenet_{fw}_{name}").convert("RGB"))
        assert pixels.std() > 0, name
    assert views["filters_rgb"].pixels.shape == (23, 23, 3)  # 32 kernels of 3x3, 6x6 grid
    assert views["filters_deep"].meta["shown"] == 64 and views["filters_deep"].meta["total"] == 1280
    assert views["top5"].meta["topk"][0][1] in ("Egyptian Mau", "tabby cat",
                                                "a cat having a striped coat")


def test_feature_maps_look_like_the_image(imagenet: cw.Adapter) -> None:
    """Early feature maps are the photo seen through filters: some channel follows its
    brightness almost exactly, none follows an unrelated noise image."""
    image = cw.prepare_image(imagenet, cw.zoo.sample_image("camera"))
    maps = cw.activations(imagenet, image, "_relu0")["_relu0"]
    assert maps.shape == (32, 112, 112)

    def best_match(target: np.ndarray) -> float:
        pooled = target.reshape(112, 2, 112, 2).mean(axis=(1, 3)).ravel()
        return max(abs(np.corrcoef(m.ravel(), pooled)[0, 1]) for m in maps if m.std() > 0)

    assert best_match(image.mean(axis=0)) > 0.9
    assert best_match(np.random.default_rng(0).random((224, 224))) < 0.1


def test_lenet_filters_and_digit_maps_render(lenet: cw.Adapter) -> None:
    fw = lenet.framework
    save(cw.render_filters(lenet, "conv1"), f"lenet_{fw}_conv1")
    save(cw.render_filters(lenet, "conv2", input_channel=0), f"lenet_{fw}_conv2_in0")
    rendered = cw.render_activations(lenet, cw.zoo.sample_image("digit4"), "relu1")
    assert rendered.meta["shown"] == 8
    save(rendered, f"lenet_{fw}_relu1_digit4")
    top = cw.render_activations(lenet, cw.zoo.sample_image("digit4"), "fc2")
    assert top.meta["topk"][0][1] == "4"


@pytest.mark.parametrize("model_name", ["lenet", "efficientnet_lite0"])
def test_torch_and_keras_give_the_same_filters_and_activations(model_name: str) -> None:
    torch_model = cw.zoo.load(model_name, framework="torch")
    keras_model = cw.zoo.load(model_name, framework="keras")
    names = [i.name for i in cw.layers(torch_model)]
    assert names == [i.name for i in cw.layers(keras_model)]
    for info in cw.layers(torch_model):
        if info.has_filters:
            np.testing.assert_array_equal(cw.filters(torch_model, info.name),
                                          cw.filters(keras_model, info.name))
    image = cw.zoo.sample_image("digit7" if model_name == "lenet" else "coffee")
    a, b = cw.activations(torch_model, image), cw.activations(keras_model, image)
    for name in names:
        scale = max(float(np.abs(a[name]).max()), 1e-6)
        assert np.abs(a[name] - b[name]).max() / scale <= 1e-4, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_matplotlib_figures_draw_into_a_given_axes(framework: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = cw.zoo.load("lenet", framework=framework)
    fig = cw.plot_filters(model, "conv1")
    assert fig.axes and fig.axes[0].images
    _, ax = plt.subplots()
    same = cw.plot_activations(model, cw.zoo.sample_image("digit1"), "relu1", ax=ax)
    assert same is ax.figure and ax.images
    plt.close("all")


def test_probabilities_are_a_softmax_of_logits_but_kept_when_already_probabilities() -> None:
    logits = np.array([1.0, 2.0, 3.0], np.float32)
    probs = to_probabilities(logits)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)
    np.testing.assert_array_equal(to_probabilities(probs), probs)


def test_unsupported_objects_are_refused_with_what_was_expected() -> None:
    expected = r"expected a torch.nn.Module or a keras.Model.*got builtins.dict"
    with pytest.raises(TypeError, match=expected):
        cw.layers({"not": "a model"})


def test_adapt_rejects_bad_settings_with_the_valid_forms(lenet: cw.Adapter) -> None:
    with pytest.raises(ValueError, match="input_shape must be"):
        cw.adapt(lenet.model, input_shape=(1, -3, 28))
    with pytest.raises(ValueError, match="'imagenet'"):
        cw.adapt(lenet.model, preprocess="caffe")
    with pytest.raises(TypeError, match="preprocess must be"):
        cw.adapt(lenet.model, preprocess=42)


def test_an_adapted_model_passes_through_and_can_be_re_adapted(lenet: cw.Adapter) -> None:
    assert cw.adapt(lenet) is lenet
    relabelled = cw.adapt(lenet, labels=list("abcdefghij"))
    assert relabelled.spec.labels[0] == "a" and relabelled.model is lenet.model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"view": "channel", "channel": 99}, r"channel 99 is out of range: valid 0\.\.7"),
        ({"view": "channel"}, r"needs channel="),
        ({"view": "histogram"}, r"view must be one of"),
        ({"view": "probabilities"}, r"outputs feature maps"),
    ],
)
def test_render_activations_explains_bad_choices(lenet: cw.Adapter, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        cw.render_activations(lenet, cw.zoo.sample_image("digit0"), "relu1", **kwargs)


def test_a_single_filter_out_of_range_names_the_valid_range(lenet: cw.Adapter) -> None:
    with pytest.raises(ValueError, match=r"filter 8 is out of range: valid 0\.\.7"):
        cw.render_filters(lenet, "conv1", single=8)


def test_wrong_image_channel_count_names_what_the_model_expects(imagenet: cw.Adapter) -> None:
    with pytest.raises(ValueError, match=r"C in 1, 3, 4 channels; got shape \(32, 32, 5\)"):
        cw.activations(imagenet, np.zeros((32, 32, 5), np.float32), 0)


def test_top_classes_give_labelled_probabilities_best_first(imagenet: cw.Adapter) -> None:
    top = cw.top_classes(imagenet, cw.zoo.sample_image("coffee"), k=3)
    assert top[0][1] == "espresso"
    probs = [p for _, _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.1000"):
        cw.top_classes(imagenet, cw.zoo.sample_image("coffee"), k=0)
    with pytest.raises(ValueError, match="need a vector"):
        cw.top_classes(imagenet, cw.zoo.sample_image("coffee"), layer="_relu0")
