"""Map stacks of filters or feature maps to float32 values in ``[0, 1]``.

Every function takes a *stack*: ``(n, h, w)`` single-channel pictures or ``(n, h, w, 3)``
colour ones (``axis_channels=True``, the default), or one picture ``(h, w)`` / ``(h, w, 3)``
(``axis_channels=False``). Statistics ignore NaN and +-Inf; those pixels come back as 0 and are
reported in a mask so a view can paint them in a marker colour instead of hiding them.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import choices

MODES = (*choices.values(choices.NORMALIZATIONS), choices.RAW)

#: ``std`` mode, the Keras ``deprocess_image`` recipe: ``(x - mean) / (std + eps) * 0.1 + 0.5``.
STD_EPS = 1e-5
STD_SPREAD = 0.1


def normalize(
    arrays: np.ndarray,
    mode: str = "layer",
    *,
    axis_channels: bool = True,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Scale a stack of pictures to float32 in ``[0, 1]``.

    Parameters
    ----------
    arrays:
        ``(n, h, w)`` or ``(n, h, w, 3)`` when ``axis_channels`` is true, else one picture
        ``(h, w)`` or ``(h, w, 3)``. Any real dtype; the input is never modified.
    mode:
        ``"layer"``: one min/max for the whole stack, so items stay comparable.
        ``"channel"``: each item stretched by its own min/max (shows the pattern of weak
        channels, hides their strength).
        ``"symmetric"``: zero maps to 0.5 and ``max |x|`` over the stack to 0 or 1; for
        signed weights, where the sign matters.
        ``"std"``: per item ``(x - mean) / (std + 1e-5) * 0.1 + 0.5``, clipped (the Keras
        ``deprocess_image`` recipe; robust to a few outliers).
        ``"none"``: values are already in ``[0, 1]``; only clipped.
    axis_channels:
        True: the first axis indexes items (channels, filters) and ``"channel"``/``"std"``
        compute statistics per item. False: the whole array is one picture.
    reference:
        Take the statistics of ``"layer"`` and ``"symmetric"`` from this array instead (e.g.
        the whole layer while ``arrays`` is one page of its channels), so colours do not change
        from page to page. Values outside the reference range are clipped. Ignored by the
        per-item modes and ``"none"``.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``arrays``, values in ``[0, 1]``; non-finite inputs give 0.

    Notes
    -----
    A constant item (or stack, for ``"layer"``) has no contrast to show: ``"layer"`` and
    ``"channel"`` map it to 0 (the dark end, like an all-zero ReLU map), ``"std"`` to 0.5.
    ``"symmetric"`` keeps the sign: all zeros give 0.5, a positive constant 1, a negative one 0.
    """
    return _normalized(arrays, mode, axis_channels=axis_channels, reference=reference)[0]


def _normalized(
    arrays: np.ndarray,
    mode: str,
    *,
    axis_channels: bool = True,
    reference: np.ndarray | None = None,
    top: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The shared worker: values scaled to ``[0, top]`` and a mask, ``None`` when all finite.

    ``top`` lets the views scale straight to palette indices without another pass.
    """
    if mode not in MODES:
        raise ValueError(f"normalization must be one of {MODES}; got {mode!r}")
    x = _as_real(arrays)
    if x.size == 0:
        return np.zeros(x.shape, np.float32), None
    colour = _is_colour(x, axis_channels)
    # min/max are needed by most modes anyway and are NaN/Inf exactly when the data has some,
    # so they double as the cheap "is everything finite?" test.
    lo, hi = x.min(), x.max()
    if np.isfinite(lo) and np.isfinite(hi):
        finite = None
        mask = None
    else:
        finite = np.isfinite(x)
        mask = ~finite.all(axis=-1) if colour else ~finite

    shift, scale, offset = _coefficients(x, mode, axis_channels, reference, finite, lo, hi)

    out = np.subtract(x, shift, dtype=np.float32) if shift is not None else x.astype(np.float32)
    if np.ndim(scale) == 0:
        out *= np.float32(top * scale)
    else:
        out *= (top * scale).astype(np.float32)
    if offset:
        out += np.float32(offset * top)
    # Rounding can leave values a hair outside the range; std/none/reference need the clip anyway.
    np.clip(out, 0.0, top, out=out)
    if mask is not None:
        # Inf - Inf or Inf * 0 produced NaN here: give those pixels a defined value.
        out[mask] = 0.0
    return out, mask


def _coefficients(
    x: np.ndarray,
    mode: str,
    axis_channels: bool,
    reference: np.ndarray | None,
    finite: np.ndarray | None,
    lo: np.floating,
    hi: np.floating,
) -> tuple[np.ndarray | float | None, np.ndarray | float, float]:
    """Return ``(shift, scale, offset)`` with ``out = (x - shift) * scale + offset``."""
    if mode == "none":
        return None, 1.0, 0.0
    if mode in ("layer", "symmetric"):
        if reference is not None:
            ref = _as_real(reference)
            lo, hi = ref.min(), ref.max()
            if not (np.isfinite(lo) and np.isfinite(hi)):
                lo, hi = _finite_min_max(ref, np.isfinite(ref))
        elif finite is not None:
            lo, hi = _finite_min_max(x, finite)
        lo, hi = float(lo), float(hi)
        if mode == "layer":
            return lo, _safe_inverse(hi - lo), 0.0
        return None, 0.5 * _safe_inverse(max(abs(lo), abs(hi))), 0.5

    # Per-item modes: statistics over every axis but the first (or over everything).
    items = x.reshape(x.shape[0] if axis_channels else 1, -1)
    stat_shape = (items.shape[0],) + (1,) * (x.ndim - 1) if axis_channels else ()
    if finite is not None:
        items = np.where(finite.reshape(items.shape), items, np.nan)
    with warnings.catch_warnings():
        # An item with no finite value at all yields NaN statistics: handled just below.
        warnings.simplefilter("ignore", RuntimeWarning)
        if mode == "channel":
            lo_i = np.nanmin(items, axis=1) if finite is not None else items.min(axis=1)
            hi_i = np.nanmax(items, axis=1) if finite is not None else items.max(axis=1)
        else:
            mean_i = np.nanmean(items, axis=1) if finite is not None else items.mean(axis=1)
            std_i = np.nanstd(items, axis=1) if finite is not None else items.std(axis=1)
    if mode == "channel":
        lo_i = np.nan_to_num(lo_i.astype(np.float64))
        span = np.nan_to_num(hi_i.astype(np.float64)) - lo_i
        scale_i = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
        return lo_i.reshape(stat_shape), scale_i.reshape(stat_shape), 0.0
    mean_i = np.nan_to_num(mean_i.astype(np.float64))
    scale_i = STD_SPREAD / (np.nan_to_num(std_i.astype(np.float64)) + STD_EPS)
    return mean_i.reshape(stat_shape), scale_i.reshape(stat_shape), 0.5


def _finite_min_max(x: np.ndarray, finite: np.ndarray) -> tuple[float, float]:
    values = x[finite]
    if values.size == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def _safe_inverse(span: float) -> float:
    return 1.0 / span if span > 0 and np.isfinite(span) else 0.0


def _as_real(arrays: np.ndarray) -> np.ndarray:
    x = np.asarray(arrays)
    if x.dtype.kind == "f":
        return x
    if x.dtype.kind in "biu":
        return x.astype(np.float32)
    raise TypeError(f"expected a real-valued array, got dtype {x.dtype}")


def _is_colour(x: np.ndarray, axis_channels: bool) -> bool:
    return x.ndim == (4 if axis_channels else 3)
