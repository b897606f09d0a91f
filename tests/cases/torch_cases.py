"""PyTorch half of the shared model catalogue.

Each factory returns ``(model, (C, H, W))``: a small model in eval mode with seeded random
weights. The Keras catalogue uses the same keys with the same conv filter shapes (in forward
order) and the same conv output shapes, so one test can run against both frameworks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

Shape = tuple[int, int, int]


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    # fork_rng: seed for reproducible weights without moving the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
    return model.eval()


def _gap_head(channels: int) -> list[tuple[str, nn.Module]]:
    return [
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels, 10)),
    ]


def _sequential_model() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(8, 16, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 8 * 8, 32)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(32, 10)),
            ]
        )
    )


def sequential() -> tuple[nn.Module, Shape]:
    return _seeded(_sequential_model), (3, 32, 32)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with batch norm, added to the input, then a ReLU of its own."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(channels)
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return self.relu_out(x + out)


def residual() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("stem", nn.Conv2d(3, 16, 3, padding=1)),
                    ("block", ResidualBlock(16)),
                    *_gap_head(16),
                ]
            )
        )

    return _seeded(build), (3, 32, 32)


class Branching(nn.Module):
    """Inception-like: four parallel branches concatenated along channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b3 = nn.Conv2d(8, 4, 3, padding=1)
        self.b5 = nn.Conv2d(8, 4, 5, padding=2)
        self.bpool = nn.MaxPool2d(3, stride=1, padding=1)
        self.bpool_proj = nn.Conv2d(8, 4, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bpool_proj(self.bpool(x))], 1)
        return self.fc(self.flatten(self.gap(x)))


def branching() -> tuple[nn.Module, Shape]:
    return _seeded(Branching), (3, 32, 32)


def depthwise_grouped() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(3, 8, 3, padding=1)),
                    ("dw", nn.Conv2d(8, 8, 3, padding=1, groups=8)),
                    ("grouped", nn.Conv2d(8, 16, 3, padding=1, groups=2)),
                    *_gap_head(16),
                ]
            )
        )

    return _seeded(build), (3, 32, 32)


def dilated_strided() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("strided", nn.Conv2d(3, 8, 3, stride=2, padding=1)),
                    ("dilated", nn.Conv2d(8, 8, 3, dilation=2, padding=2)),
                    ("valid", nn.Conv2d(8, 8, 5)),
                    *_gap_head(8),
                ]
            )
        )

    return _seeded(build), (3, 32, 32)


def bias_free() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        model = nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(3, 8, 3, padding=1, bias=False)),
                    ("bn", nn.BatchNorm2d(8)),
                    ("relu", nn.ReLU()),
                    *_gap_head(8),
                ]
            )
        )
        # Running statistics other than 0 / 1, so that eval-mode batch norm visibly acts.
        bn = model.bn
        bn.running_mean.copy_(torch.randn(8) * 0.5)
        bn.running_var.copy_(torch.rand(8) + 0.5)
        return model

    return _seeded(build), (3, 32, 32)


def grayscale() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 6, 5, padding=2)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(6, 16, 5)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(400, 10)),
                ]
            )
        )

    return _seeded(build), (1, 28, 28)


def non_square() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(3, 8, 3, padding=1)),
                    ("relu", nn.ReLU()),
                    ("conv2", nn.Conv2d(8, 8, 3, stride=2, padding=1)),
                    *_gap_head(8),
                ]
            )
        )

    return _seeded(build), (3, 24, 40)


class ConvRelu(nn.Module):
    """A conv and its ReLU, nested one level down (names ``features.0.conv``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def nested() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("features", nn.Sequential(ConvRelu(3, 8), ConvRelu(8, 8))),
                    *_gap_head(8),
                ]
            )
        )

    return _seeded(build), (3, 32, 32)


class CalledTwice(nn.Module):
    """One ReLU module applied after both convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.fc(self.flatten(self.gap(x)))


def called_twice() -> tuple[nn.Module, Shape]:
    return _seeded(CalledTwice), (3, 32, 32)


class Conv1dConv3d(nn.Module):
    """A Conv2d, then the same features seen as 1-D and 3-D signals."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1d = nn.Conv1d(4, 4, 3, padding=1)
        self.conv3d = nn.Conv3d(1, 2, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        n, c, h, w = x.shape
        x = self.conv1d(x.reshape(n, c, h * w)).reshape(n, c, h, w)
        x = self.conv3d(x.unsqueeze(1)).mean(dim=1)
        return self.fc(self.flatten(self.gap(x)))


def conv1d_conv3d() -> tuple[nn.Module, Shape]:
    return _seeded(Conv1dConv3d), (3, 16, 16)


def no_conv() -> tuple[nn.Module, Shape]:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(64, 32)),
                    ("relu", nn.ReLU()),
                    ("fc2", nn.Linear(32, 10)),
                ]
            )
        )

    return _seeded(build), (1, 8, 8)


def nan_weights() -> tuple[nn.Module, Shape]:
    model, shape = sequential()
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    return model, shape


class NeverRuns(nn.Module):
    """Modules that never run in the forward pass, as in torchvision's EfficientNet (the
    ``stochastic_depth`` of a block without a residual) and ShuffleNetV2 (the empty
    ``branch1`` of a stride-1 block): one defined before the head, one after it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.skipped = nn.Identity()
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)
        self.unused = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.gap(self.relu(self.conv1(x)))))


def never_runs() -> tuple[nn.Module, Shape]:
    return _seeded(NeverRuns), (3, 32, 32)


CASES: dict[str, Callable[[], tuple[nn.Module, Shape]]] = {
    "sequential": sequential,
    "residual": residual,
    "branching": branching,
    "depthwise_grouped": depthwise_grouped,
    "dilated_strided": dilated_strided,
    "bias_free": bias_free,
    "grayscale": grayscale,
    "non_square": non_square,
    "nested": nested,
    "called_twice": called_twice,
    "conv1d_conv3d": conv1d_conv3d,
    "no_conv": no_conv,
    "nan_weights": nan_weights,
    "never_runs": never_runs,
}
