# ruff: noqa: F811  (the widget fixtures imported from tests.test_widgets are requested by name)
"""Real third-party architectures through the whole public surface.

Eight ``keras.applications`` and nine ``torchvision.models`` definitions (built offline, with
seeded random weights, at 64-96 px with 10 classes; see ``tests/real_architectures.py``) go
through every public function: the layer list and table, filters, activations at three
depths, every picture, the top classes, a short feature visualization, the health report,
kernel x image responses and the Explorer widget. Each test also checks that the model is
bit for bit as it was before (weights, modes, grad flags, hooks): the torch models are left
in training mode on purpose, as a user's may be.

One model at a time is built (a module-scoped fixture per model: pytest runs every test of
one model before building the next), so memory stays that of the largest model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest
import torch

import cnn_widgets as cw
import cnn_widgets.featureviz as featureviz
from cnn_widgets.api import to_probabilities
from cnn_widgets.featureviz import channel, class_logit
from cnn_widgets.widgets import Explorer
from tests.real_architectures import (
    CLASSES,
    KERAS_MODELS,
    TORCH_MODELS,
    Architecture,
    RealModel,
)
from tests.test_widgets import (  # noqa: F401  (fixtures are found by name)
    PNG_SIGNATURE,
    make,
    recording_comms,
)

MODELS: dict[str, Architecture] = {
    **{f"torch:{name}": entry for name, entry in TORCH_MODELS.items()},
    **{f"keras:{name}": entry for name, entry in KERAS_MODELS.items()},
}

# torchvision lists modules that never run after the classifier: EfficientNet's
# stochastic_depth of blocks without a residual, ShuffleNetV2's empty branch1 of stride-1
# blocks. They are the corpus's cases of the rule "listed, marked, never the output".
NEVER_RUN = {
    "torch:efficientnet_b0": "stochastic_depth",
    "torch:shufflenet_v2_x0_5": "branch1",
}

# Conv types whose output is exactly a sum over their inputs plus a bias (no pointwise step,
# no transposed geometry), so kernel x image responses must add up to it.
_PLAIN_CONVS = ("Conv2d", "Conv2D", "DepthwiseConv2D")


@dataclass(repr=False)
class Loaded:
    """One built model and the layers the tests look at."""

    key: str
    real: RealModel
    adapter: cw.Adapter
    image: np.ndarray
    infos: list[cw.LayerInfo]

    def __repr__(self) -> str:  # failure reports show this, not a model of 400 layers
        return f"<Loaded {self.key}>"

    @property
    def convs(self) -> list[cw.LayerInfo]:
        return [i for i in self.infos if i.has_filters]

    @property
    def ran_spatial(self) -> list[cw.LayerInfo]:
        return [i for i in self.infos if i.ran and i.is_spatial]

    @property
    def middle_spatial(self) -> cw.LayerInfo:
        spatial = self.ran_spatial
        return spatial[len(spatial) // 2]

    @property
    def middle_conv(self) -> cw.LayerInfo:
        ran = [i for i in self.convs if i.ran]
        return ran[len(ran) // 2]

    def responses_conv(self) -> cw.LayerInfo:
        """The middle conv whose output is its kernel x image sum plus bias."""
        plain = [i for i in self.convs if i.ran and i.type in _PLAIN_CONVS]
        if self.adapter.framework == "keras":  # a fused activation would change the output
            plain = [i for i in plain if _keras_layer(self.real.model, i.name).activation is
                     keras.activations.linear]
        return plain[len(plain) // 2]


def _keras_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """A layer by the adapter's name: nested models are listed as ``outer/inner``."""
    layer = model
    for part in name.split("/"):
        layer = layer.get_layer(part)
    return layer


@pytest.fixture(scope="module", params=list(MODELS))
def loaded(request: pytest.FixtureRequest) -> Loaded:
    real = MODELS[request.param].build()
    adapter = real.adapt()
    before = adapter.snapshot()
    infos = cw.layers(adapter)  # the discovery pass: it must not harm the model either
    assert adapter.same_state(before, adapter.snapshot())
    return Loaded(request.param, real, adapter, cw.zoo.sample_image("chelsea"), infos)


