"""The short paths of the backends' gradients: without the image's gradient (CAM methods) the
graph starts at the chosen layers (torch: a leaf there; Keras: only those outputs watched).
The results must equal the full graph's, the fallback must cover what the short path cannot
(a layer returning a tuple, a chosen layer beside the first), and the model stays untouched."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import attribution, cam_layers
from tests.cases import case

FRAMEWORKS = ["torch", "keras"]




def batch(n: int = 2, shape: tuple[int, int, int] = (3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(3).random((n, *shape), dtype=np.float32)


def gradcam(acts: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return np.maximum((grad.mean(axis=(2, 3), keepdims=True) * acts).sum(axis=1), 0)


def assert_same(short: Any, full: Any, names: list[str]) -> None:
    for name in names:
        assert np.abs(full.layer_grads[name]).max() > 0, name
        np.testing.assert_allclose(
            short.layer_grads[name], full.layer_grads[name], rtol=1e-5, atol=1e-7
        )
        assert np.array_equal(short.activations[name], full.activations[name])
    assert np.array_equal(short.logits, full.logits)
    np.testing.assert_allclose(short.scores, full.scores, rtol=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("key", ["sequential", "residual"])
def test_a_cam_from_the_chosen_layer_equals_the_full_graph_result(framework, key) -> None:
    _, adapter = case(framework, key)
    x = batch()
    names = [info.name for info in cam_layers(adapter)[-3:]]
    full = adapter.gradients(x, names, 4)  # with the image's gradient: the whole graph
    short = adapter.gradients(x, names, 4, input_grad=False)
    assert short.input_grad is None and full.input_grad is not None
    assert_same(short, full, names)
    for name in names:
        maps = attribution(adapter, list(x), method="gradcam", target=4, layer=name)
        expected = gradcam(full.activations[name], full.layer_grads[name])
        for got, want in zip(maps, expected, strict=True):
            np.testing.assert_allclose(got.raw, want, rtol=1e-5, atol=1e-6)


def test_torch_records_nothing_before_the_chosen_layer() -> None:
    """The speed-up itself: layers before the chosen one run without autograd's graph."""
    torch = pytest.importorskip("torch")
    model, adapter = case("torch")
    seen: dict[str, bool] = {}

    def probe(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            seen[name] = bool(output.requires_grad)

        return hook

    handles = [
        model.conv1.register_forward_hook(probe("conv1")),
        model.fc2.register_forward_hook(probe("fc2")),
    ]
    try:
        adapter.gradients(batch(), ["relu2"], 1, input_grad=False)
        assert seen == {"conv1": False, "fc2": True}
        adapter.gradients(batch(), ["relu2"], 1)  # the image's gradient: the whole graph
        assert seen == {"conv1": True, "fc2": True}
    finally:
        for handle in handles:
            handle.remove()
    assert isinstance(model, torch.nn.Module)


def _tuple_and_branches() -> Any:
    import torch
    from torch import nn

    class Pair(nn.Module):
        """A layer (a leaf module) returning a tuple, as an LSTM or an attention block does."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = nn.functional.conv2d(x, self.weight, padding=1)
            return out, out.mean()

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()
            self.left = nn.Conv2d(6, 4, 3, padding=1)
            self.right = nn.Conv2d(3, 4, 3, padding=1)  # from the image, beside self.pair
            self.relu = nn.ReLU()
            self.head = nn.Sequential(
                OrderedDict([("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()),
                             ("fc", nn.Linear(4, 5))])
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features, _ = self.pair(x)
            return self.head(self.relu(self.left(features) + self.right(x)))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Model().eval()
    return model


@pytest.mark.parametrize(
    "names",
    [
        ["pair"],  # a tuple output: no leaf can start the graph there
        ["left", "right"],  # "right" does not depend on "left": the short graph misses it
        ["right", "relu"],
    ],
)
def test_torch_falls_back_to_the_full_graph(names) -> None:
    pytest.importorskip("torch")
    model = _tuple_and_branches()
    adapter = cw.adapt(model, input_shape=(3, 16, 16))
    x = batch(3, (3, 16, 16))
    before = adapter.snapshot()
    full = adapter.gradients(x, names, 2)
    short = adapter.gradients(x, names, 2, input_grad=False)
    assert_same(short, full, names)
    assert adapter.same_state(before, adapter.snapshot())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_short_paths_leave_the_model_untouched(framework) -> None:
    model, adapter = case(framework, "residual")
    if framework == "torch":
        import torch

        model.train()
        next(iter(model.children())).eval()  # mixed modes come back as they were
        params = list(model.parameters())
        params[0].requires_grad_(False)
        params[-1].grad = torch.full_like(params[-1], 0.25)
        flags = [p.requires_grad for p in params]
        modes = [m.training for m in model.modules()]
    else:
        model.layers[1].trainable = False
        flags = [v.trainable for v in model.variables]
    before = adapter.snapshot()
    x = batch()
    for method in ("gradcam", "layercam", "scorecam", "saliency", "smoothgrad"):
        options = {"k": 2} if method == "scorecam" else {}
        if method == "smoothgrad":
            options = {"samples": 3}
        attribution(adapter, list(x), method=method, target=1, **options)
    adapter.gradients(x, [], 1, backward=False)

    def broken(out: Any) -> Any:
        raise RuntimeError("a target that fails half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        attribution(adapter, x[0], method="gradcam", target=broken)
    assert adapter.same_state(before, adapter.snapshot())
    if framework == "torch":
        assert [p.requires_grad for p in model.parameters()] == flags
        assert [m.training for m in model.modules()] == modes
        assert float(params[-1].grad.sum()) == pytest.approx(0.25 * params[-1].numel())
    else:
        assert [v.trainable for v in model.variables] == flags


def _viewing_model() -> Any:
    """A model that calls ``.view()`` on a conv output: it raises on channels-last memory."""
    import torch
    from torch import nn

    class Viewing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(4 * 8 * 8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.conv(x))
            return self.fc(out.view(out.shape[0], -1))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return Viewing().eval()


def test_torch_gradients_of_a_model_that_cannot_take_channels_last() -> None:
    """The image goes in channels-last; a model whose forward pass fails on that memory order
    is run again in the default one (and remembered), with the same results as plain torch."""
    torch = pytest.importorskip("torch")
    from cnn_widgets.backends import torch_gradients

    model = _viewing_model()
    adapter = cw.adapt(model, input_shape=(3, 8, 8))
    x = batch(2, (3, 8, 8))
    adapter.layers()  # traced now, not inside the counted calls
    calls: list[int] = []
    handle = model.conv.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        before = adapter.snapshot()
        with pytest.raises(RuntimeError):  # the premise: .view() fails on channels-last
            model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
        calls.clear()
        got = adapter.gradients(x, ["relu"], 3)
        assert len(calls) == 2  # the channels-last try and the default-layout pass
        assert model in torch_gradients._DEFAULT_LAYOUT
        calls.clear()
        again = adapter.gradients(x, ["relu"], 3)
        assert len(calls) == 1  # remembered: no second try
        assert adapter.same_state(before, adapter.snapshot())
    finally:
        handle.remove()
    image = torch.from_numpy(x).requires_grad_(True)
    scores = model(image)[:, 3]
    (want,) = torch.autograd.grad(scores.sum(), image)
    for result in (got, again):
        assert result.input_grad.flags.c_contiguous
        np.testing.assert_allclose(result.input_grad, want.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.scores, scores.detach().numpy(), rtol=1e-6)


def test_torch_gradients_come_back_in_c_order() -> None:
    """Channels-last inside, plain (C-contiguous) arrays outside, equal to plain torch."""
    torch = pytest.importorskip("torch")
    model, adapter = case("torch")
    x = batch()
    result = adapter.gradients(x, ["relu2"], 1)
    for array in (result.input_grad, result.activations["relu2"], result.layer_grads["relu2"]):
        assert array.flags.c_contiguous
    image = torch.from_numpy(x).requires_grad_(True)
    (want,) = torch.autograd.grad(model(image)[:, 1].sum(), image)
    np.testing.assert_allclose(result.input_grad, want.numpy(), rtol=1e-5, atol=1e-7)
