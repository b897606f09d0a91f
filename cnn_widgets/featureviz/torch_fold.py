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
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FoldedCopy", "folded_copy"]

FOLD_CHECK_TOLERANCE = 1e-3
"""Largest difference, relative to the largest magnitude of each target's output, between the
folded copy and the model on a random image. Folding only reorders float sums (measured on
EfficientNet-Lite0: 2e-6 relative); a wrong fold (a conv whose output is also used elsewhere)
gives differences of order 1."""


class FoldedCopy:
    """The copy, and its module for each of the original's modules that a run hooks."""

    def __init__(self, model: nn.Module, names: dict[int, str], folded: int) -> None:
        self.model = model
        self._names = names
        self.folded = folded

    def module(self, original: nn.Module) -> nn.Module:
        return self.model.get_submodule(self._names[id(original)])


def _pairs(model: nn.Module, run: Callable[[nn.Module], Any]) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` for each BatchNorm fed directly by a conv's output."""
    names = {id(m): n for n, m in model.named_modules()}
    outputs: dict[int, tuple[torch.Tensor, str]] = {}
    pairs: list[tuple[str, str]] = []

    def after_conv(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs[id(output)] = (output, names[id(module)])  # the tensor kept: ids stay unique

    def before_norm(module: nn.Module, args: tuple[Any, ...]) -> None:
        found = outputs.get(id(args[0])) if args else None
        if found is not None and found[0] is args[0]:
            pairs.append((found[1], names[id(module)]))

    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):  # subclasses too: the check below catches any
                # whose forward is not the plain convolution of weight and bias
                handles.append(module.register_forward_hook(after_conv))
            elif isinstance(module, nn.BatchNorm2d) and _foldable_norm(module):
                handles.append(module.register_forward_pre_hook(before_norm))
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    # A module called twice (shared) is folded at most once, and only if always in one pair.
    convs = [c for c, _ in pairs]
    norms = [b for _, b in pairs]
    return sorted({(c, b) for c, b in pairs if convs.count(c) == 1 and norms.count(b) == 1})


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
) -> FoldedCopy | None:
    """A copy of ``model`` (already in eval mode, parameters frozen) with its BatchNorms
    folded, or None when nothing folds or the copy would compute other targets.

    ``run(model, targets)`` runs a forward pass of ``model`` on one fixed random image and
    returns the outputs of ``targets`` (modules of that model).
    """
    names = {id(m): n for n, m in model.named_modules()}
    if any(id(t) not in names for t in targets):
        return None
    try:
        clone = copy.deepcopy(model)
        target_names = {names[id(t)] for t in targets}
        pairs = [
            (c, b)
            for c, b in _pairs(clone, lambda m: run(m, [m.get_submodule(n) for n in target_names]))
            if c not in target_names
        ]
        if not pairs:
            return None
        for conv_name, norm_name in pairs:
            _fold(clone.get_submodule(conv_name), clone.get_submodule(norm_name))
            parent, _, leaf = norm_name.rpartition(".")
            setattr(clone.get_submodule(parent), leaf, nn.Identity())
        result = FoldedCopy(clone, names, len(pairs))
        expected = run(model, targets)
        actual = run(clone, [result.module(t) for t in targets])
    except Exception:  # a model that cannot be copied or hooked this way: run it as it is
        return None
    for want, got in zip(expected, actual, strict=True):
        if want.shape != got.shape:
            return None
        scale = float(want.abs().max()) or 1.0
        if float((want - got).abs().max()) > FOLD_CHECK_TOLERANCE * scale:
            return None
    return result
