"""Gradients for the torch backend: :meth:`TorchAdapter.gradients` in one forward and one
backward pass, with forward hooks on the real modules, removed through their handles.

The image goes in as a channels-last tensor (the same values in NHWC memory order): oneDNN's
convolutions and their backward passes take it without converting every layer's input, and
torch's own 1x1 kernel at one thread copies NCHW input to that order and back. On
EfficientNet-Lite0 at 224 px and one thread a forward and backward pass of one image took 91
instead of 104 ms, and 69 instead of 85 ms per image in batches of 8; the gradients were
bit-identical there. A model that cannot take it (``.view()`` on an activation raises on
channels-last memory) is run again in the default layout, and remembered, per model object.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .gradients import Gradients, Target, check_classes, score_vector
from .torch_layers import _to_numpy, first_tensor, is_softmax

if TYPE_CHECKING:
    from .torch import TorchAdapter


class _NoShortPath(Exception):
    """Raised by a hook when the graph cannot start at the first chosen layer."""


class _LayoutFailed(Exception):
    """The forward pass failed on channels-last input (it is tried in the default layout)."""


_DEFAULT_LAYOUT: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Models whose forward pass failed on channels-last input (they get the default layout)."""


def torch_gradients(
    adapter: TorchAdapter,
    batch: np.ndarray,
    names: Sequence[str],
    target: Target,
    backward: bool = True,
    input_grad: bool = True,
    guided: bool = False,
) -> Gradients:
    """See :meth:`Adapter.gradients`; the caller holds :meth:`TorchAdapter.protect`.

    Without the image's gradient (CAM methods) the graph starts at the first chosen layer
    that runs: its output is made a leaf, so nothing before it is recorded. When that cannot
    work (the layer returns a tuple, or a chosen layer or the score does not depend on that
    leaf) the pass runs again with the whole graph from the image."""
    args = (adapter, batch, names, target, backward, input_grad, guided)
    last = batch.ndim == 4 and adapter.model not in _DEFAULT_LAYOUT
    try:
        return _passes(*args, channels_last=last)
    except _LayoutFailed:
        result = _passes(*args, channels_last=False)  # raises the model's error if it fails
        _DEFAULT_LAYOUT[adapter.model] = True  # only the layout failed: remembered
        return result


def _passes(*args: Any, channels_last: bool) -> Gradients:
    backward, input_grad, names = args[4], args[5], args[2]
    if backward and not input_grad and names:
        short = _pass(*args, start=True, channels_last=channels_last)
        if short is not None:
            return short
    result = _pass(*args, start=False, channels_last=channels_last)
    assert result is not None
    return result


