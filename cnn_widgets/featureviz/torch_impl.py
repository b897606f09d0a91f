"""The PyTorch side of feature visualization: the spec of :mod:`.spec` as autograd ops.

* **Truncated forward.** Forward hooks on the captured modules record their outputs and raise
  a private exception once all are recorded, so no layer after the last target runs. The
  recorded tensors keep their autograd graph, so the backward pass works as usual.
* **Dead-ReLU warm-up.** During the first ``warmup_steps`` steps every ``nn.ReLU`` /
  ``nn.ReLU6`` module of the model gets a forward pre-hook and a forward hook that replace its
  output with :class:`_RedirectedClamp` (the same values, a gradient that is not blocked where
  every unit of an image is dead). Functional ``F.relu`` calls inside ``forward`` cannot be
  reached this way and keep their ordinary gradient.
* Hooks are registered for one forward pass at a time and always removed through their
  handles, so between steps (and after any error) the model carries none of ours. Parameters
  are frozen by :meth:`TorchAdapter.protect`, so gradients flow to the image only.

The session uses the torch adapter's public pieces: ``module`` (a layer's live module),
``preprocess`` (the model's own preprocessing as tensor ops), ``placement`` (device and
dtype) and ``first_tensor`` (what a layer's output means), so each has one definition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backends.torch import TorchAdapter, first_tensor
from .allocator import settle_thresholds
from .objectives import LAYER_MAX_TEMPERATURE, Capture
from .spec import ChunkSpec, ForwardError, LucidParams, RunSpec
from .torch_fold import ActivatedConv, folded_copy

__all__ = ["Session"]

_SOFTMAX = (nn.Softmax, nn.LogSoftmax, nn.Softmax2d)

CPU_MEMORY_BUDGET = 512 * 2**20
"""The default bytes of activations per chunk on CPU (see :data:`.loop.DEFAULT_MEMORY_BUDGET`):
9 images of EfficientNet-Lite0 to ``_blocks.6`` at 128 px. What decides it on Linux is glibc's
``malloc``: a step's large buffers either stay mapped or are returned and page-faulted in
again next step. With the thresholds settled (:func:`.allocator.settle_thresholds`, which
every CPU run does) a chunk keeps its memory up to glibc's 64 MiB trim threshold of churn,
measured there (one thread, 16 channels, three rounds, medians per image and step, load ~2):
128 MiB 11.6 ms, 256 MiB 11.5 ms, 512 MiB 10.8 ms (0 page faults per step), 1024 MiB
10.6 ms but 1,500-4,600 faults per step. Before the thresholds were settled, 256 MiB (4
images) was the best, at 12.0-14.8 ms with ~9,000 faults per step, and 8 images faulted
more."""


class _Captured(Exception):
    """Raised from our forward hook once every capture is recorded: the rest of the model
    need not run. Ours only; never escapes :meth:`Session._forward`."""


class _RedirectedClamp(torch.autograd.Function):
    """``clamp(x, 0, upper)`` whose gradient is not blocked for images that would get none.

    With the loss being minimized, the ordinary gradient is zero where the unit is clipped.
    When that leaves an image with no gradient at all through this layer, the redirected
    gradient is used instead: it passes wherever a descent step would move ``x`` back towards
    the active range (up for ``x < 0``, down for ``x > upper``) and stays blocked where it
    would push ``x`` further out. Lucid's ``redirected_relu_grad``, per image.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0.0, max=upper)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        upper = ctx.upper
        # The ordinary gradient, with the fused kernels ReLU / ReLU6 use themselves.
        if upper is None:
            plain = torch.ops.aten.threshold_backward(grad, x, 0.0)
        else:
            plain = torch.ops.aten.hardtanh_backward(grad, x, 0.0, upper)
        dead = ~plain.reshape(plain.shape[0], -1).any(dim=1)
        if not bool(dead.any()):  # the usual case: nothing to redirect
            return plain, None
        # A descent step moves x by -grad: grad > 0 pushes a negative x further down.
        outward = (x < 0) & (grad > 0)
        if upper is not None:
            outward = outward | ((x > upper) & (grad < 0))
        redirected = grad.masked_fill(outward, 0.0)
        dead = dead.reshape(-1, *([1] * (grad.dim() - 1)))
        return torch.where(dead, redirected, plain), None


