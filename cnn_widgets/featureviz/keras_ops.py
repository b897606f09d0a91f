"""TensorFlow ops of the Keras feature-visualization session (:mod:`.keras_impl`): the
objective terms, the redirected ReLU gradient of the dead-ReLU warm-up, Lucid's diversity
similarity and the bilinear affine resampling of the random views. Pure functions of
tensors, with no model or session state, each the TensorFlow twin of a torch op in
:mod:`.torch_impl` (same conventions, same numbers up to float rounding).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from .objectives import LAYER_MAX_TEMPERATURE

__all__ = ["affine_sample", "gram_similarity", "objective_values", "redirected", "soft_max"]


def redirected(x: tf.Tensor, upper: float | None) -> tf.Tensor:
    """``clamp(x, 0, upper)`` whose gradient is redirected for images that would get none
    through this layer (see the torch backend's ``_RedirectedClamp``)."""

    @tf.custom_gradient
    def clamp(x: tf.Tensor) -> Any:
        if upper is None:
            y = tf.nn.relu(x)
        elif upper == 6.0:
            y = tf.nn.relu6(x)
        else:
            y = tf.clip_by_value(x, 0.0, upper)

        def grad(dy: Any) -> tf.Tensor:
            dy = tf.convert_to_tensor(dy)  # IndexedSlices when the objective gathers
            if upper is None:
                plain = tf.raw_ops.ReluGrad(gradients=dy, features=x)
            elif upper == 6.0:
                plain = tf.raw_ops.Relu6Grad(gradients=dy, features=x)
            else:
                plain = tf.where((x > 0) & (x < upper), dy, tf.zeros_like(dy))

            # A descent step moves x by -dy: dy > 0 pushes a negative x further down.
            outward = (x < 0) & (dy > 0)
            if upper is not None:
                outward = outward | ((x > upper) & (dy < 0))
            redirected = tf.where(outward, tf.zeros_like(dy), dy)
            flat = tf.reshape(tf.abs(plain), [tf.shape(plain)[0], -1])
            dead = tf.reduce_max(flat, axis=1) == 0
            rank = tf.rank(dy)
            dead = tf.reshape(dead, tf.concat([[-1], tf.ones([rank - 1], tf.int32)], 0))
            return tf.where(dead, redirected, plain)

        return y, grad

    return clamp(x)


def objective_values(
    outputs: list[tf.Tensor],
    group_keys: Sequence[tuple[str, int]],
    groups: tuple[tuple[tf.Tensor, ...], ...],
    k: tf.Tensor,
) -> tf.Tensor:
    """The ``(k,)`` objective values of a chunk's images: each group of resolved terms (one
    kind on one capture, as index arrays) read from the captured ``outputs``."""
    values = tf.zeros([k], tf.float32)
    later = []
    means: dict[int, tf.Tensor] = {}

    def channel_means(capture: int) -> tf.Tensor:
        """``(k, C)``: each image's spatial mean of each channel, once per capture (see the
        torch backend: read at (image, channel) pairs, the gradient is a dense broadcast;
        gathering the maps first measured ~0.7 ms per step of 8 images at 128 px in the
        gather gradient's UnsortedSegmentSum)."""
        if capture not in means:
            acts = tf.cast(outputs[capture], tf.float32)
            rank = acts.shape.rank
            if rank > 2:
                acts = tf.reduce_mean(acts, axis=list(range(1, rank - 1)))
            means[capture] = acts
        return means[capture]

    for (kind, capture), (image, channel, y, x, weight) in zip(group_keys, groups, strict=True):
        if kind == "channel":
            term = tf.gather_nd(channel_means(capture), tf.stack([image, channel], axis=1))
        elif kind == "neuron":
            acts = tf.cast(outputs[capture], tf.float32)
            term = tf.gather_nd(acts, tf.stack([image, y, x, channel], axis=1))
        elif kind == "diversity":
            acts = tf.cast(outputs[capture], tf.float32)
            later.append((gram_similarity(tf.gather(acts, image), channel), image, weight))
            continue
        elif kind in ("layer_mean", "layer_max"):
            picked = tf.gather(channel_means(capture), image)  # (m, C)
            if kind == "layer_mean":
                term = tf.reduce_mean(picked, axis=1)
            else:
                term = soft_max(picked, channel)
        else:  # layer: DeepDream
            picked = tf.gather(tf.cast(outputs[capture], tf.float32), image)
            term = tf.reduce_mean(tf.square(tf.reshape(picked, [tf.shape(picked)[0], -1])), axis=1)
        values = values + tf.math.unsorted_segment_sum(term * weight, image, k)
    # In units of the rest of the image's objective, as in the torch session.
    scale = tf.abs(tf.stop_gradient(values))
    for term, image, weight in later:
        scaled = term * weight * tf.gather(scale, image)
        values = values + tf.math.unsorted_segment_sum(scaled, image, k)
    return values


def soft_max(means: tf.Tensor, exclude: tf.Tensor | None = None) -> tf.Tensor:
    """Per row of ``(m, C)`` channel means, ``T * logsumexp(means / T)``; ``exclude``
    (``(m,)``, -1 for none) leaves one channel of each row out (see the torch backend's
    ``_soft_max``)."""
    scale = tf.abs(tf.stop_gradient(means))
    if exclude is not None:
        columns = tf.range(tf.shape(means)[1], dtype=exclude.dtype)
        left_out = tf.equal(columns[None, :], exclude[:, None])
        means = tf.where(left_out, tf.constant(-math.inf, means.dtype), means)
        scale = tf.where(left_out, tf.zeros_like(scale), scale)
    scale = tf.reduce_max(scale, axis=1, keepdims=True)
    temperature = tf.maximum(scale * LAYER_MAX_TEMPERATURE, 1e-12)
    return (temperature * tf.reduce_logsumexp(means / temperature, axis=1, keepdims=True))[:, 0]


def gram_similarity(acts: tf.Tensor, group: tf.Tensor) -> tf.Tensor:
    """Per image, the mean cosine similarity of its Gram matrix with those of the other
    images of its group (see the torch backend's ``_gram_similarity``)."""
    shape = tf.shape(acts)
    flat = tf.reshape(acts, [shape[0], -1, shape[-1]])  # (m, HW, C)
    flat = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    positions = tf.cast(tf.shape(flat)[1], tf.float32)
    gram = tf.matmul(flat, flat, transpose_a=True) / positions  # (m, C, C)
    gram = tf.math.l2_normalize(tf.reshape(gram, [shape[0], -1]), axis=1, epsilon=1e-24)
    similarity = tf.matmul(gram, gram, transpose_b=True)
    same = tf.logical_and(
        tf.equal(group[:, None], group[None, :]),
        tf.logical_not(tf.cast(tf.eye(tf.shape(group)[0]), tf.bool)),
    )
    same = tf.cast(same, tf.float32)
    partners = tf.maximum(tf.reduce_sum(same, axis=1), 1.0)
    return tf.reduce_sum(similarity * same, axis=1) / partners


@tf.custom_gradient
def as_complex(pairs: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """``(..., 2)`` float32 (real, imaginary) as ``(...)`` complex64, by a bitcast (the same
    bytes), with the gradient bitcast back: exactly ``tf.complex(pairs[..., 0], pairs[...,
    1])`` and its gradient (real and imaginary part of the incoming one). The two slices'
    gradients each fill a zero tensor and write every other element into it, which measured
    ~6.5 of the ~70 ms of a Keras step of 8 images at 128 px (one thread)."""

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return tf.bitcast(tf.cast(upstream, tf.complex64), tf.float32)

    return tf.bitcast(pairs, tf.complex64), grad


def affine_sample(image: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
    """Bilinear resampling of ``(k, H, W, C)`` images through ``(k, 2, 3)`` affine maps, in
    the convention of ``torch.nn.functional.affine_grid`` / ``grid_sample`` with
    ``align_corners=False`` and zero padding, applied to ``image - 0.5`` (so outside the
    image reads 0.5). Exact and differentiable.

    Written as one sparse matrix (4 weights per output pixel) times the flattened pixels: its
    gradient is the transposed product, one pass. Four gathers, as before, cost twice as much
    forward and backward (measured at 128 px, 8 images, one thread: 3.8 vs 1.9 ms of CPU per
    image), as each gather's gradient is a list of slices merged and scattered afterwards.

    The matrix is built with few ops (each is a pass over ``k * H * W`` positions; per-corner
    bounds checks, clips and a concatenation were ~2.4 of the 4.3 ms the view took forward,
    8 images at 128 px): the pixel positions of every view are one product of the maps with
    the ``(3, H * W)`` grid; the image gets a border of two pixels of 0.5 and positions are
    clipped into it, so every corner of every position is a pixel of the bordered image (a
    position clipped into the border has both neighbours in the border: 0.5, as outside the
    image) and the four corners are the top-left one plus fixed offsets. As the four weights
    of a position sum to 1, sampling the bordered image is sampling ``image - 0.5`` with zero
    padding, plus 0.5, without the two passes.
    """
    shape = tf.shape(image)
    k, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    xs = (2.0 * tf.range(w_f) + 1.0) / w_f - 1.0
    ys = (2.0 * tf.range(h_f) + 1.0) / h_f - 1.0
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")  # (H, W)
    flat_x = tf.reshape(grid_x, [-1])
    basis = tf.stack([flat_x, tf.reshape(grid_y, [-1]), tf.ones_like(flat_x)])  # (3, HW)
    # Normalized -> pixel coordinates (pixel centres at integers), folded into the maps:
    # p = (n + 1) * size / 2 - 1/2 for the x (size W) and y (size H) rows.
    half = tf.stack([w_f, h_f]) / 2.0  # (2,)
    maps = theta * half[None, :, None] + tf.pad(
        (half - 0.5)[None, :, None], [[0, 0], [0, 0], [2, 0]]
    )
    positions = tf.reshape(tf.matmul(tf.reshape(maps, [-1, 3]), basis), [k, 2, -1])  # (k, 2, HW)
    upper = tf.stack([w_f, h_f]) + 0.5
    positions = tf.clip_by_value(positions, -1.5, upper[None, :, None])
    corner = tf.floor(positions)
    frac = positions - corner  # (k, 2, HW): x then y
    corner = tf.cast(corner, tf.int32) + 2  # in the bordered image
    padded_h, padded_w = height + 4, width + 4
    base = tf.range(k)[:, None] * (padded_h * padded_w)
    top_left = base + corner[:, 1] * padded_w + corner[:, 0]  # (k, HW)
    # Corner-major (4, k * HW) entries: broadcasting over a leading axis (an inner axis of
    # 2 or 4 takes TensorFlow's slow broadcasting path).
    indices = _corner_pairs(tf.reshape(top_left, [-1]), tf.stack([0, 1, padded_w, padded_w + 1]))
    wx, wy = tf.reshape(frac[:, 0], [-1]), tf.reshape(frac[:, 1], [-1])
    vx, vy = 1.0 - wx, 1.0 - wy
    values = tf.concat([vy * vx, vy * wx, wy * vx, wy * wx], axis=0)
    pixels = k * height * width
    size = tf.cast(tf.stack([pixels, k * padded_h * padded_w]), tf.int64)

    @tf.custom_gradient
    def resample(flat: tf.Tensor) -> tuple[tf.Tensor, Any]:
        out = tf.raw_ops.SparseTensorDenseMatMul(
            a_indices=indices, a_values=values, a_shape=size, b=flat
        )

        def grad(upstream: tf.Tensor) -> tf.Tensor:
            # The pixels' gradient only: the weights are constants of the view.
            return tf.raw_ops.SparseTensorDenseMatMul(
                a_indices=indices, a_values=values, a_shape=size, b=upstream, adjoint_a=True
            )

        return out, grad

    bordered = tf.pad(image, [[0, 0], [2, 2], [2, 2], [0, 0]], constant_values=0.5)
    out = resample(tf.reshape(bordered, [-1, channels]))  # (k * H * W, C)
    return tf.reshape(out, shape)


def _corner_pairs(top_left: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """The ``(4 * n, 2)`` int32 (row, column) index pairs of a sparse matrix whose row ``j``
    has an entry in each column ``top_left[j] + offsets[c]`` (``top_left`` ``(n,)`` and
    ``offsets`` ``(4,)`` int32), corner-major: all rows for ``offsets[0]``, then ``[1]``...

    On a little-endian machine each pair is one int64 ``col * 2**32 + row``, bitcast to two
    int32 (the low word first), built on the ``n`` top-left columns before the offsets are
    added: interleaving two vectors with a stack on the last axis writes every other element,
    and a stack plus a transpose with an inner dimension of 2 is no faster (the transpose
    alone was ~2.9 of ~66 ms of a Keras step of 8 images at 128 px, one thread); casting and
    shifting all ``4 * n`` columns was ~0.8 ms of it.
    """
    n = tf.size(top_left)
    if sys.byteorder != "little":
        rows = tf.tile(tf.range(n), [4])
        cols = tf.reshape(top_left[None, :] + offsets[:, None], [-1])
        return tf.transpose(tf.stack([rows, cols]))
    high = tf.bitwise.left_shift(tf.cast(top_left, tf.int64), np.int64(32))
    pairs = high + tf.range(tf.cast(n, tf.int64), dtype=tf.int64)
    shifts = tf.bitwise.left_shift(tf.cast(offsets, tf.int64), np.int64(32))
    return tf.bitcast(tf.reshape(pairs[None, :] + shifts[:, None], [-1]), tf.int32)
