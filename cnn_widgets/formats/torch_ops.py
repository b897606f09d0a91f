"""The torch modules a built graph is made of: one leaf module per Caffe layer or ONNX node.

Each is a leaf (no child modules), computes out of place (so an in-place Caffe layer's own
output is what its hooks see) and carries ``source_type``, the type its file gives it, which
the torch backend shows as the layer type. Convolutions and fully connected layers derive
from ``nn.Conv2d`` / ``nn.Linear``, so every feature that knows those (filters, kernel x
image, health) works on them unchanged. Modules never use batch statistics or dropout: an
imported model computes what its file describes at inference, whatever ``train()`` says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Pads = tuple[int, int, int, int]
"""(top, left, bottom, right)."""


def _param(value: torch.Tensor, trainable: bool = True) -> nn.Parameter:
    return nn.Parameter(value, requires_grad=trainable)


def _broadcast(weight: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    """``weight`` shaped to multiply an ``ndim`` tensor from ``axis`` on (Caffe's Scale,
    Bias and PReLU), or as is (numpy broadcasting, ONNX) when ``axis`` is None."""
    if axis is None:
        return weight
    axis = axis % ndim
    return weight.reshape((1,) * axis + tuple(weight.shape) + (1,) * (ndim - axis - weight.dim()))


class Conv(nn.Conv2d):
    """A ``Conv2d`` whose padding may be uneven (ONNX ``pads``, ``auto_pad``).

    Even padding is ``nn.Conv2d``'s own. ``auto_pad="SAME_UPPER"`` reads ``padding="same"``
    and pads like TensorFlow (the extra pixel at the bottom/right), as the bundled
    EfficientNet does. Any other uneven padding is ``asymmetric_padding`` (top, left, bottom,
    right), applied before a padding-free convolution.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        pads: Pads | str,
    ) -> None:
        out_channels, in_per_group, kh, kw = weight.shape
        even = not isinstance(pads, str) and pads[:2] == pads[2:]
        # Built on the meta device: the real weights replace the parameters at once, so a
        # random initialization of millions of values would be wasted work.
        super().__init__(
            in_per_group * groups, out_channels, (kh, kw), stride,
            pads[:2] if even else 0, dilation, groups, bias is not None, device="meta",
        )  # fmt: skip
        self.weight = _param(weight)
        self.bias = None if bias is None else _param(bias)
        self.asymmetric_padding: Pads | None = None
        self._same_upper = pads == "SAME_UPPER"
        if self._same_upper:
            self.padding = "same"  # type: ignore[assignment]  # computed in forward
        elif pads == "SAME_LOWER":
            raise ValueError("auto_pad SAME_LOWER needs the input size; pass explicit pads")
        elif not even:
            self.asymmetric_padding = pads  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.asymmetric_padding
        if self._same_upper:
            pads = _same_pads(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        if pads is None:
            return super().forward(x)
        top, left, bottom, right = pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_pads(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> Pads:
    totals = [
        max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True)
    ]
    return (totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2)


class Linear(nn.Linear):
    """``nn.Linear`` after flattening from ``axis`` (Caffe InnerProduct, ONNX Gemm); with
    ``axis=None`` it acts on the last dimension (ONNX MatMul by a constant matrix).
    ``alpha``/``beta`` are Gemm's factors on the product and the bias."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        axis: int | None = 1,
        alpha: float = 1.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias is not None, device="meta")
        self.weight = _param(weight)
        self.bias = None if bias is None else _param(bias)
        self.axis, self.alpha, self.beta = axis, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is not None:
            x = x.flatten(self.axis)
        if self.alpha == 1.0 and self.beta == 1.0:
            return F.linear(x, self.weight, self.bias)
        out = F.linear(x, self.weight) * self.alpha
        return out if self.bias is None else out + self.beta * self.bias


class Pool(nn.Module):
    """Max or average pooling with Caffe's and ONNX's rules: ceil or floor rounding of the
    output size (a window that would start in the bottom/right padding is dropped), uneven
    padding, and average divisors with or without the padding counted."""

    def __init__(
        self,
        mode: str,
        kernel: tuple[int, int] | None,
        stride: tuple[int, int] = (1, 1),
        pads: Pads = (0, 0, 0, 0),
        ceil: bool = False,
        count_include_pad: bool = True,
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.mode, self.kernel, self.stride, self.pads = mode, kernel, stride, pads
        self.ceil, self.count_include_pad, self.dilation = ceil, count_include_pad, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is None:  # global pooling
            pool = F.adaptive_max_pool2d if self.mode == "max" else F.adaptive_avg_pool2d
            return pool(x, 1)
        top, left, bottom, right = self.pads
        even = (top, left) == (bottom, right)
        if even and all(2 * p <= k for p, k in zip((top, left), self.kernel, strict=True)):
            # torch's own kernels follow these rules for even padding up to half the window.
            if self.mode == "max":
                return F.max_pool2d(
                    x, self.kernel, self.stride, (top, left), self.dilation, self.ceil
                )
            if self.dilation == (1, 1):
                return F.avg_pool2d(
                    x, self.kernel, self.stride, (top, left), self.ceil, self.count_include_pad
                )
        return self._padded(x)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """The general case: pad explicitly (plus what a ceil-rounded last window needs),
        pool without padding, and divide averages by the count of the pixels that count."""
        top, left, bottom, right = self.pads
        sizes = [
            _pool_size(n, k, s, lo, hi, self.ceil, d)
            for n, k, s, lo, hi, d in zip(
                x.shape[-2:], self.kernel, self.stride, (top, left), (bottom, right),
                self.dilation, strict=True,
            )
        ]  # fmt: skip
        extra = [
            max(0, (o - 1) * s + (k - 1) * d + 1 - (n + lo + hi))
            for o, n, k, s, d, lo, hi in zip(
                sizes, x.shape[-2:], self.kernel, self.stride, self.dilation,
                (top, left), (bottom, right), strict=True,
            )
        ]  # fmt: skip
        pad = (left, right, top, bottom)
        beyond = (0, extra[1], 0, extra[0])
        if self.mode == "max":
            padded = F.pad(F.pad(x, pad, value=-math.inf), beyond, value=-math.inf)
            out = F.max_pool2d(padded, self.kernel, self.stride, 0, self.dilation)
            return out[..., : sizes[0], : sizes[1]]
        if self.dilation != (1, 1):
            raise ValueError("average pooling with dilations is not supported")
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        counted = F.pad(F.pad(ones, pad, value=float(self.count_include_pad)), beyond)
        sums = F.avg_pool2d(F.pad(F.pad(x, pad), beyond), self.kernel, self.stride,
                            divisor_override=1)  # fmt: skip
        counts = F.avg_pool2d(counted, self.kernel, self.stride, divisor_override=1)
        return (sums / counts.clamp_min(1))[..., : sizes[0], : sizes[1]]


def _pool_size(n: int, k: int, s: int, lo: int, hi: int, ceil: bool, d: int = 1) -> int:
    span = n + lo + hi - ((k - 1) * d + 1)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + lo:  # the last window would start in the padding
        out -= 1
    return out


class BatchNorm(nn.Module):
    """Inference batch normalization with stored statistics (and, for ONNX, a scale and a
    shift; Caffe keeps those in a separate Scale layer). The statistics are parameters that
    never train, so the layer table lists them as Caffe's ``net.params`` does."""

    def __init__(
        self,
        mean: torch.Tensor,
        variance: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> None:
        super().__init__()
        self.mean = _param(mean, trainable=False)
        self.variance = _param(variance, trainable=False)
        self.weight = None if weight is None else _param(weight)
        self.bias = None if bias is None else _param(bias)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.mean, self.variance, self.weight, self.bias, training=False, eps=self.eps
        )


class Affine(nn.Module):
    """``x * weight + bias`` with the parameters laid along ``axis`` (Caffe Scale and Bias);
    without a weight parameter and with two inputs, the second input is the factor."""

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None, axis: int) -> None:
        super().__init__()
        self.weight = None if weight is None else _param(weight)
        self.bias = None if bias is None else _param(bias)
        self.axis = axis

    def forward(self, x: torch.Tensor, factor: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.weight if factor is None else factor
        out = x if weight is None else x * _broadcast(weight, self.axis, x.dim())
        return out if self.bias is None else out + _broadcast(self.bias, self.axis, x.dim())


class PReLU(nn.Module):
    """A ReLU with learned negative slopes: along ``axis`` (Caffe: one per channel, or one
    for all) or broadcast as stored (ONNX, ``axis=None``)."""

    def __init__(self, weight: torch.Tensor, axis: int | None) -> None:
        super().__init__()
        self.weight = _param(weight)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope = self.weight if self.weight.numel() == 1 else _broadcast(
            self.weight, self.axis, x.dim()
        )
        return torch.where(x >= 0, x, x * slope)


_ACTIVATIONS = {
    "relu": lambda x, a: F.relu(x) if not a.get("slope") else F.leaky_relu(x, a["slope"]),
    "sigmoid": lambda x, a: torch.sigmoid(x),
    "tanh": lambda x, a: torch.tanh(x),
    "hardsigmoid": lambda x, a: torch.clamp(x * a["alpha"] + a["beta"], 0.0, 1.0),
    "hardswish": lambda x, a: F.hardswish(x),
    "clip": lambda x, a: torch.clamp(x, a.get("min"), a.get("max")),
    "elu": lambda x, a: F.elu(x, a.get("alpha", 1.0)),
}


class Activation(nn.Module):
    """An element-wise function without parameters: ``kind`` is a key of the table above,
    ``settings`` its constants (a leaky ReLU's slope, Clip's bounds, ...)."""

    def __init__(self, kind: str, **settings: float | None) -> None:
        super().__init__()
        self.kind, self.settings = kind, settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.kind](x, self.settings)


