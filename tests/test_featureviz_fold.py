"""BatchNorm folding for torch feature visualization (``cnn_widgets.featureviz.torch_fold``):
the run uses a private copy with each eval-mode BatchNorm folded into its conv, computes the
same targets, and never changes the user's model."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz, torch_fused_ops, torch_impl
from cnn_widgets.featureviz.torch_fold import folded_copy


def with_statistics(model: nn.Module) -> nn.Module:
    """Give every BatchNorm running statistics and an affine map far from the identity, so
    that a fold that is wrong (or missing) changes the numbers."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.2)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


def conv_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return with_statistics(
        nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 8, 3, padding=1),
                bn1=nn.BatchNorm2d(8),
                relu1=nn.ReLU(),
                dw=nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                bn2=nn.BatchNorm2d(8),
                relu2=nn.ReLU6(),
                conv3=nn.Conv2d(8, 16, 3, padding=1),
                bn3=nn.BatchNorm2d(16),
            )
        )
    )


class SkipFromConv(nn.Module):
    """The conv's output feeds its BatchNorm *and* a skip connection: folding would change
    the skip, so the check must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.out = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.out(self.bn(y) + y)


def hooked_outputs(model: nn.Module, modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    """``run`` for folded_copy: the modules' outputs on one fixed random image."""
    return hooked_outputs_of(model, modules)


def hooked_outputs_of(
    model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor | None = None
) -> list[torch.Tensor]:
    if x is None:
        x = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    seen: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, args, out: seen.setdefault(id(mod), out.clone()))
        for m in modules
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[id(m)] for m in modules]


def test_the_copy_folds_every_conv_batchnorm_pair_and_computes_the_same() -> None:
    model = conv_bn_model()
    adapter = cw.adapt(model, input_shape=(3, 16, 16))
    before = adapter.snapshot()
    targets = [model.relu2, model.bn3]
    folded = folded_copy(model, targets, hooked_outputs)
    assert folded is not None and folded.folded == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.model.modules())
    expected = hooked_outputs(model, targets)
    actual = hooked_outputs(folded.model, [folded.module(t) for t in targets])
    for want, got in zip(expected, actual, strict=True):
        # float32 sums in another order: a few ulps of the largest value
        np.testing.assert_allclose(got, want, atol=1e-5 * float(want.abs().max()))
    assert adapter.same_state(before, adapter.snapshot())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3


def test_a_conv_that_is_a_target_or_feeds_a_skip_is_not_folded() -> None:
    model = conv_bn_model()
    folded = folded_copy(model, [model.conv3], hooked_outputs)
    assert folded is not None and folded.folded == 2  # conv3's output is the target
    skip = with_statistics(SkipFromConv())
    assert folded_copy(skip, [skip.out], hooked_outputs) is None


@pytest.mark.parametrize("layer", ["relu2", "bn3", "conv3"])
def test_feature_viz_on_the_folded_copy_matches_the_model_and_leaves_it_alone(
    layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = cw.adapt(conv_bn_model(), input_shape=(3, 16, 16))
    adapter.model.train()  # a mode the run must give back
    before = adapter.snapshot()
    counts = []
    compile_ = torch_impl.Session.compile

    def spy(self: torch_impl.Session, run: object) -> None:
        compile_(self, run)
        counts.append(self.folded)

    monkeypatch.setattr(torch_impl.Session, "compile", spy)
    recorders = {}
    for fold in (True, False):
        monkeypatch.setattr(torch_impl.Session, "fold_batchnorm", fold)
        values: list[np.ndarray] = []
        feature_viz(
            adapter,
            layer,
            [0, 1],
            steps=3,
            size=16,
            objective="channel",
            callback=lambda step, images, v, kept=values: kept.append(v.copy()),
        )
        recorders[fold] = np.stack(values)
    assert counts == [{"relu2": 2, "bn3": 3, "conv3": 2}[layer], 0]
    # The first step's values are the model's response to the same view of the same start;
    # later ones may drift by rounding amplified by Adam, far less than the values move.
    np.testing.assert_allclose(recorders[True][0], recorders[False][0], rtol=1e-4, atol=1e-5)
    assert adapter.same_state(before, adapter.snapshot())
    assert adapter.model.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in adapter.model.modules()) == 3


def pointwise_model() -> nn.Module:
    torch.manual_seed(0)
    return with_statistics(
        nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 8, 3, padding="same"),
                relu1=nn.ReLU(),
                expand=nn.Conv2d(8, 16, 1, bias=False),
                bn=nn.BatchNorm2d(16),
                relu2=nn.ReLU6(),
                project=nn.Conv2d(16, 4, 1),
                out=nn.Conv2d(4, 4, 3, padding="same", dilation=2),
            )
        )
    )


