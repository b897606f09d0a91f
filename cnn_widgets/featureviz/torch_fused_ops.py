"""Convolutions and matrix products with a ReLU / ReLU6 fused in, as oneDNN primitives with
the clamp as post-op (``torch.ops.mkldnn._convolution_pointwise`` / ``_linear_pointwise``,
the ops Inductor uses for the same fusion), differentiable for their input.

The forward writes the activation once, instead of writing the product and reading it again
for the clamp. The backward masks the incoming gradient with the clamp's *output* ``y``:
``y <= 0`` exactly where the pre-activation is ``<= 0`` and ``y >= upper`` exactly where it
is ``>= upper``, so the pre-activation need not be kept. Used by :mod:`.torch_fold`'s
private copy, whose weights are frozen: no gradient for them.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FUSED_OPS", "ConvClamp", "LinearClamp"]


FUSED_OPS = torch.backends.mkldnn.is_available() and all(
    hasattr(torch.ops.mkldnn, op) for op in ("_convolution_pointwise", "_linear_pointwise")
)
"""Whether this torch has oneDNN's fused convolution / matrix product with a post-op (CPU
builds with oneDNN; the ops Inductor uses for the same fusion)."""


def _post_op(upper: float | None) -> tuple[str, list[float]]:
    return ("relu", []) if upper is None else ("hardtanh", [0.0, upper])


def _clamp_backward(grad: torch.Tensor, y: torch.Tensor, upper: float | None) -> torch.Tensor:
    """The clamp's gradient from its output ``y``: ``y <= 0`` exactly where ``x <= 0`` and
    ``y >= upper`` exactly where ``x >= upper``, so this is the same mask as from ``x``."""
    if upper is None:
        return torch.ops.aten.threshold_backward(grad, y, 0.0)
    return torch.ops.aten.hardtanh_backward(grad, y, 0.0, upper)


class ConvClamp(torch.autograd.Function):
    """``clamp(conv2d(x, w, b), 0, upper)`` as one oneDNN primitive; the gradient for ``x``
    only (the copy's weights are frozen)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        upper: float | None,
    ) -> torch.Tensor:
        attr, scalars = _post_op(upper)
        y = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, padding, stride, dilation, groups, attr, scalars, ""
        )
        ctx.save_for_backward(x, weight, y)
        ctx.conf = (stride, padding, dilation, groups, upper)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        stride, padding, dilation, groups, upper = ctx.conf
        grad_x = None
        if ctx.needs_input_grad[0]:
            pre = _clamp_backward(grad, y, upper)
            grad_x = torch.ops.aten.convolution_backward(
                pre,
                x,
                weight,
                None,
                stride,
                padding,
                dilation,
                False,
                [0, 0],
                groups,
                [True, False, False],
            )[0]
        return grad_x, None, None, None, None, None, None, None


class LinearClamp(torch.autograd.Function):
    """``clamp(x @ w.T + b, 0, upper)`` over the last axis as one oneDNN primitive; the
    gradient for ``x`` only."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        upper: float | None,
    ) -> torch.Tensor:
        attr, scalars = _post_op(upper)
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, scalars, "")
        ctx.save_for_backward(weight, y)
        ctx.upper = upper
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, y = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.matmul(_clamp_backward(grad, y, ctx.upper), weight)
        return grad_x, None, None, None