class LRN(nn.Module):
    """Local response normalization across channels, as Caffe and ONNX define it:
    ``x / (k + alpha / size * sum of x² over the window) ** beta``, the window reaching
    ``(size - 1) // 2`` channels back and the rest forward."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        back = (self.size - 1) // 2
        squares = F.pad((x * x).unsqueeze(1), (0, 0, 0, 0, back, self.size - 1 - back))
        sums = F.avg_pool3d(squares, (self.size, 1, 1), stride=1, divisor_override=1).squeeze(1)
        return x / (self.k + self.alpha / self.size * sums).pow(self.beta)


class Eltwise(nn.Module):
    """One element-wise operation over all inputs (numpy broadcasting): ``sum`` (with
    Caffe's per-input ``coeffs``), ``sub``, ``prod``, ``div``, ``max``, ``min``, ``mean``."""

    def __init__(self, mode: str, coeffs: Sequence[float] = ()) -> None:
        super().__init__()
        self.mode, self.coeffs = mode, tuple(coeffs)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.coeffs:
            xs = tuple(x * c for x, c in zip(xs, self.coeffs, strict=True))
        out = xs[0]
        for x in xs[1:]:
            if self.mode in ("sum", "mean"):
                out = out + x
            elif self.mode == "sub":
                out = out - x
            elif self.mode == "prod":
                out = out * x
            elif self.mode == "div":
                out = out / x
            elif self.mode == "max":
                out = torch.maximum(out, x)
            else:
                out = torch.minimum(out, x)
        return out / len(xs) if self.mode == "mean" else out


class Shaping(nn.Module):
    """Operations that only move values: concat, split (Caffe: the same tensor under several
    names), slice, flatten, reshape, squeeze, unsqueeze, transpose, pad, identity, matmul
    of two computed tensors, softmax. ``op`` names one, ``settings`` its constants."""

    def __init__(self, op: str, **settings: object) -> None:
        super().__init__()
        self.op, self.settings = op, settings

    def forward(self, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        s = self.settings
        if self.op == "fill":  # no input: a constant (folded when the module is built)
            dtype = getattr(torch, str(s["dtype"]))
            return torch.full(tuple(s["shape"]), s["value"], dtype=dtype)  # type: ignore[arg-type]
        x = xs[0]
        if self.op == "concat":
            return torch.cat(xs, dim=s["axis"])  # type: ignore[call-overload]
        if self.op == "split":
            return tuple(x for _ in range(s["count"]))  # type: ignore[call-overload]
        if self.op == "slice":
            return tuple(torch.tensor_split(x, s["points"], dim=s["axis"]))  # type: ignore[arg-type]
        if self.op == "flatten":
            if s.get("matrix"):  # ONNX: everything before axis becomes one dimension
                return x.reshape(math.prod(x.shape[: s["start"]]), -1)  # type: ignore[misc]
            return x.flatten(s["start"], s["end"])  # type: ignore[arg-type]
        if self.op == "reshape":
            return x.reshape(_target_shape(x.shape, s["shape"], bool(s.get("allowzero"))))  # type: ignore[arg-type]
        if self.op == "squeeze":
            axes = s["axes"]
            return x.squeeze() if axes is None else x.squeeze(tuple(axes))  # type: ignore[arg-type]
        if self.op == "unsqueeze":
            for axis in sorted(a % (x.dim() + len(s["axes"])) for a in s["axes"]):  # type: ignore[arg-type]
                x = x.unsqueeze(axis)
            return x
        if self.op == "transpose":
            return x.permute(*s["perm"])  # type: ignore[misc]
        if self.op == "pad":
            return F.pad(x, s["pads"], mode=s["mode"], value=s["value"])  # type: ignore[arg-type]
        if self.op == "matmul":
            return torch.matmul(x, xs[1])
        if self.op == "softmax":
            if s.get("legacy"):  # ONNX before opset 13: softmax over everything from axis on
                return torch.softmax(x.flatten(s["axis"]), -1).reshape(x.shape)  # type: ignore[arg-type]
            return torch.softmax(x, s["axis"])  # type: ignore[arg-type]
        return x  # identity


def _target_shape(shape: torch.Size, target: Sequence[int], allowzero: bool) -> list[int]:
    """ONNX Reshape: 0 copies the input's dimension (unless ``allowzero``), -1 is inferred."""
    return [shape[i] if d == 0 and not allowzero else int(d) for i, d in enumerate(target)]
