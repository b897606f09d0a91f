"""Snapshots of a torch model: everything "never harm the model" promises to keep, bit for
bit, so that tests (and a user) can prove a view, an optimization or an analysis changed
nothing: weights and buffers, each module's train/eval flag, ``requires_grad`` and ``.grad``
of each parameter, and every hook registry (the module's own and torch's global ones)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.modules.module as module_mod
from torch import nn

__all__ = ["TorchSnapshot", "take_snapshot"]

# Per-module hook registries; read with getattr because their set changes between releases.
_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_TENSOR_HOOK_DICTS = ("_backward_hooks", "_post_accumulate_grad_hooks")


class _TensorCopy(NamedTuple):
    dtype: str
    shape: tuple[int, ...]
    device: str
    data: Any  # np.ndarray of raw bytes, or a cloned tensor for layouts without raw bytes


def copy_tensor(tensor: torch.Tensor) -> _TensorCopy:
    detached = tensor.detach()
    try:
        # Raw bytes compare bit-exactly: NaN == NaN, -0.0 != 0.0, and any dtype (bfloat16 too).
        data: Any = detached.contiguous().reshape(-1).view(torch.uint8).cpu().numpy().copy()
    except (RuntimeError, TypeError):  # sparse, quantized, meta: fall back to a clone
        data = detached.clone()
    return _TensorCopy(str(tensor.dtype), tuple(tensor.shape), str(tensor.device), data)


def same_copy(a: _TensorCopy | None, b: _TensorCopy | None) -> bool:
    if a is None or b is None:
        return a is b
    if a[:3] != b[:3] or type(a.data) is not type(b.data):
        return False
    if isinstance(a.data, np.ndarray):
        return bool(np.array_equal(a.data, b.data))
    return bool(torch.equal(a.data, b.data))


def _hook_keys(registry: Any) -> tuple[tuple[Any, int], ...]:
    if not registry:
        return ()
    return tuple((key, id(value)) for key, value in registry.items())


@dataclass(frozen=True, eq=False)
class TorchSnapshot:
    """What :meth:`TorchAdapter.snapshot` captured; compare with :meth:`differences`."""

    tensors: dict[str, _TensorCopy]
    identities: dict[str, int]
    grads: dict[str, _TensorCopy | None]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    hooks: dict[str, tuple[tuple[Any, int], ...]]
    global_hooks: dict[str, tuple[tuple[Any, int], ...]]

    def differences(self, other: TorchSnapshot) -> list[str]:
        """Human-readable list of what differs between two snapshots (empty: same state)."""
        found: list[str] = []
        for spec in fields(self):
            mine, theirs = getattr(self, spec.name), getattr(other, spec.name)
            for key in sorted(set(mine) | set(theirs)):
                if key not in mine or key not in theirs:
                    found.append(f"{spec.name}: {key} only in one snapshot")
                    continue
                a, b = mine[key], theirs[key]
                same = same_copy(a, b) if spec.name in ("tensors", "grads") else a == b
                if not same:
                    found.append(f"{spec.name}: {key} changed")
        return found


def take_snapshot(model: nn.Module) -> TorchSnapshot:
    """Copy of everything :meth:`TorchAdapter.protect` promises to keep, bit for bit.

    Weights and buffers (bytes, dtype, shape, device and object identity), each module's
    ``training`` flag, each parameter's ``requires_grad`` and ``.grad``, the hook
    registries of every module and parameter, and torch's global module hooks.
    """
    tensors: dict[str, _TensorCopy] = {}
    identities: dict[str, int] = {}
    grads: dict[str, _TensorCopy | None] = {}
    requires_grad: dict[str, bool] = {}
    hooks: dict[str, tuple[tuple[Any, int], ...]] = {}
    for name, param in model.named_parameters():
        tensors[f"parameter {name}"] = copy_tensor(param)
        identities[f"parameter {name}"] = id(param)
        grads[name] = None if param.grad is None else copy_tensor(param.grad)
        requires_grad[name] = param.requires_grad
        for attr in _TENSOR_HOOK_DICTS:
            hooks[f"parameter {name} {attr}"] = _hook_keys(getattr(param, attr, None))
    for name, buffer in model.named_buffers():
        tensors[f"buffer {name}"] = copy_tensor(buffer)
        identities[f"buffer {name}"] = id(buffer)
    training: dict[str, bool] = {}
    for name, module in model.named_modules():
        training[name] = module.training
        for attr in _MODULE_HOOK_DICTS:
            hooks[f"module {name!r} {attr}"] = _hook_keys(getattr(module, attr, None))
    global_hooks = {
        attr: _hook_keys(value)
        for attr, value in vars(module_mod).items()
        if attr.startswith("_global_") and isinstance(value, dict)
    }
    return TorchSnapshot(
        tensors=tensors,
        identities=identities,
        grads=grads,
        requires_grad=requires_grad,
        training=training,
        hooks=hooks,
        global_hooks=global_hooks,
    )

