"""The adapter contract, the same cases run against both backends.

Each case exists as a torch model and as a Keras twin (tests/cases/); through our API they must
look the same: the same conv layers with the same filter shapes, the same output shapes, and
activations shaped as the layer table says — and the model must be untouched afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnn_widgets as cw
from tests.cases import keras_cases, torch_cases

FRAMEWORKS = {"torch": torch_cases.CASES, "keras": keras_cases.CASES}
SHARED = sorted(set(torch_cases.CASES) & set(keras_cases.CASES) - {"nan_weights", "no_conv"})


def build(framework: str, case: str) -> cw.Adapter:
    model, shape = FRAMEWORKS[framework][case]()
    return cw.adapt(model, input_shape=shape)


def conv_signature(adapter: cw.Adapter) -> list[tuple[tuple[int, ...], tuple[int, ...] | None]]:
    return [
        (cw.filters(adapter, info.name).shape, info.output_shape)
        for info in cw.layers(adapter)
        if info.has_filters
    ]


def test_both_catalogues_hold_the_same_cases() -> None:
    common = set(torch_cases.CASES) & set(keras_cases.CASES)
    assert {"sequential", "residual", "branching", "depthwise_grouped", "dilated_strided",
            "bias_free", "grayscale", "non_square", "nested", "conv1d_conv3d", "no_conv",
            "nan_weights"} <= common
    assert "called_twice" in torch_cases.CASES
    assert "subclassed" in keras_cases.CASES


@pytest.mark.parametrize("case", SHARED)
def test_torch_and_keras_twins_show_the_same_filters_and_shapes(case: str) -> None:
    torch_sig = conv_signature(build("torch", case))
    keras_sig = conv_signature(build("keras", case))
    assert torch_sig, f"{case}: no conv layers found"
    assert torch_sig == keras_sig


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", SHARED)
def test_activations_have_the_shapes_the_layer_table_promises(framework: str, case: str) -> None:
    adapter = build(framework, case)
    c, h, w = adapter.spec.shape
    image = np.random.default_rng(0).random((h, w, c), dtype=np.float32)
    infos = [i for i in cw.layers(adapter) if i.output_shape is not None]
    acts = cw.activations(adapter, image)
    assert list(acts) == [i.name for i in infos]
    for info in infos:
        assert acts[info.name].shape == info.output_shape, info.name
        assert acts[info.name].dtype == np.float32


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", SHARED)
def test_every_public_call_leaves_the_model_bit_identical(framework: str, case: str) -> None:
    adapter = build(framework, case)
    before = adapter.snapshot()
    c, h, w = adapter.spec.shape
    cw.summary(adapter)
    for info in cw.layers(adapter):
        if info.has_filters:
            cw.filters(adapter, info.name)
    cw.activations(adapter, np.full((h, w, c), 0.5, np.float32))
    with pytest.raises(ValueError):
        cw.activations(adapter, np.zeros((h, w, c), np.float32), "no such layer")
    with pytest.raises(ValueError):
        cw.activations(adapter, np.zeros((h, w, 7), np.float32))
    assert adapter.same_state(before, adapter.snapshot())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layers_can_be_named_or_indexed(framework: str) -> None:
    adapter = build(framework, "sequential")
    infos = cw.layers(adapter)
    first_conv = next(i for i in infos if i.has_filters)
    np.testing.assert_array_equal(
        cw.filters(adapter, first_conv.index), cw.filters(adapter, first_conv.name)
    )
    np.testing.assert_array_equal(cw.filters(adapter, first_conv.index - len(infos)),
                                  cw.filters(adapter, first_conv.name))
    with pytest.raises(ValueError, match=r"out of range.*valid: 0\.\."):
        cw.filters(adapter, len(infos))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_misspelt_layer_name_suggests_close_names(framework: str) -> None:
    adapter = build(framework, "sequential")
    with pytest.raises(ValueError, match=r"no layer named 'conv_1'.*Did you mean 'conv1'"):
        cw.filters(adapter, "conv_1")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_filters_of_a_layer_without_filters_lists_the_conv_layers(framework: str) -> None:
    adapter = build(framework, "sequential")
    dense = next(i for i in cw.layers(adapter) if i.kind == "dense")
    expected = r"has no 2-D filters.*Layers with filters: 'conv1', 'conv2'"
    with pytest.raises(ValueError, match=expected):
        cw.filters(adapter, dense.name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_conv1d_and_conv3d_are_listed_but_refused_by_2d_views(framework: str) -> None:
    adapter = build(framework, "conv1d_conv3d")
    kinds = {i.kind for i in cw.layers(adapter)}
    assert {"conv2d", "conv1d", "conv3d"} <= kinds
    for kind in ("conv1d", "conv3d"):
        info = next(i for i in cw.layers(adapter) if i.kind == kind)
        assert not info.has_filters
        with pytest.raises(ValueError, match=r"2-D views need Conv2d"):
            cw.filters(adapter, info.name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_model_without_conv_layers_says_so(framework: str) -> None:
    model, shape = FRAMEWORKS[framework]["no_conv"]()
    adapter = cw.adapt(model, input_shape=shape)
    assert not any(i.has_filters for i in cw.layers(adapter))
    with pytest.raises(ValueError, match="no 2-D conv layers"):
        cw.filters(adapter, 0)
    vector = cw.activations(adapter, np.zeros(shape[1:], np.float32), -1)
    assert next(iter(vector.values())).shape == (10,)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_nan_weights_are_returned_with_a_warning_and_rendered_marked(framework: str) -> None:
    adapter = build(framework, "nan_weights")
    with pytest.warns(RuntimeWarning, match="1 NaN/Inf"):
        weights = cw.filters(adapter, "conv1")
    assert np.isnan(weights[0, 0, 0, 0])
    rendered = cw.render_filters(adapter, "conv1")
    assert rendered.meta["nonfinite"] == 1
    assert (rendered.pixels == [255, 0, 255]).all(axis=-1).any()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_grayscale_models_take_rgb_images_and_rgb_models_take_gray_ones(framework: str) -> None:
    gray = build(framework, "grayscale")
    rgb = build(framework, "sequential")
    acts = cw.activations(gray, np.zeros((28, 28, 3), np.uint8), 0)
    assert next(iter(acts.values())).shape[1:] == (28, 28)
    acts = cw.activations(rgb, np.zeros((32, 32), np.uint8), 0)
    assert next(iter(acts.values())).shape[1:] == (32, 32)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_summary_lists_every_layer_with_shapes_and_params(framework: str) -> None:
    adapter = build(framework, "sequential")
    table = cw.summary(adapter)
    text = repr(table)
    assert "conv1" in text and "(8, 32, 32)" in text and "(16, 8, 8)" in text
    assert len(table) == len(cw.layers(adapter))
    html = table._repr_html_()
    assert html.startswith('<table class="cnnw-layer-table">') and "conv2" in html
    # conv1 owns 8*3*3*3 weights + 8 biases, in either framework
    conv1 = next(r for r in table if r.name == "conv1")
    assert conv1.num_params == 8 * 3 * 3 * 3 + 8


def test_summary_html_escapes_hostile_layer_names() -> None:
    from cnn_widgets.analysis.table import LayerTable

    hostile = cw.LayerInfo(name="<img src=x onerror=alert(1)>", type="Conv2d",
                           output_shape=(1, 2, 2), index=0)
    html = LayerTable([hostile], "torch", (3, 4, 4))._repr_html_()
    assert "<img" not in html and "&lt;img src=x" in html


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layers_that_never_ran_are_listed_last_and_marked(framework: str) -> None:
    adapter = build(framework, "never_runs")
    infos = cw.layers(adapter)
    skipped = [i for i in infos if not i.ran]
    assert [i.name for i in skipped] == ["skipped", "unused"]
    assert all(i.calls == 0 and i.output_shape is None for i in skipped)
    assert [i.ran for i in infos] == [True] * (len(infos) - 2) + [False, False]
    # Still usable where no forward pass is needed: a conv that never ran has filters.
    assert cw.filters(adapter, "unused").shape == (4, 8, 3, 3)
    with pytest.raises(ValueError, match=r"'unused'.*did not run in the forward pass"):
        cw.activations(adapter, np.zeros((32, 32, 3), np.float32), "unused")
    table = cw.summary(adapter)
    text = repr(table)
    assert text.count("did not run") == 3  # two rows and the footer
    assert "output layer 'fc' (index -1)" in text
    assert "2 layers did not run in the forward pass" in text
    html = table._repr_html_()
    assert html.count('<tr class="cnnw-not-run"') == 2


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_output_layer_and_negative_indices_skip_layers_that_never_ran(
    framework: str,
) -> None:
    adapter = build(framework, "never_runs")
    infos = cw.layers(adapter)
    ran = [i for i in infos if i.ran]
    assert adapter.output_layer().name == "fc"
    assert adapter.layer(-1).name == "fc"
    assert [adapter.layer(-k).name for k in range(len(ran), 0, -1)] == [i.name for i in ran]
    assert adapter.layer(len(infos) - 1).name == "unused"  # non-negative: the listed position
    with pytest.raises(ValueError, match=rf"-{len(ran)}\.\.-1 counting back from the output "
                                         r"layer 'fc'"):
        adapter.layer(-len(ran) - 1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_output_views_use_the_output_layer_not_the_last_listed(framework: str) -> None:
    adapter = build(framework, "never_runs")
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    before = adapter.snapshot()
    logits = cw.activations(adapter, image, "fc")["fc"]
    top = cw.top_classes(adapter, image, k=3)
    assert [index for index, _, _ in top] == list(np.argsort(-logits, kind="stable")[:3])
    rendered = cw.render_activations(adapter, image, -1)
    assert rendered.meta["kind"] == "topk"
    assert cw.render_activations(adapter, image, "fc").meta["kind"] == "topk"
    assert adapter.same_state(before, adapter.snapshot())