@pytest.fixture
def untouched(loaded: Loaded) -> Iterator[None]:
    """Every test leaves the model bit for bit as it found it (and the torch models in
    training mode, where the corpus leaves them)."""
    adapter = loaded.adapter
    before = adapter.snapshot()
    yield
    assert adapter.same_state(before, adapter.snapshot()), f"{loaded.key} was changed"
    if isinstance(loaded.real.model, torch.nn.Module):
        assert loaded.real.model.training


@pytest.fixture(autouse=True)
def few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "2")


def test_the_corpus_covers_the_architectural_families() -> None:
    def covered(framework: str) -> set[str]:
        return {
            family
            for key, entry in MODELS.items()
            if key.startswith(f"{framework}:")
            for family in entry.families
        }

    shared = {
        "residual", "dense concatenation", "depthwise", "squeeze-excitation",
        "LayerNorm blocks", "inception branches",
    }
    assert shared | {"channel shuffle", "stochastic depth"} <= covered("torch")
    assert shared | {
        "separable convolutions", "Rescaling + Normalization inside", "Rescaling inside",
        "Normalization inside",
    } <= covered("keras")
    assert len(TORCH_MODELS) >= 6 and len(KERAS_MODELS) >= 6


@pytest.mark.usefixtures("untouched")
class TestRealArchitecture:
    def test_layers_are_listed_with_those_that_never_ran_last_and_marked(
        self, loaded: Loaded
    ) -> None:
        infos = loaded.infos
        assert [i.index for i in infos] == list(range(len(infos)))
        ran = [i.ran for i in infos]
        assert ran == sorted(ran, reverse=True), "layers that ran come first"
        skipped = [i for i in infos if not i.ran]
        assert all(i.output_shape is None and i.calls == 0 for i in skipped)
        if loaded.key in NEVER_RUN:
            assert skipped and all(NEVER_RUN[loaded.key] in i.name for i in skipped)
        output = loaded.adapter.output_layer()
        assert output.ran and output.output_shape in ((CLASSES,), (CLASSES, 1, 1))
        assert loaded.adapter.layer(-1) == output
        table = cw.summary(loaded.adapter)
        assert len(table) == len(infos)
        text, html = repr(table), table._repr_html_()
        assert f"output layer {output.name!r} (index -1)" in text
        assert text.count("did not run") == len(skipped) + (1 if skipped else 0)
        assert html.count('class="cnnw-not-run"') == len(skipped)

    def test_filters_of_the_first_middle_and_last_conv(self, loaded: Loaded) -> None:
        convs = loaded.convs
        for info in (convs[0], convs[len(convs) // 2], convs[-1]):
            weights = cw.filters(loaded.adapter, info.name)
            assert weights.dtype == np.float32 and weights.ndim == 4, info.name
            assert np.isfinite(weights).all(), info.name
            if info.type in ("Conv2d", "Conv2D") and info.ran:
                assert weights.shape[0] == info.output_shape[0], info.name
            np.testing.assert_array_equal(weights, cw.filters(loaded.adapter, info.index))

    def test_activations_at_three_depths_have_the_promised_shapes(self, loaded: Loaded) -> None:
        first, middle = loaded.ran_spatial[0], loaded.middle_spatial
        output = loaded.adapter.output_layer()
        acts = cw.activations(loaded.adapter, loaded.image, [first.name, middle.name, -1])
        assert list(acts) == [first.name, middle.name, output.name]
        for info in (first, middle, output):
            assert acts[info.name].shape == info.output_shape, info.name
            assert acts[info.name].dtype == np.float32
            assert np.isfinite(acts[info.name]).all(), info.name

    def test_filter_pictures(self, loaded: Loaded) -> None:
        for info in (loaded.convs[0], loaded.middle_conv):
            grid = cw.render_filters(loaded.adapter, info.name)
            single = cw.render_filters(loaded.adapter, info.name, single=0)
            for picture in (grid, single):
                assert picture.pixels.dtype == np.uint8 and picture.pixels.shape[2] == 3
                assert picture.meta.get("nonfinite", 0) == 0
            assert grid.meta["kind"] == "filters"

    def test_every_activation_view(self, loaded: Loaded) -> None:
        adapter, image, middle = loaded.adapter, loaded.image, loaded.middle_spatial.name
        kinds = {
            view: cw.render_activations(adapter, image, middle, view=view).meta["kind"]
            for view in ("grid", "sum", "mean")
        }
        assert kinds == {"grid": "activations", "sum": "activation_sum", "mean": "activation_sum"}
        single = cw.render_activations(adapter, image, middle, view="channel", channel=0)
        assert single.pixels.ndim == 3
        assert cw.render_activations(adapter, image, -1, view="dense").meta["kind"] == "dense"
        probabilities = cw.render_activations(adapter, image, -1, view="probabilities")
        assert probabilities.meta["kind"] == "topk"
        # -1 is the model's output: its automatic view is the top classes.
        auto = cw.render_activations(adapter, image, -1)
        assert auto.meta["kind"] == "topk" and auto.meta["total"] == CLASSES

    def test_top_classes_rank_the_output(self, loaded: Loaded) -> None:
        top = cw.top_classes(loaded.adapter, loaded.image, k=3)
        (vector,) = cw.activations(loaded.adapter, loaded.image, -1).values()
        everything = to_probabilities(vector.reshape(-1))
        # Random weights can make logits all but equal (EfficientNet's are ~1e-14 here), so
        # classes may tie: check the values, not which of the tied classes comes first.
        probabilities = [p for _, _, p in top]
        assert probabilities == [float(everything[i]) for i, _, _ in top]
        np.testing.assert_allclose(probabilities, np.sort(everything)[::-1][:3], rtol=1e-6)
        assert len({i for i, _, _ in top}) == 3 and all(0 <= i < CLASSES for i, _, _ in top)
        assert all(label == str(i) for i, label, _ in top)  # no labels given: the index

    def test_a_short_feature_visualization_of_a_channel_and_a_class(self, loaded: Loaded) -> None:
        # One run, two images: a middle conv's channel 0 and class 0 of the output layer (the
        # class objective's default layer), at the model's own size (< 128 px).
        objectives = [channel(loaded.middle_conv.name, 0), class_logit(0)]
        images = cw.feature_viz(loaded.adapter, objective=objectives)
        _, height, width = loaded.adapter.spec.shape
        assert images.shape == (2, height, width, 3)
        assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0

    def test_health_report(self, loaded: Loaded) -> None:
        images = [loaded.image, cw.zoo.sample_image("coffee")]
        report = cw.health_report(loaded.adapter, images)
        assert report.layers == tuple(i.name for i in loaded.convs)
        assert report.images == 2
        assert report.not_run == tuple(i.name for i in loaded.convs if not i.ran)
        assert all(f.layer in report.layers for f in report.findings)
        assert not any(f.kind.startswith("nonfinite") for f in report.findings)

    def test_filter_responses_add_up_to_the_conv_output(self, loaded: Loaded) -> None:
        info = loaded.responses_conv()
        responses = cw.filter_responses(loaded.adapter, loaded.image, info.name, 0)
        out = cw.activations(loaded.adapter, loaded.image, info.name)[info.name][0]
        assert responses.total.shape == out.shape
        # Our sum runs in float64; the framework's conv in float32, in its own order, over
        # up to kh*kw*C ~ 1e4 terms: rounding stays far below 1e-4 of the largest partial sum.
        scale = float(np.abs(responses.per_input).sum(axis=0).max()) + 1e-6
        np.testing.assert_allclose(responses.output, out, rtol=0, atol=1e-4 * scale)

    def test_the_explorer_paints_a_picture(self, loaded: Loaded, make: Any) -> None:
        viewer = make(Explorer, loaded.adapter, loaded.image)
        viewer.wait()
        assert viewer.error == ""
        assert viewer.grid_format == "png" and viewer.grid.startswith(PNG_SIGNATURE)

    def test_the_explorer_shows_the_top_classes_at_the_output_layer(
        self, loaded: Loaded, make: Any
    ) -> None:
        # As render_activations(model, image, -1) does: the output layer is the one
        # adapter.output_layer() names (not the last listed: torchvision's EfficientNet and
        # ShuffleNetV2 list modules that never ran after it), and its (C, 1, 1) output
        # (SqueezeNet's pooled conv classifier) is a vector of class scores.
        viewer = make(Explorer, loaded.adapter, loaded.image, layer=-1, view="activations")
        viewer.wait()
        assert viewer.error == ""
        assert viewer.layer == loaded.adapter.output_layer().name
        assert viewer.grid.startswith(PNG_SIGNATURE)
        assert viewer.grid_meta.get("kind") == "topk"
        assert len(viewer.predictions) == 5
