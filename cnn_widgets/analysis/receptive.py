"""The receptive field of a layer's output positions, measured by perturbing the input.

Measured, not derived from layer arithmetic, so it is right for any architecture both backends
can run (branches, residual sums, custom layers); see :func:`receptive_field`.
:func:`~cnn_widgets.analysis.top_images.top_images` crops its images to it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import LayerInfo, LayerKey

__all__ = ["ReceptiveField", "receptive_field"]

Band = tuple[int, int, int]  # (axis, first, last): rows (axis 0) or columns (1) of a probe


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a position of a layer's output can see, per axis.

    Output row ``i`` sees input rows ``offset[0] + i * stride[0]`` to
    ``offset[0] + i * stride[0] + size[0] - 1`` (clipped to the image); columns likewise.

    Attributes
    ----------
    size, stride, offset:
        ``(rows, cols)`` each, in input pixels. ``offset`` may be negative (padding).
    input_size, output_size:
        ``(H, W)`` of the model input and of the layer's map it was measured for.
    whole:
        ``(rows, cols)``: True where every output position sees the whole axis as far as the
        measurement can tell (the field at the map's centre already reaches an image border,
        or the map is one position wide); ``size`` then is the input size, ``offset`` 0 and
        ``stride`` the input-to-output size ratio.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    whole: tuple[bool, bool] = (False, False)

    def span(self, position: int, axis: int) -> tuple[int, int]:
        """``(first, last)`` input pixel seen by output ``position`` along ``axis``,
        clipped to the image."""
        if self.whole[axis]:
            return (0, self.input_size[axis] - 1)
        start = self.offset[axis] + position * self.stride[axis]
        stop = start + self.size[axis] - 1
        return (max(start, 0), min(stop, self.input_size[axis] - 1))

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``: a window of the full field size (at most the image) around
        output ``(row, col)``, moved inside the image where the field crosses a border.
        Every window has the same size, so crops of it stack."""
        box = []
        for axis, position in ((1, col), (0, row)):
            length = min(self.size[axis], self.input_size[axis])
            if self.whole[axis]:
                start = 0
            else:
                start = self.offset[axis] + position * self.stride[axis]
                start = min(max(start, 0), self.input_size[axis] - length)
            box.append((start, length))
        (x, w), (y, h) = box
        return (x, y, w, h)


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], ReceptiveField]] = (
    weakref.WeakKeyDictionary()
)
_PROBE_VALUE = 1e3  # far outside [0, 1]: a change it causes dwarfs rounding noise


def receptive_field(
    model: Any, layer: LayerKey | LayerInfo, input_size: tuple[int, int] | None = None
) -> ReceptiveField:
    """Measure the receptive field of a layer's output positions by perturbing the input.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one. Left untouched.
    layer:
        Name or index of a layer with a ``(C, H, W)`` output.
    input_size:
        ``(H, W)`` of the input; default the model's own input size.

    Returns
    -------
    ReceptiveField

    Notes
    -----
    For the map's centre, a bisection finds per axis the first and the last input row (column)
    whose perturbation changes any channel at that position; one more edge, of the centre's
    diagonal neighbour, gives the stride. Each probe perturbs a band of rows
    (columns) twice, in two images of one batch: once with NaN, which spreads through every
    sum, so even a contribution through tiny weights is seen; once with a large finite
    value, for operations that drop NaN (TensorFlow's max pooling does). The result is the
    exact, theoretical field of conv/pool geometry, for sequential and branching networks
    alike, at a cost of at most about ``11 + 13 * log2(max(H, W))`` images' forward passes up
    to the layer, fewer in practice (measured once per model, layer and input size, then
    cached).

    When the field of the map's centre reaches an image border (checked first, in one pass,
    so deep layers cost no search), the field is taken as the whole axis. Vector outputs
    (global pooling, dense layers) see the whole image.
    """
    adapter = adapt(model)
    info = adapter.layer(layer)
    size = input_size or adapter.spec.spatial
    if size is None:
        raise ValueError(
            "the model has no fixed input size: pass input_size=(H, W), or adapt the model "
            "with input_shape=(C, H, W)"
        )
    size = (int(size[0]), int(size[1]))
    # Preprocessing is part of the key: a callable one could be spatial (a blur, a crop).
    key = (info.name, adapter.spec.channels, size, adapter.spec.preprocess)
    cache = _CACHE.setdefault(adapter.model, {})
    if key not in cache:
        cache[key] = _measure(adapter, info.name, size)
    return cache[key]


