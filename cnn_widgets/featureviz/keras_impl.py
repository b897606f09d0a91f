"""The Keras 3 / TensorFlow side of feature visualization: the spec as ``tf.GradientTape`` ops.

* **A compiled step.** The whole step (parameterization, random view, preprocessing,
  truncated forward, objective, gradient, update) is traced into a ``tf.function`` with a
  batch dimension of ``None``, so every chunk reuses it. Measured on EfficientNet-Lite0 at
  128 px (batch 16), the forward and backward pass to ``_blocks.6`` took ~3.5 ms per image
  traced against ~13 ms eagerly; tracing takes ~0.5 s.
* **Truncated forward.** While the step is traced, each captured layer's ``call`` is wrapped
  (the same instance-attribute trick the Keras adapter uses): the wrapper records the output
  and raises a private ``BaseException`` once every capture is recorded. The traced graph
  then ends at the last target, and ``tf.GradientTape`` differentiates what was recorded. A
  sub-model (``keras.Model(inputs, layer.output)``) would do the same for functional models
  only, and not for layers inside nested models, so this is the one mechanism for all.
* **Dead-ReLU warm-up.** The warm-up steps run a second traced step in which ``ReLU``
  layers and layers whose ``activation`` is relu/relu6 (``Activation("relu")``,
  ``Conv2D(..., activation="relu")``) compute the same values through a
  ``tf.custom_gradient`` that redirects blocked gradients. Two graphs rather than one with a
  switch: after the warm-up a step pays nothing for it.
* Wrappers and swapped activations exist only while a pass is traced (or run eagerly: the
  size probe, and models that cannot be traced), through the adapter's ``swapped`` (under
  the model lock, restored in ``finally`` blocks); the compiled graph runs without them.
  A model that cannot be traced (Python control flow on tensors in a subclassed ``call``)
  runs the same step eagerly.

A model whose declared input size differs from the image size is run through ``model.call``
(inside a name scope): ``Model.__call__`` checks the declared input shape, although the
layers up to the target accept any size.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..backends.base import Normalization
from ..backends.keras import KerasAdapter, first_tensor
from .keras_fold import foldable_pairs, folded_swaps, same_targets
from .keras_ops import affine_sample, as_complex, objective_values, redirected
from .objectives import Capture
from .spec import ChunkSpec, ForwardError, LucidParams, RunSpec

__all__ = ["Session"]

log = logging.getLogger(__name__)

ONE_THREAD_MEMORY_BUDGET = 150 * 2**20
"""The bytes of activations per chunk (see :data:`.loop.DEFAULT_MEMORY_BUDGET`) when
TensorFlow runs on the CPU with one intra-op thread: about 2 images of EfficientNet-Lite0 to
``_blocks.6`` or ``_blocks.10`` at 128 px, 3 to ``_blocks.2``. On one thread a step's
time per image grows with the batch as it falls out of the core's cache (measured here, 2 MiB
of L2 per core, one thread, 16 channels, medians of 3-4 interleaved rounds, ms per image and
step: ``_blocks.6`` 2 images 4.9, 3 5.3, 4 5.4, 9 (the general budget) 5.8; ``_blocks.2`` 3
images 3.9 against 13 4.5; ``_blocks.10`` 2 images 6.9 against 7 7.6). With TensorFlow's
default threads (two here) the general budget is the faster one (``_blocks.6``: 9 images 5.1,
4 6.3, 2 7.6): small ops do not split well across threads."""

_RELU_NAMES = {"relu": None, "relu6": 6.0}
_SOFTMAX_NAMES = ("softmax", "log_softmax")


class _Captured(BaseException):
    """Ends our forward pass once every capture is recorded. A BaseException, so that Keras's
    error decorators (which rewrap ``Exception``) let it through untouched."""


@dataclass
class _State:
    param: tf.Tensor
    m: tf.Tensor
    v: tf.Tensor
    views: np.ndarray  # (k, steps, 2, 3)
    groups: tuple[tuple[tf.Tensor, ...], ...]
    penalty: tf.Tensor  # (k,) weights of the pull towards gray (zeros: none)


class Session:
    """One feature-visualization run on a :class:`KerasAdapter` (see :mod:`.loop`)."""

    fold_batchnorm = True
    """Run the passes with the BatchNormalizations folded into their convs, as private
    constants (see :mod:`.keras_fold`; False: the model's own layers, for the benchmark)."""

    def __init__(self, adapter: KerasAdapter, captures: tuple[Capture, ...]) -> None:
        self.adapter = adapter
        self.model = adapter.model
        self.captures = captures
        self._targets: list[tuple[Any, str]] = []
        for capture in captures:
            layer = adapter.layer_object(capture.layer)
            self._targets.append((layer, self._mode(layer, capture)))
        self._relu_layers = []
        self._relu_activations = []
        for layer in adapter.all_layers():
            if isinstance(layer, keras.layers.ReLU):
                if layer.negative_slope == 0 and layer.threshold == 0:
                    self._relu_layers.append(layer)
            elif getattr(getattr(layer, "activation", None), "__name__", "") in _RELU_NAMES:
                self._relu_activations.append(layer)
        self.run: RunSpec | None = None
        self.folded = 0  # BatchNormalizations folded into convs for this run's passes
        self._fold_swaps: list[tuple[Any, str, Any]] = []
        self._functions: dict[bool, Any] = {}
        self._eager = False
        self._bypass = False
        self._normalization: tuple[tuple[int, ...], tf.Tensor, tf.Tensor] | None = None
        # Model.__call__ passes training= only to a call() that takes it; a bypassing pass
        # calls call() itself, so it must ask the same (a subclassed call(self, x) does not).
        self._call_kwargs = {"training": False} if _takes_training(self.model.call) else {}
        # The default chunk budget: None keeps the loop's.
        self.memory_budget = ONE_THREAD_MEMORY_BUDGET if _one_cpu_thread() else None

    @staticmethod
    def _mode(layer: Any, capture: Capture) -> str:
        """``"output"``, ``"input"`` (a softmax layer's input) or ``"dense"`` (a softmax
        Dense's pre-activation), for where a capture's tensor comes from."""
        if not capture.logits:
            return "output"
        if isinstance(layer, keras.layers.Softmax):
            return "input"
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if activation in _SOFTMAX_NAMES:
            if isinstance(layer, keras.layers.Activation):
                return "input"
            if isinstance(layer, keras.layers.Dense):
                return "dense"
            raise ValueError(
                f"layer {capture.layer!r} ({type(layer).__name__}) applies a softmax inside, "
                "so its logits cannot be read; use objective='channel' on the layer before it"
            )
        return "output"

    # -- the truncated forward -------------------------------------------------------------
    @contextmanager
    def _instrumented(self, recorded: list[Any], redirect: bool) -> Iterator[None]:
        """Wrap captures (and with ``redirect``, ReLUs) for the passes run inside the block."""
        remaining = [len(self._targets)]

        def record(i: int, value: Any) -> None:
            if recorded[i] is not None:
                return  # a layer called twice: its first call counts
            recorded[i] = first_tensor(value)
            remaining[0] -= 1
            if remaining[0] == 0:
                raise _Captured

        def capture_call(i: int, layer: Any, mode: str, inner: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                if mode == "output":
                    output = inner(*args, **kwargs)
                    record(i, output)
                    return output
                inputs = args[0] if args else next(iter(kwargs.values()))
                if mode == "input":
                    record(i, inputs)
                else:  # a softmax Dense: its pre-activation, the same ops as Dense.call
                    logits = keras.ops.matmul(inputs, layer.kernel)
                    record(i, logits + layer.bias if layer.use_bias else logits)
                return inner(*args, **kwargs)

            return call

        def relu_call(upper: float | None) -> Any:
            return lambda inputs, *args, **kwargs: redirected(inputs, upper)

        def relu_activation(upper: float | None) -> Any:
            return lambda x, *args, **kwargs: redirected(x, upper)

        redirects: list[tuple[Any, str, Any]] = []
        if redirect:
            redirects += [(r, "call", relu_call(r.max_value)) for r in self._relu_layers]
            redirects += [
                (layer, "activation", relu_activation(_RELU_NAMES[layer.activation.__name__]))
                for layer in self._relu_activations
            ]
        # Two swaps, the second inside the first: a captured ReLU wraps the redirected call.
        captures = (
            (layer, "call", capture_call(i, layer, mode, layer.call))
            for i, (layer, mode) in enumerate(self._targets)
        )
        with (
            self.adapter.swapped(self._fold_swaps),
            self.adapter.swapped(redirects),
            self.adapter.swapped(captures),
        ):
            yield

    def _forward(self, x: tf.Tensor, redirect: bool) -> list[tf.Tensor]:
        recorded: list[Any] = [None] * len(self._targets)
        with self._instrumented(recorded, redirect):
            try:
                # A valid root name scope: model.call skips the one Model.__call__ opens, and
                # TensorFlow refuses root scopes starting with "_" (EfficientNet's layers).
                with tf.name_scope("cnn_widgets_featureviz"):
                    if self._bypass:
                        self.model.call(x, **self._call_kwargs)
                    else:
                        self.model(x, training=False)
            except _Captured:
                pass
        missing = [c.layer for c, r in zip(self.captures, recorded, strict=True) if r is None]
        if missing:
            raise ForwardError(
                f"layer(s) {', '.join(map(repr, missing))} did not run in the forward pass"
            )
        return recorded

    def _preprocess(self, view: tf.Tensor) -> tf.Tensor:
        normalization = self._normalization
        if normalization is not None and tuple(view.shape[1:]) == normalization[0]:
            _, factor, offset = normalization
            return view * factor - offset  # (view * scale - mean) / std, up to rounding
        return self.adapter.preprocess(view)

    def _full_size_normalization(self) -> None:
        """The adapter's per-channel :class:`Normalization`, ``(x * scale - mean) / std``, as
        ``x * (scale / std) - mean / std`` with both repeated to the run's image size. Broadcast
        over the last axis of 3 they take TensorFlow's slow broadcasting path: the
        subtraction, the division and the division's gradient measured ~1 ms each per step of
        8 images at 128 px (one thread), ~3x less full-size; one product and one subtraction
        also save a pass forward and one backward."""
        self._normalization = None
        norm = self.adapter.spec.preprocess
        if not isinstance(norm, Normalization):
            return
        shape = (*self.run.size, self.run.channels)
        try:
            mean = np.broadcast_to(np.asarray(norm.mean, np.float64), shape)
            std = np.broadcast_to(np.asarray(norm.std, np.float64), shape)
        except ValueError:  # the adapter's own preprocessing reports the mismatch
            return
        factor = (float(norm.scale) / std).astype(np.float32)
        offset = (mean / std).astype(np.float32)
        self._normalization = (shape, tf.constant(factor), tf.constant(offset))

    # -- the loop's interface --------------------------------------------------------------
    def probe(self, size: tuple[int, int]) -> list[tuple[int, ...]]:
        """Output shapes (channels-first, no batch) of the captures at ``size``."""
        self._bypass = self.adapter.spec.spatial not in (None, tuple(size))
        dummy = tf.zeros((1, *size, self.adapter.spec.channels), tf.float32)
        try:
            outputs = self._forward(self._preprocess(dummy), redirect=False)
        except ForwardError:
            raise
        except Exception as err:  # the model's own error for this size
            raise ForwardError(f"{type(err).__name__}: {err}") from None
        return [_channels_first(tuple(int(d) for d in out.shape[1:])) for out in outputs]

    def compile(self, run: RunSpec) -> None:
        self.run = run
        self._bypass = self.adapter.spec.spatial not in (None, tuple(run.size))
        self._lucid = isinstance(run.params, LucidParams)
        self._warped = self._lucid and run.params.transforms
        self._redirect = (
            self._lucid
            and run.params.warmup_steps > 0
            and (bool(self._relu_layers) or bool(self._relu_activations))
        )
        height, width = run.size
        channels = run.channels
        param_shape = (
            (None, channels, height, width // 2 + 1, 2)
            if self._lucid
            else (None, channels, height, width)
        )
        group_spec = tuple(
            (
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((None,), tf.float32),
            )
            for _ in run.group_keys
        )
        self._signature = (
            tf.TensorSpec(param_shape, tf.float32),
            tf.TensorSpec(param_shape, tf.float32),
            tf.TensorSpec(param_shape, tf.float32),
            tf.TensorSpec((None, 2, 3), tf.float32),
            tf.TensorSpec((), tf.float32),
            group_spec,
            tf.TensorSpec((None,), tf.float32),
        )
        self._full_size_normalization()
        # Repeated over the (real, imaginary) axis: a factor broadcast over an inner axis of 2
        # takes TensorFlow's slow broadcasting path (~1.1 ms of the step's product at 128 px,
        # 8 images, one thread, and as much again in its gradient; ~0.35 ms each this way).
        self._scale = tf.constant(np.repeat(run.spectrum_scale[..., None], 2, axis=-1))
        self._color = tf.constant(run.color)
        self._functions = {}
        self._eager = False
        self._fold_swaps = []
        self.folded = 0
        if self.fold_batchnorm:
            self._fold()

    def _fold(self) -> None:
        """Fold the BatchNormalizations into their convs for this run's passes, when the
        folded pass computes the same targets on a random image (see :mod:`.keras_fold`)."""
        generator = np.random.default_rng(0)
        example = generator.random((2, *self.run.size, self.run.channels), dtype=np.float32)
        x = self._preprocess(tf.constant(example))
        targets = {id(layer) for layer, _ in self._targets}
        try:
            pairs = foldable_pairs(
                self.adapter.all_layers(),
                lambda: self._forward(x, redirect=False),
                self.adapter.swapped,
            )
            pairs = [(conv, norm) for conv, norm in pairs if id(conv) not in targets]
            if not pairs:
                return
            expected = [np.asarray(t) for t in self._forward(x, redirect=False)]
            self._fold_swaps = folded_swaps(pairs)
            actual = [np.asarray(t) for t in self._forward(x, redirect=False)]
        except Exception as err:  # a model this cannot fold: run its own layers
            log.info("feature_viz: BatchNormalization not folded (%s)", err)
            self._fold_swaps = []
            return
        if not same_targets(expected, actual):
            self._fold_swaps = []
            return
        self.folded = len(pairs)

    def _function(self, redirect: bool) -> Any:
        """The step, traced on first use (the warm-up one only if the run has a warm-up)."""
        if redirect not in self._functions:

            def step(*args: Any) -> Any:  # a plain signature: tf.function binds it positionally
                return self._step(*args, redirect=redirect)

            if self._eager:
                self._functions[redirect] = step
                return step
            try:
                traced = tf.function(step, autograph=False)
                self._functions[redirect] = traced.get_concrete_function(*self._signature)
            except tf.errors.OperatorNotAllowedInGraphError as err:
                # Python control flow on tensors in a subclassed call: run the step eagerly.
                log.info("feature_viz: the step could not be traced (%s); running eagerly", err)
                self._eager = True
                self._functions = {redirect: step}
        return self._functions[redirect]

    def start(self, chunk: ChunkSpec) -> _State:
        param = tf.constant(chunk.init)
        groups = tuple(
            (
                tf.constant(g.image),
                tf.constant(g.channel),
                tf.constant(g.y),
                tf.constant(g.x),
                tf.constant(g.weight),
            )
            for g in chunk.groups
        )
        zeros = tf.zeros_like(param)
        return _State(
            param=param,
            m=zeros,
            v=zeros,
            views=chunk.views,
            groups=groups,
            penalty=tf.zeros([chunk.size], tf.float32),
        )

    def step(self, state: _State, step: int) -> np.ndarray:
        warm = self._redirect and step < self.run.params.warmup_steps
        param, m, v, values = self._function(warm)(
            state.param,
            state.m,
            state.v,
            tf.constant(state.views[:, step]),
            tf.constant(float(step + 1)),
            state.groups,
            state.penalty,
        )
        state.param, state.m, state.v = param, m, v
        return values.numpy()

    def gains(self, state: _State) -> np.ndarray:
        """Per image, the largest ``|d objective / d pixel|`` at the current image (no random
        view; the dead-ReLU redirect on, as in the torch session). Eager: once per run."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            image = self._image(state.param)
            tape.watch(image)
            outputs = self._forward(self._preprocess(image), self._redirect)
            values = self._objective(outputs, state.groups, tf.shape(state.param)[0])
        grad = tape.gradient(values, image)
        if grad is None:
            return np.zeros(int(state.param.shape[0]), np.float32)
        flat = tf.reshape(tf.abs(tf.convert_to_tensor(grad)), [tf.shape(grad)[0], -1])
        return tf.reduce_max(flat, axis=1).numpy().astype(np.float32)

    def set_penalty(self, state: _State, weights: np.ndarray) -> None:
        state.penalty = tf.constant(np.asarray(weights, np.float32))

    def images(self, state: _State) -> np.ndarray:
        # Eager: a handful of ops, not worth a traced function per chunk shape.
        return np.array(self._image(state.param).numpy(), dtype=np.float32)

    def close(self) -> None:
        self._functions = {}
        self._fold_swaps = []
        self.run = None

    # -- the step (traced) -----------------------------------------------------------------
    def _image(self, param: tf.Tensor) -> tf.Tensor:
        """``(k, H, W, C)`` in [0, 1] from the parameters."""
        if not self._lucid:
            return tf.transpose(param, (0, 2, 3, 1))
        height, width = self.run.size
        spectrum = as_complex(param * self._scale)
        # irfft2d normalizes by 1/(h*w); "ortho" (Lucid's) is 1/sqrt(h*w).
        image = tf.signal.irfft2d(spectrum, fft_length=[height, width])
        image = image * np.float32(math.sqrt(height * width) / 4.0)
        # The colour mix as one (k*H*W, C) x (C, C) product after the transpose to
        # channels-last: ~20 % less than an einsum that mixes and transposes (measured with
        # the gradient, 128 px, one thread: 1.7-1.9 vs 2.1-2.4 ms of CPU per image).
        image = tf.transpose(image, (0, 2, 3, 1))
        flat = tf.matmul(tf.reshape(image, [-1, self.run.channels]), self._color, transpose_b=True)
        return tf.sigmoid(tf.reshape(flat, tf.shape(image)))

    def _step(
        self,
        param: tf.Tensor,
        m: tf.Tensor,
        v: tf.Tensor,
        theta: tf.Tensor,
        t: tf.Tensor,
        groups: tuple[tuple[tf.Tensor, ...], ...],
        penalty: tf.Tensor,
        *,
        redirect: bool,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(param)
            image = self._image(param)
            view = affine_sample(image, theta) if self._warped else image
            outputs = self._forward(self._preprocess(view), redirect)
            values = self._objective(outputs, groups, tf.shape(param)[0])
            if self._lucid and self.run.params.contrast is not None:
                pull = tf.reduce_sum(
                    tf.reshape(tf.square(image - 0.5), [tf.shape(image)[0], -1]), axis=1
                )
                values = values - penalty * pull
            loss = -tf.reduce_sum(values)
        grad = tape.gradient(loss, param)
        if grad is None:  # the objective does not depend on the image at all
            grad = tf.zeros_like(param)
        if self._lucid:
            p = self.run.params
            m = p.beta1 * m + (1 - p.beta1) * grad
            v = p.beta2 * v + (1 - p.beta2) * tf.square(grad)
            m_hat = m / (1 - tf.pow(np.float32(p.beta1), t))
            v_hat = v / (1 - tf.pow(np.float32(p.beta2), t))
            param = param - p.lr * m_hat / (tf.sqrt(v_hat) + p.eps)
        else:
            flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
            rms = tf.sqrt(tf.reduce_mean(tf.square(flat), axis=1))
            rms = tf.reshape(rms, [-1, 1, 1, 1])
            step = self.run.params.step_size * grad / (rms + 1e-12)
            param = tf.clip_by_value(param - step, 0.0, 1.0)
        return param, m, v, values

    def _objective(
        self, outputs: list[tf.Tensor], groups: tuple[tuple[tf.Tensor, ...], ...], k: tf.Tensor
    ) -> tf.Tensor:
        return objective_values(outputs, self.run.group_keys, groups, k)


def _one_cpu_thread() -> bool:
    """TensorFlow runs this process's ops on one CPU thread: no GPU visible, and intra-op
    parallelism set to 1 (or left to TensorFlow on a machine with one core)."""
    if tf.config.list_logical_devices("GPU"):
        return False
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return threads == 1 or (threads == 0 and os.cpu_count() == 1)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[-1:] + shape[:-1] if len(shape) >= 2 else shape


def _takes_training(call: Any) -> bool:
    """True when ``call`` accepts a ``training`` keyword (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass nothing it may refuse
        return False
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