def _pass(
    adapter: TorchAdapter,
    batch: np.ndarray,
    names: Sequence[str],
    target: Target,
    backward: bool,
    input_grad: bool,
    guided: bool,
    start: bool,
    channels_last: bool,
) -> Gradients | None:
    """One forward (and backward) pass; with ``start``, the graph begins at the first chosen
    layer and None says that this did not work (the caller then runs the whole graph).
    ``channels_last``: the image in that memory order; a failed forward pass then raises
    :class:`_LayoutFailed`."""
    device, dtype = adapter.placement()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = torch.from_numpy(batch).to(
        device=device, dtype=dtype, memory_format=layout, copy=True
    )
    inputs.requires_grad_(backward and not start)
    captured: dict[str, torch.Tensor] = {}
    logits_box: list[torch.Tensor] = []
    leaf: list[torch.Tensor] = []  # the graph's start (one entry once a layer ran)

    def capturer(name: str) -> Callable[..., Any]:
        def hook(module: Any, args: Any, output: Any) -> Any:
            if name in captured:
                return None  # a module called again: its first call is the one used
            tensor = first_tensor(output)
            if tensor is None:
                raise ValueError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
            if start and not leaf:
                if tensor is not output or not tensor.is_floating_point():
                    raise _NoShortPath  # a tuple output: no place to start the graph
                else:
                    tensor = tensor.detach().requires_grad_(True)
                    leaf.append(tensor)
                    captured[name] = tensor
                    return tensor.clone()  # the model goes on from a copy (in-place ops)
            captured[name] = tensor
            # The next module may work in place (ReLU(inplace=True)); it then changes this
            # copy, and the captured tensor keeps the layer's own values and gradient.
            return tensor.clone() if tensor is output else None

        return hook

    def softmax_input(module: Any, args: Any) -> None:
        if not logits_box:
            logits_box.append(first_tensor(args))

    output_module = adapter.module(adapter.output_layer().name)
    handles = []
    try:
        for name in names:
            handles.append(adapter.module(name).register_forward_hook(capturer(name)))
        if is_softmax(output_module):
            handles.append(output_module.register_forward_pre_hook(softmax_input))
        if guided and backward:
            for module in adapter.model.modules():
                if isinstance(module, (torch.nn.ReLU, torch.nn.ReLU6)):
                    handles.append(module.register_forward_hook(_guide_output))
        with torch.enable_grad() if backward else torch.no_grad():
            try:
                output = adapter.model(adapter.preprocess(inputs))
            except _NoShortPath:  # stopped at once, not after a whole wasted forward pass
                return None
            except RuntimeError as err:
                if channels_last:
                    raise _LayoutFailed from err
                raise ValueError(
                    f"the forward pass of {type(adapter.model).__name__} failed on a batch of "
                    f"shape {tuple(batch.shape)} (N, C, H, W): {err}"
                ) from err
            missing = [n for n in names if n not in captured]
            if missing:
                raise ValueError(
                    f"layer(s) {', '.join(map(repr, missing))} did not run in the forward pass "
                    f"of {type(adapter.model).__name__}, so they have no gradients"
                )
            logits = logits_box[0] if logits_box else first_tensor(output)
            scores = _scores(logits, target, len(batch))
            wanted = [captured[n] for n in names]
            if start and (
                not scores.requires_grad
                or not all(t.requires_grad for t in wanted)
            ):
                return None
            if backward:
                # Without the image's gradient, autograd runs only the part of the backward
                # pass between the score and the chosen layers.
                sources = [inputs, *wanted] if input_grad else wanted
                grads = torch.autograd.grad(scores.sum(), sources, allow_unused=True)
                if not input_grad:
                    grads = (None, *grads)
    finally:
        for handle in handles:
            handle.remove()
    activations = {n: _to_numpy(captured[n]) for n in names}
    if not backward:
        return Gradients(
            _to_numpy(logits), score_vector(_to_numpy(scores), len(batch)), activations, {}, None
        )
    layer_grads = {
        n: _to_numpy(g) if g is not None else np.zeros(tuple(t.shape), np.float32)
        for n, g, t in zip(names, grads[1:], wanted, strict=True)
    }
    image_grad = grads[0]
    if not input_grad:
        image_grad = None
    elif image_grad is None:  # the score does not depend on the image
        image_grad = torch.zeros_like(inputs)
    return Gradients(
        logits=_to_numpy(logits),
        scores=score_vector(_to_numpy(scores), len(batch)),
        activations=activations,
        layer_grads=layer_grads,  # _to_numpy gives float32 copies already
        input_grad=None if image_grad is None else _to_numpy(image_grad),
    )


class _Guide(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the gradient. Put after a
    ReLU, whose own backward then masks where its input was <= 0: guided backpropagation."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()  # a new tensor: a later in-place op cannot touch the ReLU's output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _guide_output(module: Any, args: Any, output: Any) -> Any:
    return _Guide.apply(output) if isinstance(output, torch.Tensor) else None


def _scores(logits: torch.Tensor, target: Target, n: int) -> torch.Tensor:
    if callable(target):
        scores = target(logits)
        if not isinstance(scores, torch.Tensor):
            raise TypeError(
                f"a target callable must return a torch tensor, got {type(scores).__name__}"
            )
        score_vector(scores.detach().cpu().numpy(), n)  # checks the shape
        return scores
    flat = logits.reshape(n, -1)
    check_classes(target, flat.shape[1])
    classes = torch.as_tensor(target, device=flat.device)
    top = flat.detach().argmax(dim=1)
    classes = torch.where(classes < 0, top, classes)
    return flat.gather(1, classes[:, None])[:, 0]