@dataclass
class _State:
    param: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    scratch: torch.Tensor  # Adam's per-step temporary, allocated once
    views: torch.Tensor  # (k, steps, 2, 3)
    groups: list[
        tuple[str, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ]
    size: int
    penalty: torch.Tensor | None = None  # (k,) weights of the pull towards gray


def _gram_similarity(acts: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per image, the mean cosine similarity of its Gram matrix (channels x channels, over
    positions, of the activations minus their spatial means) with those of the other images
    of its group; 0 for an image alone.

    Centred, because the raw Gram matrices of a ReLU layer are dominated by the channels'
    means, which every image of one channel shares: their cosine similarity is 0.999 for
    images that look nothing alike (measured on LeNet's relu2), and its gradient is too weak
    to push them apart. Centred, it measures the texture: 0.99 for the near-copies the plain
    channel objective gives, 0.1 to 0.2 with the penalty."""
    flat = acts.float().flatten(2)  # (m, C, HW)
    flat = flat - flat.mean(dim=2, keepdim=True)
    gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1) / flat.shape[2]
    gram = F.normalize(gram, dim=1)
    similarity = gram @ gram.T
    same = (group[:, None] == group[None, :]) & ~torch.eye(
        len(group), dtype=torch.bool, device=group.device
    )
    partners = same.sum(dim=1).clamp(min=1)
    return (similarity * same).sum(dim=1) / partners


def _soft_max(means: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Per row of ``(m, C)`` channel means, ``T * logsumexp(means / T)`` with ``T`` a fixed
    fraction of the row's largest ``|mean|``, held constant (see ``objectives.layer_max``);
    ``exclude`` (``(m,)``, -1 for none) leaves one channel of each row out."""
    scale = means.detach().abs()
    if exclude is not None:
        left_out = torch.arange(means.shape[1], device=means.device) == exclude[:, None]
        means = means.masked_fill(left_out, -math.inf)
        scale = scale.masked_fill(left_out, 0.0)
    scale = scale.amax(dim=1, keepdim=True)
    temperature = (scale * LAYER_MAX_TEMPERATURE).clamp(min=1e-12)
    return (temperature * torch.logsumexp(means / temperature, dim=1, keepdim=True))[:, 0]


class Session:
    """One feature-visualization run on a :class:`TorchAdapter` (see :mod:`.loop`)."""

    fold_batchnorm = True
    """Fold eval-mode BatchNorms into their convs in a private copy (False: run the model
    itself; the benchmark measures both)."""

    rewrite_convs = True
    """In that copy, run 1x1 convs as matrix products and give "same" padding as numbers
    (see :mod:`.torch_fold`; False: fold only, for the benchmark)."""

    fuse_activations = True
    """In that copy, fuse each ReLU / ReLU6 into the conv before it (see :mod:`.torch_fold`;
    False: for the benchmark and the tests)."""

    def __init__(self, adapter: TorchAdapter, captures: tuple[Capture, ...]) -> None:
        self.adapter = adapter
        self.model: nn.Module = adapter.model
        self.captures = captures
        self.device, self.dtype = adapter.placement()
        # The default chunk budget: None keeps the loop's (larger batches suit a GPU).
        self.memory_budget = CPU_MEMORY_BUDGET if self.device.type == "cpu" else None
        self._targets: list[tuple[nn.Module, bool]] = []
        for capture in captures:
            module = adapter.module(capture.layer)
            # A class logit of a model that ends in a softmax module is that module's input.
            self._targets.append((module, capture.logits and isinstance(module, _SOFTMAX)))
        self._relus = [m for m in self.model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        self.run: RunSpec | None = None
        self.folded = 0  # BatchNorms folded into convs in the private copy the run uses
        self.fused = 0  # ReLUs fused into the convs before them in that copy
        self._activated: list[ActivatedConv] = []  # those fused convs

    # -- the truncated forward -------------------------------------------------------------
    def _forward(self, x: torch.Tensor, redirect: bool) -> list[torch.Tensor]:
        return self._forward_on(self.model, self._targets, x, redirect)

    def _forward_on(
        self,
        model: nn.Module,
        targets: list[tuple[nn.Module, bool]],
        x: torch.Tensor,
        redirect: bool,
    ) -> list[torch.Tensor]:
        recorded: list[torch.Tensor | None] = [None] * len(targets)
        remaining = [len(targets)]

        def record(i: int, value: Any) -> None:
            if recorded[i] is not None:
                return  # a module called twice: its first call counts
            tensor = first_tensor(value)
            if tensor is None:
                raise ForwardError(
                    f"layer {self.captures[i].layer!r} returned {type(value).__name__}, "
                    "not a tensor"
                )
            remaining[0] -= 1
            if remaining[0] == 0:
                recorded[i] = tensor
                raise _Captured
            # The pass goes on: clone, so that a later in-place op (ReLU(inplace=True))
            # cannot change what was recorded.
            recorded[i] = tensor.clone()

        def output_hook(i: int) -> Callable[..., None]:
            return lambda module, args, output: record(i, output)

        def input_hook(i: int) -> Callable[..., None]:
            return lambda module, args: record(i, args[0])

        handles = []
        try:
            if redirect:
                handles += self._redirect_hooks()
                for module in self._activated:
                    module.redirect = _RedirectedClamp.apply
            for i, (module, use_input) in enumerate(targets):
                if use_input:
                    handles.append(module.register_forward_pre_hook(input_hook(i)))
                else:
                    handles.append(module.register_forward_hook(output_hook(i)))
            model(x)
        except _Captured:
            pass
        finally:
            for handle in handles:
                handle.remove()
            for module in self._activated:
                module.redirect = None
        missing = [c.layer for c, r in zip(self.captures, recorded, strict=True) if r is None]
        if missing:
            raise ForwardError(
                f"layer(s) {', '.join(map(repr, missing))} did not run in the forward pass"
            )
        return recorded  # type: ignore[return-value]

    def _redirect_hooks(self) -> list[Any]:
        inputs: dict[int, torch.Tensor] = {}

        def pre(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            inputs[id(module)] = args[0]
            if getattr(module, "inplace", False):
                # The module would overwrite x; let it work on a copy, x is needed below.
                return (args[0].clone(), *args[1:])
            return None

        def post(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            upper = 6.0 if isinstance(module, nn.ReLU6) else None
            return _RedirectedClamp.apply(inputs.pop(id(module)), upper)

        handles = []
        for module in self._relus:
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        return handles

    def _preprocess(self, view: torch.Tensor) -> torch.Tensor:
        return self.adapter.preprocess(view.to(self.dtype))

    @staticmethod
    def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        if channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # -- the loop's interface --------------------------------------------------------------
    def probe(self, size: tuple[int, int]) -> list[tuple[int, ...]]:
        """Output shapes (channels-first, no batch) of the captures at ``size``."""
        dummy = torch.zeros((1, self.adapter.spec.channels, *size), device=self.device)
        try:
            with torch.no_grad():
                outputs = self._forward(self._preprocess(dummy), redirect=False)
        except ForwardError:
            raise
        except Exception as err:  # the model's own error for this size
            raise ForwardError(f"{type(err).__name__}: {err}") from None
        return [tuple(int(s) for s in out.shape[1:]) for out in outputs]

    def compile(self, run: RunSpec) -> None:
        self.run = run
        # Repeated over the (real, imaginary) axis rather than broadcast over it: broadcasting
        # a factor over an inner axis of 2 took ~0.53 ms per product at 128 px, 8 images.
        scale = np.repeat(run.spectrum_scale[..., None], 2, axis=-1)
        self._scale = torch.tensor(scale, device=self.device)
        self._color = torch.tensor(run.color, device=self.device) / 4.0  # Lucid's divisor
        height, width = run.size
        # affine_grid's sampling positions, as align_corners=False places them: the grid of
        # every view is base_x * theta[0] + base_y * theta[1] + theta[2], computed by
        # broadcasting (affine_grid's batched product with 3-wide rows is ~10x slower here).
        self._base_x = ((torch.arange(width, device=self.device) * 2 + 1) / width - 1)[None, :]
        self._base_y = ((torch.arange(height, device=self.device) * 2 + 1) / height - 1)[:, None]
        self._lucid = isinstance(run.params, LucidParams)
        self._warped = self._lucid and run.params.transforms
        # oneDNN's convolutions run ~30 % faster on channels-last input here (EfficientNet-
        # Lite0, 128 px: 3.3 vs 4.5 ms per image and step). A model that calls .view() on its
        # activations cannot take it: one trial pass decides.
        dummy = torch.zeros((1, run.channels, *run.size), device=self.device)
        try:
            with torch.no_grad():
                self._forward(self._layout(self._preprocess(dummy), True), redirect=False)
            self._channels_last = True
        except Exception:  # any failure: keep the default layout
            self._channels_last = False
        if self.fold_batchnorm:
            self._use_folded_copy()
        if self.device.type == "cpu":
            # Each step frees and re-allocates the same large activations: with glibc at its
            # adapted ceiling they stay mapped instead of being page-faulted in again each
            # step (see .allocator; no parameter is set).
            settle_thresholds()

    def _use_folded_copy(self) -> None:
        """Run on a private copy with the BatchNorms folded into their convs, when one
        computes the same targets (see :mod:`.torch_fold`); the user's model is not changed."""
        generator = torch.Generator().manual_seed(0)
        example = torch.rand((2, self.run.channels, *self.run.size), generator=generator)
        x = self._layout(self._preprocess(example.to(self.device)), self._channels_last)
        uses = [use_input for _, use_input in self._targets]

        def outputs(model: nn.Module, modules: list[nn.Module]) -> list[torch.Tensor]:
            with torch.no_grad():
                return self._forward_on(model, list(zip(modules, uses, strict=True)), x, False)

        folded = folded_copy(
            self.model,
            [module for module, _ in self._targets],
            outputs,
            rewrite_convs=self.rewrite_convs and self._channels_last,
            fuse_activations=self.fuse_activations,
        )
        if folded is None:
            return
        self.folded = folded.folded
        self.fused = folded.fused
        self.model = folded.model
        self._activated = [m for m in self.model.modules() if isinstance(m, ActivatedConv)]
        self._targets = [(folded.module(m), use_input) for m, use_input in self._targets]
        self._relus = [m for m in self.model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]

    def start(self, chunk: ChunkSpec) -> _State:
        param = torch.tensor(chunk.init, device=self.device).requires_grad_(True)
        groups = [
            (
                g.kind,
                g.capture,
                torch.as_tensor(g.image, device=self.device),
                torch.as_tensor(g.channel, device=self.device),
                torch.as_tensor(g.y, device=self.device),
                torch.as_tensor(g.x, device=self.device),
                torch.as_tensor(g.weight, device=self.device),
            )
            for g in chunk.groups
        ]
        return _State(
            param=param,
            m=torch.zeros_like(param, requires_grad=False),
            v=torch.zeros_like(param, requires_grad=False),
            scratch=torch.empty_like(param, requires_grad=False),
            views=torch.tensor(chunk.views, device=self.device),
            groups=groups,
            size=chunk.size,
        )

    def _image(self, param: torch.Tensor) -> torch.Tensor:
        """``(k, C, H, W)`` in [0, 1] from the parameters."""
        if not self._lucid:
            return param
        height, width = self.run.size
        spectrum = torch.view_as_complex(param * self._scale)
        image = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho")
        # The colour mix (with the / 4) as one product over the whole batch.
        mixed = torch.matmul(self._color, image.flatten(2)).view(image.shape)
        return torch.sigmoid(mixed)

    def step(self, state: _State, step: int) -> np.ndarray:
        run = self.run
        image = self._image(state.param)
        if self._warped:
            grid = self._grid(state.views[:, step])
            # Sample (image - 0.5) with zero padding: outside the image reads 0.5.
            view = (
                F.grid_sample(
                    image - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False
                )
                + 0.5
            )
        else:
            view = image
        redirect = self._lucid and step < run.params.warmup_steps
        outputs = self._forward(self._layout(self._preprocess(view), self._channels_last), redirect)
        values = self._objective(outputs, state)
        if state.penalty is not None:
            pull = (image - 0.5).square().reshape(state.size, -1).sum(dim=1)
            values = values - state.penalty * pull
        (grad,) = torch.autograd.grad(-values.sum(), state.param)
        with torch.no_grad():
            if self._lucid:
                self._adam(state, grad, step + 1)
            else:
                self._ascend(state, grad)
        return values.detach().to("cpu", torch.float32).numpy()

    def _objective(self, outputs: list[torch.Tensor], state: _State) -> torch.Tensor:
        values = torch.zeros(state.size, device=self.device)
        later = []
        means: dict[int, torch.Tensor] = {}

        def channel_means(capture: int) -> torch.Tensor:
            """``(k, C)``: each image's spatial mean of each channel, once per capture. Read
            at the terms' (image, channel) pairs, the gradient is a dense broadcast rather
            than a scatter of the gathered maps into a zero tensor of the layer's size."""
            if capture not in means:
                acts = outputs[capture].float()
                if acts.dim() > 2:
                    acts = acts.mean(dim=tuple(range(2, acts.dim())))
                means[capture] = acts
            return means[capture]

        for kind, capture, image, channel, y, x, weight in state.groups:
            if image.numel() == 0:
                continue
            if kind == "channel":
                term = channel_means(capture)[image, channel]
            elif kind == "neuron":
                term = outputs[capture].float()[image, channel, y, x]
            elif kind == "diversity":
                acts = outputs[capture].float()
                later.append((_gram_similarity(acts[image], channel), image, weight))
                continue
            elif kind in ("layer_mean", "layer_max"):
                picked = channel_means(capture)[image]  # (m, C)
                term = picked.mean(dim=1) if kind == "layer_mean" else _soft_max(picked, channel)
            else:  # layer: DeepDream
                acts = outputs[capture].float()
                term = acts[image].reshape(image.shape[0], -1).square().mean(dim=1)
            values = values.index_add(0, image, term * weight)
        # The diversity penalty counts in units of the rest of the image's objective (held
        # constant), so that one weight suits layers of any scale.
        scale = values.detach().abs()
        for term, image, weight in later:
            values = values.index_add(0, image, term * weight * scale[image])
        return values

    def gains(self, state: _State) -> np.ndarray:
        """Per image, the largest ``|d objective / d pixel|`` at the current image, seen
        without a random view, with the dead-ReLU redirect (a unit dead on the start image
        still tells which pixels it wants)."""
        image = self._image(state.param.detach()).requires_grad_(True)
        redirect = self._lucid and self.run.params.warmup_steps > 0
        seen = self._layout(self._preprocess(image), self._channels_last)
        values = self._objective(self._forward(seen, redirect), state)
        (grad,) = torch.autograd.grad(values.sum(), image, allow_unused=True)
        if grad is None:
            return np.zeros(state.size, np.float32)
        return grad.abs().reshape(state.size, -1).amax(dim=1).to("cpu", torch.float32).numpy()

    def set_penalty(self, state: _State, weights: np.ndarray) -> None:
        state.penalty = torch.as_tensor(weights, dtype=torch.float32, device=self.device)

    def _grid(self, theta: torch.Tensor) -> torch.Tensor:
        """``F.affine_grid(theta, (k, C, H, W), align_corners=False)``, by broadcasting."""
        t = theta[:, :, :, None, None]  # (k, 2, 3, 1, 1)
        grid = t[:, :, 0] * self._base_x + t[:, :, 1] * self._base_y + t[:, :, 2]
        return grid.permute(0, 2, 3, 1)  # (k, H, W, 2)

    def _adam(self, state: _State, grad: torch.Tensor, t: int) -> None:
        """Adam's update, in place on preallocated state (no per-step tensors):
        ``param -= lr * m_hat / (sqrt(v_hat) + eps)``."""
        p = self.run.params
        state.m.lerp_(grad, 1 - p.beta1)
        state.v.mul_(p.beta2).addcmul_(grad, grad, value=1 - p.beta2)
        denom = torch.sqrt(state.v, out=state.scratch)
        denom.div_(math.sqrt(1 - p.beta2**t)).add_(p.eps)
        state.param.addcdiv_(state.m, denom, value=-p.lr / (1 - p.beta1**t))

    def _ascend(self, state: _State, grad: torch.Tensor) -> None:
        # grad is of the loss (-objective): step against it, normalized by its RMS per image.
        rms = grad.reshape(grad.shape[0], -1).square().mean(dim=1).sqrt()
        rms = rms.reshape(-1, *([1] * (grad.dim() - 1)))
        state.param.sub_(self.run.params.step_size * grad / (rms + 1e-12)).clamp_(0.0, 1.0)

    def images(self, state: _State) -> np.ndarray:
        with torch.no_grad():
            image = self._image(state.param)
        return image.detach().permute(0, 2, 3, 1).to("cpu", torch.float32).numpy().copy()

    def close(self) -> None:
        self.run = None
        self.model = self.adapter.model  # drop the private copy
        self._activated = []
