"""Feature visualization, second pass: the ``auto`` objective (near linear first layers, and
the rival term past them), ``layer_mean`` / ``layer_max``,
``diversity``, ``direction``, an ``image=`` start, ``record_every`` frames and
:func:`cnn_widgets.save_animation`, for torch and Keras alike.

Small seeded models (tests/cases) and the bundled LeNet keep this file fast; steps are capped
with ``CNN_WIDGETS_MAX_STEPS`` where a test does not set them itself.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import cnn_widgets as cw
from cnn_widgets import featureviz
from cnn_widgets.featureviz import (
    channel,
    direction,
    diversity,
    feature_viz,
    layer_max,
    layer_mean,
)
from cnn_widgets.featureviz.objectives import LAYER_MAX_TEMPERATURE
from cnn_widgets.images import load_image
from tests.test_featureviz import FRAMEWORKS, Recorder, build, dirty

SATURATED = 0.02
"""A pixel within this of 0 or 1 counts as saturated (the issue's definition)."""


@pytest.fixture(autouse=True)
def _few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNN_WIDGETS_MAX_STEPS", "48")


def channel_means(adapter: cw.Adapter, images: np.ndarray, layer: str) -> np.ndarray:
    """``(n, C)``: each image's spatially averaged activations of ``layer``."""
    maps = adapter.activations(images.transpose(0, 3, 1, 2), [layer])[layer]
    return maps.mean(axis=(2, 3))


# -- "auto" near a linear first layer ---------------------------------------------------------
def centre_patch_correlations(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Per image, the correlation of the pixels under the centre unit's receptive field with
    the unit's kernel (LeNet conv1: 5x5, 'same' padding, so the centre unit sees the 5x5
    patch around the image centre). LeNet's preprocessing is one positive affine map for the
    whole image, which leaves a correlation unchanged."""
    size = kernels.shape[-1]
    top = images.shape[1] // 2 - size // 2
    patches = images[:, top : top + size, top : top + size, 0]
    return np.array(
        [np.corrcoef(p.ravel(), k[0].ravel())[0, 1] for p, k in zip(patches, kernels, strict=True)]
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_auto_on_a_linear_first_layer_draws_the_kernel_without_saturating(framework: str) -> None:
    # The channel mean of a linear conv is maximized by a flat, saturated image (every interior
    # pixel weighs the kernel's sum): the black-and-white blobs the plain objective gave.
    lenet = cw.zoo.load("lenet", framework)
    channels = [0, 1, 2, 3]
    images = feature_viz(lenet, "conv1", channels, steps=48)
    saturated = ((images < SATURATED) | (images > 1 - SATURATED)).mean(axis=(1, 2, 3))
    assert np.all(saturated <= 0.2), saturated
    kernels = lenet.filters("conv1")[channels]
    correlations = centre_patch_correlations(images, kernels)
    assert np.all(correlations > 0.5), correlations
    # Not any picture passes: the kernel of another channel does not correlate.
    others = centre_patch_correlations(images, kernels[[1, 2, 3, 0]])
    assert np.all(others < correlations - 0.3), (others, correlations)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_auto_past_the_first_layers_is_the_channel_minus_its_strongest_rivals(
    framework: str,
) -> None:
    adapter = build(framework)
    auto = feature_viz(adapter, "conv2", [1, 5], steps=6)
    weight = featureviz.AUTO_RIVAL_WEIGHT
    spelled = feature_viz(
        adapter,
        objective=[channel("conv2", c) - weight * layer_max("conv2", exclude=c) for c in (1, 5)],
        steps=6,
    )
    np.testing.assert_array_equal(auto, spelled)
    # The rival term is the soft max of the *other* channels: with the target inside it the
    # pictures differ.
    inside = feature_viz(
        adapter,
        objective=[channel("conv2", c) - weight * layer_max("conv2") for c in (1, 5)],
        steps=6,
    )
    assert not np.array_equal(auto, inside)


def one_unit_model(framework: str) -> cw.Adapter:
    """Two convs, then a dense layer of one unit (a binary classifier's score)."""
    if framework == "torch":
        import torch
        from torch import nn

        torch.manual_seed(0)
        convs = [nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU()]
        model = nn.Sequential(*convs, nn.Flatten(), nn.Linear(4 * 12 * 12, 1))
        return cw.adapt(model.eval(), input_shape=(3, 16, 16))
    import keras

    keras.utils.set_random_seed(0)
    convs = [keras.layers.Conv2D(4, 3, activation="relu") for _ in range(2)]
    layers = [keras.Input((16, 16, 3)), *convs, keras.layers.Flatten(), keras.layers.Dense(1)]
    return cw.adapt(keras.Sequential(layers))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_auto_on_a_layer_of_one_unit_is_the_plain_unit(framework: str) -> None:
    # No other channel to leave in the soft max: auto maximizes the unit itself.
    adapter = one_unit_model(framework)
    last = adapter.layers()[-1].name
    auto = feature_viz(adapter, last, [0], steps=4)
    plain = feature_viz(adapter, objective=channel(last, 0), steps=4)
    np.testing.assert_array_equal(auto, plain)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_auto_makes_the_target_the_most_active_channel_more_often_than_channel(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LeNet's relu2 (16 channels, 28 px), 96 steps: with the plain channel mean a few strong
    # channels win most pictures (measured: the target is the layer's most active channel for
    # 3 of 16); auto's rival term makes it so for 10 of 16 (the same with the target inside
    # the soft max, or weight 0.7 or 1.5, in torch and Keras). The floors leave room for other
    # CPUs' rounding, which Adam amplifies into other pictures.
    monkeypatch.setenv("CNN_WIDGETS_MAX_STEPS", "96")
    lenet = cw.zoo.load("lenet", framework)
    targets = np.arange(16)
    selectivity = {}
    for objective in ("auto", "channel"):
        images = feature_viz(lenet, "relu2", targets, steps=96, objective=objective)
        means = channel_means(lenet, images, "relu2")
        selectivity[objective] = float(np.mean(means.argmax(axis=1) == targets))
    assert selectivity["auto"] >= 0.4, selectivity
    assert selectivity["auto"] >= selectivity["channel"] + 0.2, selectivity


# -- layer_mean and layer_max ------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["layer_mean", "layer_max"])
def test_layer_terms_are_the_mean_and_soft_max_of_the_channel_means(
    framework: str, kind: str
) -> None:
    # A vanishing learning rate and no random views: the first step's value is the term on
    # the returned image, which the adapter's activations give independently.
    adapter = build(framework)
    term = layer_mean("conv2") if kind == "layer_mean" else layer_max("conv2")
    recorder = Recorder()
    images = feature_viz(
        adapter, objective=term, steps=1, lr=1e-9, transforms=False, callback=recorder
    )
    means = channel_means(adapter, images, "conv2")[0].astype(np.float64)
    if kind == "layer_mean":
        expected = means.mean()
    else:
        t = LAYER_MAX_TEMPERATURE * np.abs(means).max()
        expected = t * np.log(np.exp((means - means.max()) / t).sum()) + means.max()
        # a soft maximum: at least the largest mean, at most T log C above it
        assert means.max() <= expected <= means.max() + t * np.log(len(means))
        assert expected < means.max() + 0.5 * (means.max() - np.sort(means)[-2]) + t
    np.testing.assert_allclose(recorder.values[0][0], expected, rtol=1e-4)


def soft_max_numpy(means: np.ndarray, exclude: int | None = None) -> float:
    """``layer_max`` of one row of channel means, in float64, leaving out ``exclude``."""
    kept = np.delete(means.astype(np.float64), [] if exclude is None else [exclude])
    t = LAYER_MAX_TEMPERATURE * np.abs(kept).max()
    return float(t * np.log(np.exp((kept - kept.max()) / t).sum()) + kept.max())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layer_max_excluding_a_channel_is_the_soft_max_of_the_other_channels(
    framework: str,
) -> None:
    # Every image starts from the same picture (image=), and a vanishing learning rate
    # without random views keeps it: the first step's values are the terms on that picture,
    # which the adapter's activations give independently.
    adapter = build(framework)
    start = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    means = channel_means(adapter, start[None], "conv2")[0]
    leader, last = int(means.argmax()), int(means.argmin())
    recorder = Recorder()
    feature_viz(
        adapter,
        objective=[
            layer_max("conv2"),
            layer_max("conv2", exclude=leader),
            layer_max("conv2", exclude=last),
        ],
        image=start,
        steps=1,
        lr=1e-9,
        transforms=False,
        callback=recorder,
    )
    expected = [soft_max_numpy(means), soft_max_numpy(means, leader), soft_max_numpy(means, last)]
    np.testing.assert_allclose(recorder.values[0], expected, rtol=1e-4, atol=1e-6)
    # Leaving out the leader lowers the soft max to about the runner-up's mean; leaving out
    # the weakest channel changes next to nothing.
    runner_up = np.sort(means)[-2]
    assert expected[1] < expected[0] - 0.5 * (means[leader] - runner_up)
    assert expected[1] >= runner_up


def soft_max_gradient(framework: str, means: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    if framework == "torch":
        import torch

        from cnn_widgets.featureviz.torch_impl import _soft_max

        x = torch.tensor(means, requires_grad=True)
        left_out = None if exclude is None else torch.as_tensor(exclude)
        _soft_max(x, left_out).sum().backward()
        return x.grad.numpy()
    import tensorflow as tf

    from cnn_widgets.featureviz.keras_ops import soft_max

    x = tf.constant(means)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(soft_max(x, None if exclude is None else tf.constant(exclude)))
    return tape.gradient(value, x).numpy()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layer_max_gradient_is_the_softmax_of_the_means(framework: str) -> None:
    means = np.array([[1.0, 0.95, 0.2, -0.5], [0.0, 0.0, 0.0, 3.0]], np.float32)
    t = LAYER_MAX_TEMPERATURE * np.abs(means).max(axis=1, keepdims=True)
    weights = np.exp((means - means.max(axis=1, keepdims=True)) / t)
    weights /= weights.sum(axis=1, keepdims=True)
    grad = soft_max_gradient(framework, means, None)
    np.testing.assert_allclose(grad, weights, rtol=1e-5, atol=1e-7)
    # exclude -1 is "none": the same gradient.
    np.testing.assert_allclose(
        soft_max_gradient(framework, means, np.array([-1, -1])), weights, rtol=1e-5, atol=1e-7
    )
    assert np.all(grad > 0) and np.allclose(grad.sum(axis=1), 1.0)
    # A rival T below the leader gets 1/e of its push down; a far one almost none.
    assert grad[0, 1] > 0.25 and grad[0, 3] < 1e-6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layer_max_excluding_a_channel_puts_all_its_gradient_on_the_others(
    framework: str,
) -> None:
    # Row 0 leaves out its leader (channel 0): the whole push falls on the rivals, the
    # strongest (0.95) first. Row 1 leaves out a channel that is far behind: almost the same
    # gradient as without exclude (all on channel 3).
    means = np.array([[1.0, 0.95, 0.2, -0.5], [0.0, 0.0, 0.0, 3.0]], np.float32)
    grad = soft_max_gradient(framework, means, np.array([0, 1]))
    assert grad[0, 0] == 0.0 and grad[1, 1] == 0.0
    np.testing.assert_allclose(grad.sum(axis=1), 1.0, rtol=1e-5)
    others = means[0, 1:].astype(np.float64)
    t = LAYER_MAX_TEMPERATURE * np.abs(others).max()
    expected = np.exp((others - others.max()) / t)
    np.testing.assert_allclose(grad[0, 1:], expected / expected.sum(), rtol=1e-5, atol=1e-7)
    assert grad[0, 1] > 0.99  # without exclude it got 0.27 (the leader took the rest)
    np.testing.assert_allclose(grad[1], [0, 0, 0, 1], atol=1e-6)


def test_layer_terms_print_and_need_no_channel() -> None:
    assert repr(channel("conv2", 3) - 0.7 * layer_max("conv2")) == (
        "channel('conv2', 3) - 0.7 * layer_max('conv2')"
    )
    assert repr(layer_mean(2)) == "layer_mean(2)"
    assert repr(channel("conv2", 3) - layer_max("conv2", exclude=3)) == (
        "channel('conv2', 3) - layer_max('conv2', exclude=3)"
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layer_max_exclude_out_of_range_or_not_an_int_is_refused(framework: str) -> None:
    adapter = build(framework)
    with pytest.raises(ValueError, match=r"excluded channel 99 is out of range.*valid 0\.\."):
        feature_viz(adapter, objective=layer_max("conv2", exclude=99), steps=1)
    with pytest.raises(TypeError, match="exclude must be an int, got str"):
        layer_max("conv2", exclude="3")


# -- diversity -------------------------------------------------------------------------------
def style_similarities(adapter: cw.Adapter, images: np.ndarray, layer: str) -> np.ndarray:
    """Pairwise cosine similarities of the images' centred Gram matrices on ``layer``."""
    maps = adapter.activations(images.transpose(0, 3, 1, 2), [layer])[layer]
    flat = maps.reshape(len(maps), maps.shape[1], -1)
    flat = flat - flat.mean(axis=2, keepdims=True)
    grams = np.einsum("ncp,ndp->ncd", flat, flat).reshape(len(flat), -1)
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    i, j = np.triu_indices(len(images), k=1)
    return np.sum(grams[i] * grams[j], axis=1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_diversity_gives_different_images_that_each_excite_the_channel(framework: str) -> None:
    # LeNet's relu2 (trained): the plain objective's three images of a channel are near copies
    # (style similarity 0.99, measured), the diverse ones are not (0.87, 0.15, 0.10).
    lenet = cw.zoo.load("lenet", framework)
    layer, c = "relu2", 3
    plain = feature_viz(lenet, layer, [c] * 3, steps=32, objective="diversity", diversity_weight=0)
    diverse = feature_viz(lenet, layer, [c] * 3, steps=32, objective="diversity")
    before = style_similarities(lenet, plain, layer)
    after = style_similarities(lenet, diverse, layer)
    assert before.min() > 0.9 and after.mean() < 0.6 and np.all(after < before.min()), after
    flat = diverse.reshape(3, -1)
    assert min(np.abs(flat[i] - flat[j]).mean() for i, j in ((0, 1), (0, 2), (1, 2))) > 0.05
    # ... and each still excites its channel: well above a gray image (a third of the way to
    # the plain objective's level at least; measured: about 80 % of it).
    gray = channel_means(lenet, np.full((1, 28, 28, 1), 0.5, np.float32), layer)[0, c]
    best = channel_means(lenet, plain, layer)[:, c].min()
    reached = channel_means(lenet, diverse, layer)[:, c]
    assert np.all(reached > gray + (best - gray) / 3), (gray, reached, best)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_diversity_term_composes_and_needs_a_spatial_layer(framework: str) -> None:
    adapter = build(framework)
    composed = [channel("conv2", 5) + diversity("conv2") for _ in range(2)]
    assert feature_viz(adapter, objective=composed, steps=2).shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match=r"diversity objective needs a layer with a spatial"):
        feature_viz(adapter, objective=[channel("fc1", 0) + diversity("fc1")] * 2, steps=1)
    with pytest.raises(ValueError, match=r"diversity_weight must be a number >= 0, got -1"):
        feature_viz(adapter, "conv2", [5, 5], objective="diversity", diversity_weight=-1)


# -- direction -------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_direction_is_the_weighted_sum_of_its_channels(framework: str) -> None:
    adapter = build(framework)
    weights = np.zeros(16)
    weights[[2, 7]] = [1.5, -0.5]
    recorder_direction, recorder_sum = Recorder(), Recorder()
    by_direction = feature_viz(
        adapter, objective=direction("conv2", weights), steps=4, callback=recorder_direction
    )
    by_sum = feature_viz(
        adapter,
        objective=1.5 * channel("conv2", 2) - 0.5 * channel("conv2", 7),
        steps=4,
        callback=recorder_sum,
    )
    np.testing.assert_allclose(by_direction, by_sum, atol=1e-6)
    np.testing.assert_allclose(recorder_direction.values, recorder_sum.values, rtol=1e-5)


def test_a_direction_checks_its_weights() -> None:
    adapter = build("torch")
    with pytest.raises(ValueError, match=r"direction on layer 'conv2' needs 16 weights .* got 3"):
        feature_viz(adapter, objective=direction("conv2", [1.0, 2.0, 3.0]), steps=1)
    with pytest.raises(ValueError, match=r"all zero"):
        direction("conv2", np.zeros(16))
    with pytest.raises(ValueError, match=r"finite"):
        direction("conv2", [1.0, np.nan])
    with pytest.raises(ValueError, match=r"1-D sequence"):
        direction("conv2", np.ones((2, 8)))
    with pytest.raises(TypeError, match=r"direction weights must be numbers"):
        direction("conv2", ["a", "b"])


# -- image start -----------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("recipe", ["lucid", "naive"])
def test_an_image_start_with_no_steps_returns_the_image(framework: str, recipe: str) -> None:
    photo = cw.zoo.sample_image("chelsea")  # uint8 HWC, 300x451
    expected = load_image(photo, 3, (32, 32)).transpose(1, 2, 0)
    images = feature_viz(build(framework), "conv2", [0, 1], image=photo, size=32, steps=0)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images, np.stack([expected] * 2), atol=1e-6)
    own_size = feature_viz(build(framework), "conv2", [0], image=expected, steps=0, recipe=recipe)
    np.testing.assert_allclose(own_size[0], expected, atol=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("recipe", ["lucid", "naive"])
def test_an_image_start_is_where_the_optimization_begins(framework: str, recipe: str) -> None:
    # DeepDream: the whole layer, from a photo. A vanishing learning rate keeps the image at
    # its start (up to the parameterization's exact inverse), a real one changes it.
    photo = load_image(cw.zoo.sample_image("coffee"), 3, (32, 32)).transpose(1, 2, 0)
    inside = np.clip(photo, 0.01, 0.99)  # the sigmoid reaches 0 and 1 only at infinity
    adapter = build(framework)
    tiny = {"lucid": {"lr": 1e-9}, "naive": {"step_size": 1e-9}}[recipe]
    kept = feature_viz(
        adapter, "conv2", objective="layer", image=inside, steps=2, recipe=recipe, **tiny
    )
    np.testing.assert_allclose(kept[0], inside, atol=1e-4)
    recorder = Recorder()
    dreamed = feature_viz(
        adapter,
        "conv2",
        objective="layer",
        image=inside,
        steps=12,
        recipe=recipe,
        callback=recorder,
    )
    assert 0.005 < np.abs(dreamed[0] - inside).mean() < 0.25
    assert recorder.values[-1][0] > recorder.values[0][0]


def test_steps_zero_needs_an_image_and_a_bad_image_is_named() -> None:
    adapter = build("torch")
    with pytest.raises(ValueError, match=r"steps must be"):
        feature_viz(adapter, "conv2", [0], steps=0)
    with pytest.raises(TypeError, match=r"an image is a numpy array, a PIL image"):
        feature_viz(adapter, "conv2", [0], image=3.5, steps=0)


# -- frames and animations -------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_frames_are_taken_every_k_steps_and_end_with_the_images(framework: str) -> None:
    recorder = Recorder()
    images, frames = feature_viz(
        build(framework), "conv2", [0, 3], steps=10, record_every=4, callback=recorder
    )
    assert frames.shape == (3, 2, 32, 32, 3) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], recorder.images[3])  # after step 4
    np.testing.assert_array_equal(frames[1], recorder.images[7])  # after step 8
    np.testing.assert_array_equal(frames[2], recorder.images[9])  # the last step, 10
    np.testing.assert_array_equal(frames[-1], images)
    # A multiple of k records the last step once.
    images, frames = feature_viz(build(framework), "conv2", [0], steps=8, record_every=4)
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[-1], images)


def test_record_every_must_be_a_positive_int() -> None:
    with pytest.raises(ValueError, match=r"record_every must be"):
        feature_viz(build("torch"), "conv2", [0], steps=2, record_every=0)
    with pytest.raises(ValueError, match=r"record_every must be"):
        feature_viz(build("torch"), "conv2", [0], image=np.zeros((8, 8)), steps=0, record_every=-1)


def test_an_animation_has_one_gif_frame_per_recorded_frame(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((3, 2, 20, 20, 3)).astype(np.float32)
    frames[1] = 0.0  # a black frame in the middle: the order is visible
    path = tmp_path / "run.gif"
    cw.save_animation(frames, path, fps=5, hold_last=2)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
        pictures, durations = [], []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
            pictures.append(np.asarray(gif.convert("RGB"), dtype=np.float32) / 255)
    assert durations == [200, 200, 2000]
    assert pictures[1].max() == 0.0 and pictures[0].mean() > 0.3 and pictures[2].mean() > 0.3
    # Each tile is the frame's image, enlarged by a whole number (nearest neighbour).
    scale = pictures[0].shape[0] // 20
    first_tile = pictures[2][::scale, ::scale][:20, :20]
    assert np.abs(first_tile - frames[2, 0]).mean() < 0.05  # GIF: a 256-colour palette


def test_a_gray_animation_goes_to_a_file_object_and_bad_frames_are_named() -> None:
    frames = np.linspace(0, 1, 4 * 28 * 28).reshape(4, 28, 28, 1)
    buffer = io.BytesIO()
    cw.save_animation(frames, buffer)
    buffer.seek(0)
    with Image.open(buffer) as gif:
        assert gif.n_frames == 4 and gif.mode in ("L", "P")
    with pytest.raises(ValueError, match=r"frames must be \(T, n, H, W, C\)"):
        cw.save_animation(np.zeros((4, 28, 28)), io.BytesIO())
    with pytest.raises(ValueError, match=r"fps must be a number > 0, got 0"):
        cw.save_animation(frames, io.BytesIO(), fps=0)


# -- never harm the model --------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_new_options_leave_the_model_untouched(framework: str) -> None:
    adapter = build(framework)
    dirty(adapter)
    before = adapter.snapshot()
    feature_viz(adapter, "conv1", [0, 1], steps=4)  # auto: neuron + the pull towards gray
    feature_viz(adapter, "conv2", [3, 3], steps=4, objective="diversity", record_every=2)
    feature_viz(adapter, objective=direction("conv2", np.arange(16.0)), steps=4)
    feature_viz(adapter, "conv2", objective="layer", image=np.full((32, 32, 3), 0.3), steps=4)
    with pytest.raises(ValueError):
        feature_viz(adapter, "conv2", [3, 3], objective="diversity", diversity_weight=-1.0)
    assert adapter.same_state(before, adapter.snapshot())
