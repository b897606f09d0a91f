"""The PyTorch backend: an :class:`~cnn_widgets.backends.base.Adapter` over any ``nn.Module``.

Layers are the *leaf* modules of ``named_modules()`` (dot names such as ``layer1.0.conv1``),
ordered by their first call in one forward pass. Every forward pass runs under
``torch.no_grad()`` inside :meth:`TorchAdapter.protect`, with forward hooks that are removed
through their handles whatever happens.

This module is imported only by :func:`cnn_widgets.adapt` when it meets a torch model, so
importing ``cnn_widgets`` never imports torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import (
    Adapter,
    ConvConfig,
    InputSpec,
    LayerInfo,
    LayerKey,
    Normalization,
    Preprocess,
    Shape,
)
from .output_finder import OutputFinder
from .torch_gradients import torch_gradients
from .torch_layers import (
    _CONV_2D,
    _device_and_dtype,
    _dummy_forward_failure,
    _infer_channels,
    _layer_info,
    _pair,
    _to_numpy,
    first_tensor,
)
from .torch_snapshot import TorchSnapshot, take_snapshot

__all__ = ["TorchAdapter", "TorchSnapshot", "first_tensor"]

# Used for the dummy forward pass when the model accepts any spatial size and nobody said one.
DEFAULT_SPATIAL = (64, 64)

class _StopForward(Exception):
    """Raised by our own hook once every requested output is captured: layers past the last
    one need not run (and a head that does not fit the image size cannot spoil the result)."""


class TorchAdapter(Adapter):
    """A ``torch.nn.Module`` behind the framework-neutral :class:`Adapter` contract.

    Build it with :func:`cnn_widgets.adapt` (which calls :meth:`create`).

    Attributes
    ----------
    assumed_spatial:
        ``(H, W)`` used for the dummy forward pass of :meth:`layers` when the input spec has
        no spatial size (the output shapes of :meth:`layers` are then those of that size), or
        ``None`` when the spec's own size was used or no pass has run yet.
    """

    framework = "torch"

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__(model, spec)
        self.assumed_spatial: tuple[int, int] | None = None
        self._modules_by_name: dict[str, nn.Module] | None = None

    @classmethod
    def _input_shape(
        cls, model: Any, shape: Shape | None, preprocess: Preprocess
    ) -> tuple[int, int | None, int | None]:
        """``shape``, or when None ``(C, None, None)`` with ``C`` the ``in_channels`` of the
        first convolution in ``model.modules()`` (the spatial size then follows the image).

        The module is never copied: the adapter reads the live weights. ``preprocess`` is
        applied to NCHW tensors.

        Raises
        ------
        TypeError
            ``model`` is not a ``torch.nn.Module``.
        ValueError
            When ``shape`` is None and the model has no convolution to read channels from.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
        return shape if shape is not None else (_infer_channels(model), None, None)

    # -- layers --------------------------------------------------------------------------
    def _leaf_modules(self) -> dict[str, nn.Module]:
        if self._modules_by_name is None:
            leaves = {
                name: module
                for name, module in self.model.named_modules()
                if name and next(module.children(), None) is None
            }
            if not leaves and next(self.model.children(), None) is None:
                # A bare layer (adapt(nn.Conv2d(...))): the root is the only layer, and ""
                # would be no name to show or to type, so it goes by its class name.
                leaves = {type(self.model).__name__: self.model}
            self._modules_by_name = leaves
        return self._modules_by_name

    def module(self, layer: LayerKey | LayerInfo) -> nn.Module:
        """The ``nn.Module`` of a layer (name, index or LayerInfo): the live object, not a
        copy. For code that runs its own passes on the model (feature visualization)."""
        return self._leaf_modules()[self.layer(layer).name]

    def placement(self) -> tuple[torch.device, torch.dtype]:
        """The device and floating dtype of the model's parameters (CPU float32 without);
        read from the first tensors, not from a list of all of them (it runs every pass)."""
        return _device_and_dtype(self.model)

    def _discover_layers(self) -> list[LayerInfo]:
        modules = self._leaf_modules()
        channels, height, width = self.spec.shape
        assumed = height is None or width is None
        size = (height or DEFAULT_SPATIAL[0], width or DEFAULT_SPATIAL[1])

        order: list[str] = []
        calls: dict[str, int] = {}
        shapes: dict[str, tuple[int, ...] | None] = {}
        finder = OutputFinder()

        def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                calls[name] = calls.get(name, 0) + 1
                tensor = first_tensor(output)
                finder.saw(name, calls[name] == 1, tensor)
                if calls[name] == 1:
                    order.append(name)
                    shapes[name] = (
                        tuple(int(s) for s in tensor.shape[1:]) if tensor is not None else None
                    )

            return hook

        device, dtype = _device_and_dtype(self.model)
        handles = []
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(recorder(name)))
            dummy = torch.zeros((1, channels, *size), device=device, dtype=dtype)
            try:
                with torch.no_grad():
                    result = self.model(self.preprocess(dummy))
            except Exception as err:
                raise ValueError(_dummy_forward_failure(self.spec.shape, size, err)) from err
        finally:
            for handle in handles:
                handle.remove()
        self.assumed_spatial = size if assumed else None
        # Which module returned the very tensor the model returned: the output layer, even
        # when modules that never ran (stochastic depth, unused branches) are listed after it.
        self._output_name = finder.producer(first_tensor(result))

        never_ran = [name for name in modules if name not in calls]
        return [
            _layer_info(name, modules[name], shapes.get(name), index, calls.get(name, 0))
            for index, name in enumerate(order + never_ran)
        ]

    # -- filters -------------------------------------------------------------------------
    def _filters(self, info: LayerInfo) -> np.ndarray:
        """Kernels as ``(out, in_per_group, kh, kw)`` float32, never sharing memory with the
        parameter.

        ``ConvTranspose2d`` stores ``(in, out / groups, kh, kw)``; it is regrouped so that
        ``filters[o, i]`` is the kernel linking output channel ``o`` to the ``i``-th input
        channel of ``o``'s group. The kernel is not flipped: it is what the layer stamps onto
        its output for each input pixel.
        """
        module = self.module(info.name)
        if not isinstance(module, _CONV_2D):
            self._refuse_no_filters(info)
        weights = _to_numpy(module.weight)
        if isinstance(module, nn.ConvTranspose2d):
            groups = module.groups
            in_channels, out_per_group, kh, kw = weights.shape
            weights = (
                weights.reshape(groups, in_channels // groups, out_per_group, kh, kw)
                .transpose(0, 2, 1, 3, 4)
                .reshape(groups * out_per_group, in_channels // groups, kh, kw)
            )
        return np.ascontiguousarray(weights)

    def conv_config(self, layer: LayerKey) -> ConvConfig:
        """Stride, padding, dilation, groups and bias of a ``Conv2d``.

        Parameters
        ----------
        layer:
            Name or index of a ``Conv2d`` layer.

        Raises
        ------
        ValueError
            For layers without 2-D filters, and for ``ConvTranspose2d``, whose stride and
            padding act on the output, so no plain convolution of an image reproduces it.
        """
        info = self.layer(layer)
        module = self.module(info.name)
        if isinstance(module, nn.ConvTranspose2d):
            raise ValueError(
                f"layer {info.name!r} is a transposed convolution (ConvTranspose2d); its "
                "filters can be shown, but its geometry is not that of a plain convolution"
            )
        if not isinstance(module, nn.Conv2d):
            self._refuse_no_filters(info)
        if getattr(module, "asymmetric_padding", None) is not None:
            # A convolution read from a file with uneven padding (cnn_widgets.formats).
            raise ValueError(
                f"layer {info.name!r} pads unevenly (top, left, bottom, right = "
                f"{module.asymmetric_padding}); its geometry is not that of a plain "
                "convolution with one padding per side"
            )
        padding = module.padding
        return ConvConfig(
            stride=_pair(module.stride),
            padding=padding if isinstance(padding, str) else _pair(padding),
            dilation=_pair(module.dilation),
            groups=int(module.groups),
            has_bias=module.bias is not None,
        )

    # -- activations ---------------------------------------------------------------------
    def _activations(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(names))
        modules = {name: self.module(name) for name in wanted}
        captured: dict[str, np.ndarray] = {}

        def capturer(name: str) -> Callable[[nn.Module, Any, Any], None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if name in captured:
                    return  # a module called again: its first call is the one shown
                tensor = first_tensor(output)
                if tensor is None:
                    raise ValueError(
                        f"layer {name!r} returned {type(output).__name__}, not a tensor"
                    )
                # Copy now: a later in-place op (ReLU(inplace=True)) would change it.
                captured[name] = _to_numpy(tensor)
                if len(captured) == len(wanted):
                    raise _StopForward

            return hook

        register = {name: modules[name].register_forward_hook for name in wanted}
        return self._hooked_pass(batch, register, capturer, captured, "activations")

    def _hooked_pass(
        self,
        batch: np.ndarray,
        register: dict[str, Callable[..., Any]],
        capturer: Callable[[str], Callable[..., None]],
        captured: dict[str, np.ndarray],
        what: str,
    ) -> dict[str, np.ndarray]:
        """One forward pass with ``register[name](capturer(name))`` hooks, all removed
        afterwards; a hook raises ``_StopForward`` once it has everything."""
        device, dtype = _device_and_dtype(self.model)
        # torch.tensor copies, so neither preprocessing nor the model can write to `batch`.
        inputs = torch.tensor(batch, device=device, dtype=dtype)
        handles = []
        try:
            for name, add_hook in register.items():
                handles.append(add_hook(capturer(name)))
            # no_grad, not inference_mode: tensors a model caches during the pass (lazy
            # buffers, position tables) must stay usable for training afterwards.
            with torch.no_grad():
                self.model(self.preprocess(inputs))
        except _StopForward:
            pass
        except RuntimeError as err:
            raise ValueError(
                f"the forward pass of {type(self.model).__name__} failed on a batch of shape "
                f"{tuple(batch.shape)} (N, C, H, W): {err}"
            ) from err
        finally:
            for handle in handles:
                handle.remove()

        missing = [name for name in register if name not in captured]
        if missing:
            raise ValueError(
                f"layer(s) {', '.join(repr(n) for n in missing)} did not run in the forward "
                f"pass of {type(self.model).__name__}, so they have no {what}"
            )
        return {name: captured[name] for name in register}

    def preprocess(self, inputs: torch.Tensor) -> torch.Tensor:
        """The spec's preprocessing of an NCHW tensor of [0, 1] images, as tensor ops (so
        gradients flow through it)."""
        preprocess = self.spec.preprocess
        if preprocess is None:
            return inputs
        if isinstance(preprocess, Normalization):
            channels = inputs.shape[1]
            if len(preprocess.mean) not in (1, channels) or len(preprocess.std) not in (
                1,
                channels,
            ):
                raise ValueError(
                    f"Normalization has {len(preprocess.mean)} means and {len(preprocess.std)} "
                    f"stds, but the input has {channels} channels"
                )
            mean = torch.tensor(preprocess.mean, device=inputs.device, dtype=inputs.dtype)
            std = torch.tensor(preprocess.std, device=inputs.device, dtype=inputs.dtype)
            return (inputs * preprocess.scale - mean.reshape(1, -1, 1, 1)) / std.reshape(
                1, -1, 1, 1
            )
        return preprocess(inputs)

    def _gradients(
        self,
        batch: np.ndarray,
        names: Sequence[str],
        target: Any,
        backward: bool,
        input_grad: bool = True,
        guided: bool = False,
    ) -> Any:
        """See :meth:`Adapter.gradients` (:mod:`.torch_gradients`)."""
        return torch_gradients(self, batch, names, target, backward, input_grad, guided)

    def _weight_handles(self, name: str) -> list[Any]:
        return list(self.module(name).parameters())  # buffers (running stats) are no weights

    def _read_weight(self, handle: Any) -> np.ndarray:
        return handle.detach().cpu().numpy().copy()

    def _write_weight(self, handle: Any, values: np.ndarray) -> None:
        with torch.no_grad():
            handle.copy_(torch.from_numpy(np.ascontiguousarray(values)))

    # -- never harm the model ------------------------------------------------------------
    @contextmanager
    def protect(self) -> Iterator[None]:
        """Run a block with the model in ``eval()`` mode and every parameter frozen.

        Afterwards, also when the block raises, each module gets back its own ``training``
        flag (set directly, so mixed modes and overridden ``train()`` methods are left as
        they were) and each parameter its ``requires_grad``. Freezing means that a backward
        pass inside the block (gradients with respect to an image) cannot add to any
        parameter's ``.grad``, which is never touched.
        """
        with self._lock:  # two blocks at once could restore each other's half-changed state
            # Only what is set must be put back: a model already in eval mode with frozen
            # parameters (the usual case for inspection) costs two scans and no writes.
            modes = [(module, module.training) for module in self.model.modules()]
            changed = any(training for _, training in modes)
            thawed = [param for param in self.model.parameters() if param.requires_grad]
            try:
                if changed:
                    self.model.eval()
                for param in thawed:
                    param.requires_grad_(False)
                yield
            finally:
                if changed:
                    for module, training in modes:
                        module.training = training
                for param in thawed:
                    param.requires_grad_(True)

    def _weight_arrays(self) -> Iterator[tuple[str, Any]]:
        for name, tensor in self.model.state_dict(keep_vars=False).items():
            plain = tensor.detach().cpu()
            try:
                yield name, plain.numpy()
            except TypeError:  # bfloat16 and other dtypes numpy lacks: their raw bytes
                yield name, plain.contiguous().reshape(-1).view(torch.uint8).numpy()

    def snapshot(self) -> TorchSnapshot:
        """Copy of everything :meth:`protect` promises to keep, bit for bit (see
        :func:`~cnn_widgets.backends.torch_snapshot.take_snapshot`)."""
        return take_snapshot(self.model)

    def same_state(self, before: Any, after: Any) -> bool:
        """True when two :meth:`snapshot` results are bit-identical (NaN equals NaN at the
        same position)."""
        return not before.differences(after)

    # -- layer inputs and conv parameters (for cnn_widgets.analysis) -----------------------
    def _layer_inputs(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Each named module's first tensor argument at its first call, from forward
        *pre*-hooks (so an in-place op of the module itself cannot have changed it yet)."""
        wanted = list(dict.fromkeys(names))
        captured: dict[str, np.ndarray] = {}

        def capturer(name: str) -> Callable[[nn.Module, Any, Any], None]:
            def hook(module: nn.Module, args: Any, kwargs: Any) -> None:
                if name in captured:
                    return
                tensor = first_tensor(args)
                if tensor is None:  # called as module(input=x)
                    tensor = first_tensor(kwargs)
                if tensor is None:
                    raise ValueError(f"layer {name!r} was called without a tensor input")
                captured[name] = _to_numpy(tensor)
                if len(captured) == len(wanted):
                    raise _StopForward

            return hook

        register = {
            name: functools.partial(self.module(name).register_forward_pre_hook, with_kwargs=True)
            for name in wanted
        }
        return self._hooked_pass(batch, register, capturer, captured, "inputs")

    def _plain_conv(self, layer: LayerKey) -> nn.Conv2d:
        self.conv_config(layer)  # refuses everything but a plain Conv2d, with the reason
        return self.module(layer)  # type: ignore[return-value]

    def conv_bias(self, layer: LayerKey) -> np.ndarray | None:
        """``Conv2d.bias`` as a float32 copy, or None for ``bias=False``."""
        bias = self._plain_conv(layer).bias
        return None if bias is None else _to_numpy(bias)

    def conv_padding_mode(self, layer: LayerKey) -> str:
        """``Conv2d.padding_mode``: ``"zeros"``, ``"reflect"``, ``"replicate"`` or
        ``"circular"``."""
        return str(self._plain_conv(layer).padding_mode)