def _measure(adapter: Adapter, name: str, size: tuple[int, int]) -> ReceptiveField:
    rng = np.random.default_rng(0)
    shape = (adapter.spec.channels, *size)
    base = rng.random(shape, dtype=np.float32)
    large = (_PROBE_VALUE * (1.0 + rng.random(shape))).astype(np.float32)

    def run(bands: list[Band]) -> tuple[dict[Band, np.ndarray], np.ndarray]:
        """Outputs for perturbing each ``(axis, first, last)`` band of ``base``: two images
        per band, one filled with NaN and one with large values; the unperturbed image goes
        first in the same batch, so both are computed alike."""
        images = [base]
        for axis, first, last in bands:
            region = [slice(None)] * 3
            region[axis + 1] = slice(first, last + 1)
            with_nan = base.copy()
            with_nan[tuple(region)] = np.nan
            with_large = base.copy()
            with_large[tuple(region)] = large[tuple(region)]
            images += [with_nan, with_large]
        out = adapter.activations(np.stack(images), [name])[name]
        return {band: out[1 + 2 * i : 3 + 2 * i] for i, band in enumerate(bands)}, out[0]

    whole_image = (0, 0, size[0] - 1)  # every row perturbed: the whole image
    # The first and last row and column: if one of them reaches the map's centre, that axis
    # needs no search (see below), which saves a deep layer's many full-depth passes.
    borders = [(axis, edge, edge) for axis in (0, 1) for edge in (0, size[axis] - 1)]
    outputs, base_out = run([whole_image, *borders])
    if base_out.ndim != 3:  # a vector: every entry may see every pixel
        return ReceptiveField(size, size, (0, 0), size, (1, 1), (True, True))
    out_size = (int(base_out.shape[1]), int(base_out.shape[2]))
    finite = base_out[np.isfinite(base_out)]
    # Rounding noise is ~1e-7 of the output's scale; a perturbation's effect is far larger.
    tol = 1e-4 * float(np.abs(finite).max(initial=0.0)) + 1e-30

    def changed(perturbed: np.ndarray, position: tuple[int, int]) -> bool:
        before = base_out[:, position[0], position[1]]
        after = perturbed[:, :, position[0], position[1]]
        moved = ~(np.abs(after - before) <= tol)  # NaN counts as moved
        return bool((moved & np.isfinite(before)).any())

    centre = (out_size[0] // 2, out_size[1] // 2)
    neighbour = (
        centre[0] + 1 if centre[0] + 1 < out_size[0] else centre[0] - 1,
        centre[1] + 1 if centre[1] + 1 < out_size[1] else centre[1] - 1,
    )
    # One bisection per (axis, side, position): side 0 finds the first row (column) that
    # matters by perturbing everything up to a cut, side 1 the last one from the other end.
    touches_border = [
        any(changed(outputs[band], centre) for band in borders if band[0] == axis)
        for axis in (0, 1)
    ]
    searches = []
    for axis in (0, 1):
        if out_size[axis] > 1 and not touches_border[axis]:
            # The neighbour only gives the stride: one of its edges is enough, the one on
            # the far side from the centre, which cannot be clipped when the centre's is not.
            ahead = neighbour[axis] > centre[axis]
            searches += [(axis, 0, centre), (axis, 1, centre), (axis, 0 if ahead else 1, neighbour)]
    # Invariant: side 0: perturbing [0, hi] changes the position, [0, lo] does not;
    # side 1: perturbing [lo, end] changes it, [hi, end] does not.
    bounds = {s: [-1, size[s[0]] - 1] if s[1] == 0 else [0, size[s[0]]] for s in searches}
    reached = {s: changed(outputs[whole_image], s[2]) for s in searches}
    while True:
        todo = [s for s in searches if reached[s] and bounds[s][1] - bounds[s][0] > 1]
        if not todo:
            break
        bands = {}
        for s in todo:
            axis, side, _ = s
            mid = (bounds[s][0] + bounds[s][1]) // 2
            bands[s] = (axis, 0, mid) if side == 0 else (axis, mid, size[axis] - 1)
        # Searches of one side start alike and share their bands until they part.
        outputs, _ = run(list(dict.fromkeys(bands.values())))
        for s, band in bands.items():
            hit = changed(outputs[band], s[2])
            mid = band[2] if s[1] == 0 else band[1]
            if s[1] == 0:
                bounds[s][1 if hit else 0] = mid
            else:
                bounds[s][0 if hit else 1] = mid

    axes = []
    for axis in (0, 1):
        n_in, n_out = size[axis], out_size[axis]
        whole = (n_in, max(round(n_in / n_out), 1), 0, True)
        if touches_border[axis]:
            # The centre's field reaches a border: it is wider than about half the image, so
            # crops take the whole axis (the true field may stick out on both sides).
            axes.append(whole)
            continue
        if n_out == 1 or not all(reached[(axis, side, centre)] for side in (0, 1)):
            # One position wide, or no input row changes the centre (a dead layer): the
            # measurement cannot narrow anything down.
            axes.append(whole)
            continue
        first = {p: bounds[(axis, 0, p)][1] for p in (centre, neighbour) if (axis, 0, p) in bounds}
        last = {p: bounds[(axis, 1, p)][0] for p in (centre, neighbour) if (axis, 1, p) in bounds}
        if neighbour[axis] > centre[axis]:
            search, stride = (axis, 0, neighbour), first[neighbour] - first[centre]
        else:
            search, stride = (axis, 1, neighbour), last[centre] - last[neighbour]
        if not reached[search]:
            stride = round(n_in / n_out)  # the neighbour sees nothing: estimate
        stride = max(int(stride), 1)  # < 1 only after upsampling, where fields overlap
        span = last[centre] - first[centre] + 1
        axes.append((span, stride, first[centre] - centre[axis] * stride, False))
    (rows, cols) = axes
    return ReceptiveField(
        size=(rows[0], cols[0]),
        stride=(rows[1], cols[1]),
        offset=(rows[2], cols[2]),
        input_size=size,
        output_size=out_size,
        whole=(rows[3], cols[3]),
    )
