"""A private copy of a torch model with each eval-mode BatchNorm folded into the conv before it.

In eval mode a ``BatchNorm2d`` is a per-channel affine map, ``y = a * x + b``; after a
``Conv2d`` it folds into the conv's weights and bias (``W' = a W``, ``bias' = a bias + b``)
and the BatchNorm becomes an identity. In a feature-visualization step it is a pass over every
activation forward and one backward (on EfficientNet-Lite0 about a fifth of the step), which
folding removes. The user's model is never changed: the folding happens on a deep copy that
lives for one run.

A pair is folded when, in one forward pass, the BatchNorm's input is the very tensor the conv
returned, and the conv is not itself a target (its output would change). Whether the copy
computes the same targets as the model is then checked on a random image; any difference,
or any error, keeps the model as it is.

The copy also runs each plain 1x1 convolution (stride 1, no padding, one group) as a matrix
product over the channels-last activations (:class:`PointwiseConv`), and gives each
``padding="same"`` convolution its padding as numbers. With one thread and a batch under 16,
torch sends a 1x1 convolution to its reference kernel, which converts channels-last input to
the default layout and back, forward and backward (on EfficientNet-Lite0 the 1x1 convs and
their copies were about a quarter of a step); the matrix product reads the channels-last
memory as it is. A strided depthwise convolution that pads "same" the TensorFlow way (a
``Conv2d`` subclass whose ``padding`` reads ``"same"`` at a stride torch's own "same" does not
allow, such as the zoo's EfficientNet ``Conv2dSame``) pads one pixel more after than before,
which its forward does with ``F.pad``: a copy of every activation, forward and backward
(:class:`SamePaddedConv`). The same check covers these rewrites.

Last, a ``ReLU`` / ``ReLU6`` module whose input is the very tensor a (rewritten or plain)
convolution returned is fused into it (:class:`ActivatedConv`): on CPU the forward is one
oneDNN primitive with the clamp as its post-op, which writes the activation once instead of
writing the convolution's output and reading it again for the clamp (on EfficientNet-Lite0 at
128 px, 8 images, one thread: the 1x1 expansion to 96 channels at 64x64 took 2.3 ms with its
clamp, 0.85 fused). The backward masks the gradient with the clamp's *output* (``0 < y <
upper`` exactly where ``0 < x < upper``), so the pre-activation is not kept at all. If the
copy with the fusions computes other targets (the conv's output also used elsewhere), it is
built again without them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .torch_fused_ops import FUSED_OPS, ConvClamp, LinearClamp

__all__ = ["ActivatedConv", "FoldedCopy", "PointwiseConv", "SamePaddedConv", "folded_copy"]

FOLD_CHECK_TOLERANCE = 1e-3
"""Largest difference, relative to the largest magnitude of each target's output, between the
folded copy and the model on a random image. Folding only reorders float sums (measured on
EfficientNet-Lite0: 2e-6 relative); a wrong fold (a conv whose output is also used elsewhere)
gives differences of order 1."""


class FoldedCopy:
    """The copy, and its module for each of the original's modules that a run hooks."""

    def __init__(
        self,
        model: nn.Module,
        names: dict[int, str],
        folded: int,
        rewritten: int = 0,
        fused: int = 0,
    ) -> None:
        self.model = model
        self._names = names
        self.folded = folded
        self.rewritten = rewritten  # convolutions run as a matrix product or with fixed pads
        self.fused = fused  # activations fused into the convolution before them

    def module(self, original: nn.Module) -> nn.Module:
        return self.model.get_submodule(self._names[id(original)])