@pytest.mark.parametrize("channels_last", [True, False])
def test_one_by_one_and_same_padded_convs_are_rewritten_and_compute_the_same(
    channels_last: bool,
) -> None:
    model = pointwise_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def run(m: nn.Module, modules: Sequence[nn.Module]) -> list[torch.Tensor]:
        x = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return hooked_outputs_of(m, modules, x)

    targets = [model.out]
    folded = folded_copy(model, targets, run, fuse_activations=False)  # fusion: tested below
    assert folded is not None and folded.folded == 1
    # expand and project become matrix products; conv1 gets numbers; out is the target
    assert folded.rewritten == 3
    kinds = {n: type(m).__name__ for n, m in folded.model.named_children()}
    assert kinds["expand"] == kinds["project"] == "PointwiseConv"
    assert folded.model.conv1.padding == (1, 1) and folded.model.out.padding == "same"
    for want, got in zip(run(model, targets), run(folded.model, [folded.model.out]), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(want.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.conv1.padding == "same" and isinstance(model.expand, nn.Conv2d)


def test_convs_are_not_rewritten_when_asked_not_to_or_when_hooked() -> None:
    model = pointwise_model()
    folded = folded_copy(model, [model.out], hooked_outputs_of, rewrite_convs=False)
    assert folded is not None and folded.rewritten == 0
    handle = model.project.register_forward_hook(lambda *args: None)
    try:
        folded = folded_copy(model, [model.out], hooked_outputs_of, fuse_activations=False)
        assert folded is not None
        assert isinstance(folded.model.project, nn.Conv2d)  # the user's hook still runs
        assert type(folded.model.expand).__name__ == "PointwiseConv"
    finally:
        handle.remove()


def tf_same_model() -> nn.Module:
    """Strided convs that pad "same" the TensorFlow way (the zoo's EfficientNet class), at
    both parities of the input size and both kernel sizes EfficientNet uses."""
    from cnn_widgets.zoo import efficientnet

    same = efficientnet.Conv2dSame
    torch.manual_seed(0)
    return with_statistics(
        nn.Sequential(
            OrderedDict(
                stem=same(3, 8, 3, 2, bias=False),
                bn=nn.BatchNorm2d(8),
                relu=nn.ReLU6(),
                dw3=same(8, 8, 3, 2, groups=8, bias=False),
                dw5=same(8, 16, 5, 2, groups=8),
                out=nn.Conv2d(16, 4, 1),
            )
        )
    )


@pytest.mark.parametrize("size", [(32, 32), (31, 30), (17, 32)])
def test_strided_tf_same_depthwise_convs_run_without_a_padded_copy_and_compute_the_same(
    size: tuple[int, int],
) -> None:
    model = tf_same_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand((2, 3, *size), generator=torch.Generator().manual_seed(0))

    def run(m: nn.Module, modules: Sequence[nn.Module]) -> list[torch.Tensor]:
        return hooked_outputs_of(m, modules, x.contiguous(memory_format=torch.channels_last))

    folded = folded_copy(model, [model.out], run)
    assert folded is not None and folded.folded == 1
    kinds = {n: type(m).__name__ for n, m in folded.model.named_children()}
    # the depthwise ones are rewritten (dw5 with its bias); the dense stem keeps its F.pad
    assert kinds["dw3"] == kinds["dw5"] == "SamePaddedConv"
    assert kinds["stem"] == "Conv2dSame"
    want = run(model, [model.out])[0]
    got = run(folded.model, [folded.model.out])[0]
    np.testing.assert_allclose(got, want, atol=1e-5 * float(want.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(model.dw3).__name__ == "Conv2dSame"


class ConvBlocks(nn.Module):
    """Each kind of convolution the copy fuses a ReLU into: a plain 3x3 (ReLU), a 1x1 run as
    a matrix product (ReLU6, after a BatchNorm) and a strided TensorFlow-"same" depthwise
    conv (ReLU6, after a BatchNorm); then a 1x1 projection and the target."""

    def __init__(self) -> None:
        from cnn_widgets.zoo import efficientnet

        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.expand = nn.Conv2d(8, 16, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU6()
        self.dw = efficientnet.Conv2dSame(16, 16, 3, 2, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu3 = nn.ReLU6()
        self.project = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.bn1(self.expand(x)))
        return self.project(self.relu3(self.bn2(self.dw(x))))


def conv_blocks() -> nn.Module:
    torch.manual_seed(0)
    model = with_statistics(ConvBlocks())
    with torch.no_grad():  # pre-activations on both sides of 0 and of 6
        model.conv1.weight.mul_(4.0)
        model.bn1.weight.mul_(4.0)
        model.bn2.weight.mul_(4.0)
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # as feature_viz's protect() leaves them
    return model


def value_and_input_gradient(
    model: nn.Module, target: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    (out,) = hooked_outputs_of_with_grad(model, [target], x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), grad


def hooked_outputs_of_with_grad(
    model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor
) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, args, out: seen.setdefault(id(mod), out))
        for m in modules
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[id(m)] for m in modules]


@pytest.mark.parametrize("channels_last", [True, False])
def test_relus_after_convs_are_fused_with_the_same_values_and_input_gradients(
    channels_last: bool,
) -> None:
    model = conv_blocks()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand((2, 3, 17, 18), generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=layout)

    def run(m: nn.Module, modules: Sequence[nn.Module]) -> list[torch.Tensor]:
        return hooked_outputs_of(m, modules, x)

    folded = folded_copy(model, [model.project], run)
    assert folded is not None and folded.folded == 2
    if torch_fused_ops.FUSED_OPS:  # a CPU build with oneDNN
        assert folded.fused == 3
        kinds = {n: type(m).__name__ for n, m in folded.model.named_children()}
        assert kinds["conv1"] == kinds["expand"] == kinds["dw"] == "ActivatedConv"
        assert kinds["relu1"] == kinds["relu2"] == kinds["relu3"] == "Identity"
        assert type(folded.model.dw.conv).__name__ == "SamePaddedConv"
    unfused = folded_copy(model, [model.project], run, fuse_activations=False)
    assert unfused is not None and unfused.fused == 0
    want, want_grad = value_and_input_gradient(model, model.project, x)
    for copy_ in (folded, unfused):
        got, got_grad = value_and_input_gradient(copy_.model, copy_.module(model.project), x)
        # float32 sums in another order (the fold, oneDNN's kernels): ulps of the largest value
        np.testing.assert_allclose(got, want, atol=1e-5 * float(want.abs().max()))
        np.testing.assert_allclose(got_grad, want_grad, atol=1e-5 * float(want_grad.abs().max()))
    # the gradient did pass the clamps, and units were clipped at both ends of each ReLU6
    assert float(want_grad.abs().max()) > 0
    for pre in hooked_outputs_of(model, [model.bn1, model.bn2], x):
        assert float(pre.min()) < 0 < 6 < float(pre.max())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.relu2, nn.ReLU6) and isinstance(model.expand, nn.Conv2d)


class SharedAndSkipped(nn.Module):
    """A ReLU module called twice, and a conv whose output also feeds a sum: neither may be
    fused (the first is found by counting calls, the second by the check)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu3 = nn.ReLU6()
        self.out = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        y = self.bn(self.conv3(x))
        return self.out(self.relu3(y) + y)


def test_a_shared_relu_or_a_conv_output_used_twice_is_not_fused() -> None:
    model = with_statistics(SharedAndSkipped())
    folded = folded_copy(model, [model.out], hooked_outputs_of)
    assert folded is not None
    assert folded.folded == 1 and folded.fused == 0  # rebuilt without the wrong fusion
    assert isinstance(folded.model.relu, nn.ReLU) and isinstance(folded.model.relu3, nn.ReLU6)
    (want,) = hooked_outputs(model, [model.out])
    (got,) = hooked_outputs(folded.model, [folded.model.out])
    np.testing.assert_allclose(got, want, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("warmup_steps", [0, 2])
def test_feature_viz_with_fused_relus_matches_the_unfused_copy_through_the_warm_up(
    warmup_steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During the dead-ReLU warm-up the fused convs run the redirected clamp, after it the
    fused kernel: both give the values of the copy without fusion."""
    adapter = cw.adapt(conv_blocks(), input_shape=(3, 17, 18))
    before = adapter.snapshot()
    fused_counts = []
    compile_ = torch_impl.Session.compile

    def spy(self: torch_impl.Session, run: object) -> None:
        compile_(self, run)
        fused_counts.append(self.fused)

    monkeypatch.setattr(torch_impl.Session, "compile", spy)
    recorded = {}
    for fuse in (True, False):
        monkeypatch.setattr(torch_impl.Session, "fuse_activations", fuse)
        values: list[np.ndarray] = []
        feature_viz(
            adapter,
            "project",
            [0, 1, 2],
            steps=4,
            size=18,
            objective="channel",
            warmup_steps=warmup_steps,
            callback=lambda step, images, v, kept=values: kept.append(v.copy()),
        )
        recorded[fuse] = np.stack(values)
    assert fused_counts == [3 if torch_fused_ops.FUSED_OPS else 0, 0]
    # The first step sees the same view of the same start; later ones may drift by rounding
    # amplified by Adam, far less than the values move.
    np.testing.assert_allclose(recorded[True][0], recorded[False][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(recorded[True], recorded[False], rtol=1e-2, atol=1e-3)
    assert adapter.same_state(before, adapter.snapshot())