def _pairs(
    model: nn.Module,
    run: Callable[[nn.Module], Any],
    first: Callable[[str, nn.Module], bool],
    second: Callable[[str, nn.Module], bool],
) -> list[tuple[str, str]]:
    """``(first name, second name)`` for each module accepted by ``second`` whose input, in
    one forward pass, is the very tensor a module accepted by ``first`` returned; each of the
    two called once in that pass (a shared module is never paired)."""
    names = {id(m): n for n, m in model.named_modules()}
    outputs: dict[int, tuple[torch.Tensor, str]] = {}
    calls: list[tuple[str, str]] = []  # ("" when the input came from elsewhere, second)

    def after_first(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs[id(output)] = (output, names[id(module)])  # the tensor kept: ids stay unique
        calls.append((names[id(module)], ""))

    def before_second(module: nn.Module, args: tuple[Any, ...]) -> None:
        found = outputs.get(id(args[0])) if args else None
        fed = found is not None and found[0] is args[0]
        calls.append((found[1] if fed else "", names[id(module)]))

    handles = []
    try:
        for name, module in model.named_modules():
            if first(name, module):
                handles.append(module.register_forward_hook(after_first))
            elif second(name, module):
                handles.append(module.register_forward_pre_hook(before_second))
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    firsts = [f for f, s in calls if f and not s]
    seconds = [s for _, s in calls if s]
    return sorted(
        {(f, s) for f, s in calls if f and s and firsts.count(f) == 1 and seconds.count(s) == 1}
    )


class PointwiseConv(nn.Module):
    """A 1x1 convolution (stride 1, no padding, one group) as ``x @ W.T + b`` over the
    channels: on a channels-last tensor the permutes are free and the product reads the
    memory as it lies; any other layout goes through ``F.conv2d``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1), requires_grad=False)
        bias = None if conv.bias is None else conv.bias.detach()
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
        weight = self.weight[:, :, None, None]
        return F.conv2d(x, weight, self.bias)


class SamePaddedConv(nn.Module):
    """A strided convolution with TensorFlow's "same" padding, without ``F.pad``.

    TensorFlow pads ``total = (ceil(n / s) - 1) * s + k - n`` pixels, ``total // 2`` before
    and the rest after. Where the two differ by one, the kernel gets a zero row (column) in
    front and the convolution pads the larger amount on both sides: the zero row meets the
    extra pixel in front, so every output is the same sum (exactly: the added terms are
    zeros). For a depthwise convolution this is about twice as fast as padding a copy of the
    input (measured at 128 px on EfficientNet-Lite0's strided depthwise convs, one thread,
    forward and input gradient); for a dense one (the stem) the larger kernel costs more than
    the copy, so only depthwise convolutions are rewritten.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        bias = None if conv.bias is None else conv.bias.detach()
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.groups = conv.groups
        self._padded: dict[tuple[int, int], torch.Tensor] = {}  # weights with a zero front

    def arguments(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The (zero-fronted) weight and the symmetric padding for an input like ``x``."""
        pads, fronts = [], []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append(total - total // 2)
            fronts.append(total % 2)
        key = (fronts[0], fronts[1])
        weight = self._padded.get(key)
        if weight is None:
            weight = F.pad(self.weight.detach(), (fronts[1], 0, fronts[0], 0))
            self._padded[key] = weight
        return weight, (pads[0], pads[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, pads = self.arguments(x)
        return F.conv2d(x, weight, self.bias, self.stride, pads, 1, self.groups)


def _tf_same_strided_depthwise(module: nn.Module) -> bool:
    """A Conv2d subclass padding "same" at a stride > 1 (TensorFlow's convention; torch's
    own "same" refuses strides), depthwise, not dilated, without hooks."""
    return (
        isinstance(module, nn.Conv2d)
        and type(module) is not nn.Conv2d
        and isinstance(module.padding, str)
        and module.padding == "same"
        and module.stride != (1, 1)
        and module.dilation == (1, 1)
        and module.groups == module.in_channels
        and module.padding_mode == "zeros"
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


def _plain_conv(module: nn.Module) -> bool:
    """An ``nn.Conv2d`` itself (not a subclass with its own forward), without hooks."""
    return (
        type(module) is nn.Conv2d
        and module.padding_mode == "zeros"
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


def _rewrite_convs(model: nn.Module, keep: set[str]) -> int:
    """Replace the plain 1x1 convs of ``model`` (except ``keep``) by :class:`PointwiseConv`,
    give ``padding="same"`` convs numeric padding where it is symmetric, and run strided
    TensorFlow-"same" depthwise convs as :class:`SamePaddedConv`; the count."""
    count = 0
    for name, module in list(model.named_modules()):
        if name in keep:
            continue
        if _tf_same_strided_depthwise(module):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, SamePaddedConv(module))
            count += 1
            continue
        if not _plain_conv(module):
            continue
        if (
            module.kernel_size == (1, 1)
            and module.stride == (1, 1)
            and module.groups == 1
            and module.padding in ((0, 0), "valid")
        ):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, PointwiseConv(module))
            count += 1
        elif module.padding == "same":
            totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
            if all(t % 2 == 0 for t in totals):  # odd kernels: torch pads both sides alike
                module.padding = tuple(t // 2 for t in totals)
                count += 1
    return count


class ActivatedConv(nn.Module):
    """A convolution of the copy (:class:`PointwiseConv`, :class:`SamePaddedConv` or a plain
    ``nn.Conv2d`` with numeric padding) with the ``ReLU`` (``upper`` None) or ``ReLU6``
    (``upper`` 6) after it, fused on CPU float32 input (:class:`ConvClamp`,
    :class:`LinearClamp`); elsewhere the two ops in turn.

    ``redirect``, while set (by the feature-visualization session, during its dead-ReLU
    warm-up), is called as ``redirect(pre_activation, upper)`` instead of the clamp."""

    def __init__(self, conv: nn.Module, upper: float | None) -> None:
        super().__init__()
        self.conv = conv
        self.upper = upper
        self.redirect: Callable[[torch.Tensor, float | None], torch.Tensor] | None = None

    def _fusable(self, x: torch.Tensor) -> bool:
        weight = self.conv.weight
        return (
            FUSED_OPS
            and self.redirect is None
            and x.device.type == "cpu"
            and x.dtype == torch.float32 == weight.dtype
            and x.dim() == 4
            and not weight.requires_grad
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if self._fusable(x):
            if isinstance(conv, PointwiseConv):
                if x.is_contiguous(memory_format=torch.channels_last):
                    y = LinearClamp.apply(x.permute(0, 2, 3, 1), conv.weight, conv.bias, self.upper)
                    return y.permute(0, 3, 1, 2)
                weight, padding = conv.weight[:, :, None, None], (0, 0)
                stride, dilation, groups = (1, 1), (1, 1), 1
            elif isinstance(conv, SamePaddedConv):
                weight, padding = conv.arguments(x)
                stride, dilation, groups = conv.stride, (1, 1), conv.groups
            else:
                weight, padding = conv.weight, tuple(conv.padding)
                stride, dilation, groups = conv.stride, conv.dilation, conv.groups
            return ConvClamp.apply(
                x, weight, conv.bias, tuple(stride), padding, tuple(dilation), groups, self.upper
            )
        pre = conv(x)
        if self.redirect is not None:
            return self.redirect(pre, self.upper)
        return F.relu(pre) if self.upper is None else pre.clamp(0.0, self.upper)


def _fusable_conv(module: nn.Module) -> bool:
    if isinstance(module, (PointwiseConv, SamePaddedConv)):
        return not module._forward_hooks and not module._forward_pre_hooks
    return (
        _plain_conv(module) and isinstance(module.padding, tuple) and len(module.kernel_size) == 2
    )


_CLAMP_UPPER: dict[type, float | None] = {nn.ReLU: None, nn.ReLU6: 6.0}
"""The activation modules that fuse, and the upper end of their clamp."""


def _plain_activation(module: nn.Module) -> bool:
    """An ``nn.ReLU`` or ``nn.ReLU6`` itself (not a subclass), without hooks."""
    return (
        type(module) in _CLAMP_UPPER and not module._forward_hooks and not module._forward_pre_hooks
    )


def _fuse_activations(model: nn.Module, keep: set[str], run: Callable[[nn.Module], Any]) -> int:
    """Fuse each plain ``ReLU`` / ``ReLU6`` module of ``model`` (not in ``keep``) whose input
    is the very tensor a fusable convolution (not in ``keep``) returned into that
    convolution (see :func:`_pairs`). The count."""
    pairs = _pairs(
        model,
        run,
        lambda name, m: name not in keep and _fusable_conv(m),
        lambda name, m: name not in keep and _plain_activation(m),
    )
    for conv_name, act_name in pairs:
        upper = _CLAMP_UPPER[type(model.get_submodule(act_name))]
        parent, _, leaf = conv_name.rpartition(".")
        conv = model.get_submodule(conv_name)
        setattr(model.get_submodule(parent), leaf, ActivatedConv(conv, upper))
        parent, _, leaf = act_name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, nn.Identity())
    return len(pairs)


def _foldable_norm(norm: nn.BatchNorm2d) -> bool:
    return (
        not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
        and type(norm).forward is nn.BatchNorm2d.forward
    )


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        scale = norm.running_var.add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def folded_copy(
    model: nn.Module,
    targets: Sequence[nn.Module],
    run: Callable[[nn.Module, Sequence[nn.Module]], list[torch.Tensor]],
    rewrite_convs: bool = True,
    fuse_activations: bool = True,
) -> FoldedCopy | None:
    """A copy of ``model`` (already in eval mode, parameters frozen) with its BatchNorms
    folded, (``rewrite_convs``) its convs rewritten and (``fuse_activations``) its ReLUs
    fused into the convs before them, or None when nothing changes or the copy would compute
    other targets. A copy whose fusions change the targets is built again without them.

    ``run(model, targets)`` runs a forward pass of ``model`` on one fixed random image and
    returns the outputs of ``targets`` (modules of that model).
    """
    names = {id(m): n for n, m in model.named_modules()}
    if any(id(t) not in names for t in targets):
        return None
    result, fused = _checked_copy(model, targets, run, names, rewrite_convs, fuse_activations)
    if result is None and fused:
        result, _ = _checked_copy(model, targets, run, names, rewrite_convs, False)
    return result


def _checked_copy(
    model: nn.Module,
    targets: Sequence[nn.Module],
    run: Callable[[nn.Module, Sequence[nn.Module]], list[torch.Tensor]],
    names: dict[int, str],
    rewrite_convs: bool,
    fuse: bool,
) -> tuple[FoldedCopy | None, int]:
    """The copy of :func:`folded_copy` if it computes the same targets, and the number of
    activations fused into it."""
    fused = 0
    try:
        clone = copy.deepcopy(model)
        target_names = {names[id(t)] for t in targets}

        def run_clone(m: nn.Module) -> Any:
            return run(m, [m.get_submodule(n) for n in target_names])

        pairs = _pairs(
            clone,
            run_clone,
            # subclasses too: the check below catches any whose forward is not the plain
            # convolution of weight and bias
            lambda name, m: isinstance(m, nn.Conv2d) and name not in target_names,
            lambda name, m: isinstance(m, nn.BatchNorm2d) and _foldable_norm(m),
        )
        for conv_name, norm_name in pairs:
            _fold(clone.get_submodule(conv_name), clone.get_submodule(norm_name))
            parent, _, leaf = norm_name.rpartition(".")
            setattr(clone.get_submodule(parent), leaf, nn.Identity())
        rewritten = _rewrite_convs(clone, target_names) if rewrite_convs else 0
        if fuse and FUSED_OPS:
            fused = _fuse_activations(clone, target_names, run_clone)
        if not pairs and not rewritten and not fused:
            return None, 0
        result = FoldedCopy(clone, names, len(pairs), rewritten, fused)
        expected = run(model, targets)
        actual = run(clone, [result.module(t) for t in targets])
    except Exception:  # a model that cannot be copied or hooked this way: run it as it is
        return None, fused
    for want, got in zip(expected, actual, strict=True):
        if want.shape != got.shape:
            return None, fused
        scale = float(want.abs().max()) or 1.0
        if float((want - got).abs().max()) > FOLD_CHECK_TOLERANCE * scale:
            return None, fused
    return result, fused
