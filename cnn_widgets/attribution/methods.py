"""The attribution methods as numpy on top of one adapter primitive,
:meth:`Adapter.gradients <cnn_widgets.backends.base.Adapter.gradients>`: every method is written
once for both frameworks.

CAM methods weigh a layer's feature maps ``A`` (``(C, h, w)``) by the gradient ``G`` of the
target with respect to them; input-gradient methods differentiate with respect to the image.
Noise samples and integration steps travel through the model in batches.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import choices
from ..backends import Adapter, LayerInfo

__all__ = ["CAM_METHODS", "DEFAULTS", "Computed", "compute", "resize_bilinear"]

CAM_METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "scorecam", "guided_gradcam")
"""The methods that work on a layer (``layer=`` applies to them only)."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "gradcam": {},
    "gradcam++": {},
    "layercam": {},
    "hirescam": {},
    # Wang et al. 2020 weigh every channel; k limits it to the k most active ones.
    "scorecam": {"k": None, "batch_size": 32},
    "saliency": {},
    # Smilkov et al. 2017: 50 samples, noise 10-20 % of the input range. Batches of 8: per
    # image, a forward and backward pass of EfficientNet-Lite0 at 224 px and one thread took
    # 64 ms in batches of 8, 73 in 4, 86 in 13, 97 in 16 (larger batches leave the caches).
    "smoothgrad": {"samples": 50, "noise": 0.15, "seed": 0, "batch_size": 8},
    # Sundararajan et al. 2017: a black baseline, 20-300 steps (trapezoidal rule here);
    # baseline="blur" starts from the image blurred (as insertion does), not from black.
    "integrated_gradients": {"steps": 50, "baseline": None, "batch_size": 8},
    # Springenberg et al. 2015; Selvaraju et al. 2017 (guided backprop x Grad-CAM).
    "guided_backprop": {},
    "guided_gradcam": {},
}
"""Each method's options and their defaults (from its paper)."""


@dataclass(frozen=True)
class Computed:
    """One image's result before it becomes an :class:`~cnn_widgets.attribution.Attribution`."""

    raw: np.ndarray
    map: np.ndarray
    target: int | None
    layer: str | None
    score: float


def compute(
    adapter: Adapter,
    batch: np.ndarray,
    method: str,
    target: Any,
    layer: Any,
    options: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> list[Computed]:
    """``method`` for every image of ``batch`` (``(N, C, H, W)``, [0, 1]).

    ``progress(done, total)`` is called after each batch of noise samples, integration steps
    or Score-CAM masks; it may raise to stop the work (a widget's lane does)."""
    choices.check(choices.ATTRIBUTION_METHODS, method, "method")
    opts = _options(method, options)
    if method in CAM_METHODS:
        return _cam(adapter, batch, method, target, layer, opts, progress)
    if layer is not None:
        raise ValueError(
            f"layer= applies to the CAM methods ({', '.join(CAM_METHODS)}) only; "
            f"{method!r} attributes to the input"
        )
    out = []
    for image, tgt in zip(batch, _per_image(target, len(batch)), strict=True):
        out.append(_input_method(adapter, image, method, tgt, opts, progress))
    return out


def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    known = DEFAULTS[method]
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(known) if known else "none"
        raise TypeError(f"{method!r} takes no option {', '.join(unknown)}; its options: {valid}")
    opts = {**known, **options}
    for name in ("samples", "steps", "batch_size"):
        if name in opts and (
            isinstance(opts[name], bool) or not isinstance(opts[name], (int, np.integer))
            or opts[name] < 1
        ):
            raise ValueError(f"{name} must be an int >= 1, got {opts[name]!r}")
    if method == "integrated_gradients" and opts["steps"] < 2:
        raise ValueError(f"steps must be >= 2 for the trapezoidal rule, got {opts['steps']}")
    if method == "smoothgrad" and not (
        isinstance(opts["noise"], (int, float)) and 0 <= opts["noise"] <= 1
    ):
        raise ValueError(f"noise is a fraction of the input range in [0, 1], got {opts['noise']!r}")
    if method == "scorecam" and opts["k"] is not None and (
        isinstance(opts["k"], bool) or not isinstance(opts["k"], (int, np.integer))
        or opts["k"] < 1
    ):
        raise ValueError(f"k must be None (every channel) or an int >= 1, got {opts['k']!r}")
    return opts


def _per_image(target: Any, n: int) -> list[Any]:
    if target is None or callable(target) or isinstance(target, (int, np.integer)):
        return [target] * n
    targets = list(target)
    if len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images")
    return targets


# -- CAM methods -----------------------------------------------------------------------------
def cam_layers(adapter: Adapter) -> list[LayerInfo]:
    """The layers a CAM method can use: those that ran up to the output layer with a
    ``(C, H, W)`` output larger than one pixel, in forward order."""
    output = adapter.output_layer()
    return [
        i
        for i in adapter.layers()[: output.index + 1]
        if i.ran and i.is_spatial and i.output_shape[1] * i.output_shape[2] > 1
    ]


def _cam(
    adapter: Adapter,
    batch: np.ndarray,
    method: str,
    target: Any,
    layer: Any,
    opts: dict,
    progress: Callable[[int, int], None] | None,
) -> list[Computed]:
    spatial = cam_layers(adapter)
    if not spatial:
        raise ValueError("this model has no layer with a (C, H, W) output for a CAM method")
    if layer is None:  # the last spatial layers; the last one the target depends on wins
        candidates = [i.name for i in spatial[-4:]]
    else:
        info = adapter.layer(layer)
        if info.name not in {i.name for i in spatial}:
            names = ", ".join(repr(i.name) for i in spatial[-12:])
            raise ValueError(
                f"layer {info.name!r} has output {info.output_shape}; CAM methods need a layer "
                f"with a (C, H, W) output, such as {names}"
            )
        candidates = [info.name]
    grads = adapter.gradients(
        batch, candidates, _batch_target(target, len(batch)), input_grad=False
    )
    chosen = candidates[-1]
    if layer is None:
        for name in reversed(candidates):
            if np.any(grads.layer_grads[name]):
                chosen = name
                break
    acts, grad = grads.activations[chosen], grads.layer_grads[chosen]
    classes = _classes(grads.logits, target, len(batch))
    if method == "scorecam":
        cams = _scorecam(adapter, batch, acts, classes, target, opts, progress)
    else:
        cams = _CAM_FORMULAS["gradcam" if method == "guided_gradcam" else method](acts, grad)
    maps = resize_bilinear(cams, batch.shape[2:])
    if method == "guided_gradcam":  # guided backprop weighted by the upsampled Grad-CAM
        guided = adapter.gradients(batch, (), _batch_target(target, len(batch)), guided=True)
        raws = guided.input_grad * maps[:, None]
        return [
            Computed(raws[i], np.abs(raws[i]).max(axis=0), classes[i], chosen, float(s))
            for i, s in enumerate(grads.scores)
        ]
    return [
        Computed(cams[i], maps[i], classes[i], chosen, float(grads.scores[i]))
        for i in range(len(batch))
    ]


def _gradcam(acts: np.ndarray, grad: np.ndarray) -> np.ndarray:
    weights = grad.mean(axis=(2, 3), keepdims=True)
    return np.maximum((weights * acts).sum(axis=1), 0)


def _gradcam_pp(acts: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Chattopadhay et al. 2018 as in the authors' code: ``alpha = G² / (2 G² + G³ ΣA)``,
    normalized to sum 1 over positions, weights ``Σ alpha · relu(G)``. The code's factor
    ``exp(score)`` is left out: a positive constant per image, it scales the whole map (and
    overflows float32 for logits above ~88)."""
    g2, g3 = grad**2, grad**3
    denominator = 2 * g2 + acts.sum(axis=(2, 3), keepdims=True) * g3
    usable = (g2 != 0) & (denominator != 0)
    alpha = np.where(usable, g2 / np.where(usable, denominator, 1), 0)
    total = alpha.sum(axis=(2, 3), keepdims=True)
    alpha = alpha / np.where(total != 0, total, 1)
    weights = (alpha * np.maximum(grad, 0)).sum(axis=(2, 3), keepdims=True)
    return np.maximum((weights * acts).sum(axis=1), 0)


def _layercam(acts: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return np.maximum((np.maximum(grad, 0) * acts).sum(axis=1), 0)


def _hirescam(acts: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return np.maximum((grad * acts).sum(axis=1), 0)


_CAM_FORMULAS = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_pp,
    "layercam": _layercam,
    "hirescam": _hirescam,
}


def _scorecam(
    adapter: Adapter,
    batch: np.ndarray,
    acts: np.ndarray,
    classes: list[int | None],
    target: Any,
    opts: dict,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Wang et al. 2020: each channel, upsampled and scaled to [0, 1], masks the image; the
    softmax score of the target class for the masked image is the channel's weight."""
    cams = []
    for i, image in enumerate(batch):
        a = acts[i]
        order = np.argsort(-a.reshape(len(a), -1).max(axis=1), kind="stable")
        keep = order if opts["k"] is None else order[: opts["k"]]
        masks = resize_bilinear(a[keep], image.shape[1:])
        low = masks.reshape(len(keep), -1).min(axis=1)[:, None, None]
        high = masks.reshape(len(keep), -1).max(axis=1)[:, None, None]
        span = high - low
        masks = np.where(span > 0, (masks - low) / np.where(span > 0, span, 1), 0)
        weights = np.empty(len(keep), np.float32)
        tgt = classes[i] if classes[i] is not None else target
        for start in range(0, len(keep), opts["batch_size"]):
            chunk = masks[start : start + opts["batch_size"]]
            masked = image[None] * chunk[:, None].astype(np.float32)
            out = adapter.gradients(masked, (), _batch_target(tgt, len(masked)), backward=False)
            if callable(tgt):
                weights[start : start + len(chunk)] = out.scores
            else:
                logits = out.logits.reshape(len(chunk), -1).astype(np.float64)
                probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs /= probs.sum(axis=1, keepdims=True)
                weights[start : start + len(chunk)] = probs[:, tgt]
            if progress is not None:
                progress(start + len(chunk), len(keep))
        cams.append(np.maximum((weights[:, None, None] * a[keep]).sum(axis=0), 0))
    return np.stack(cams).astype(np.float32)


def _batch_target(target: Any, n: int) -> Any:
    if target is None or callable(target) or isinstance(target, (int, np.integer)):
        return target
    return np.asarray(target)


def _classes(logits: np.ndarray, target: Any, n: int) -> list[int | None]:
    if callable(target):
        return [None] * n
    if target is None:
        return [int(c) for c in logits.reshape(n, -1).argmax(axis=1)]
    if isinstance(target, (int, np.integer)):
        return [int(target)] * n
    return [int(t) for t in target]


# -- input-gradient methods ------------------------------------------------------------------
def _input_method(
    adapter: Adapter,
    image: np.ndarray,
    method: str,
    target: Any,
    opts: dict,
    progress: Callable[[int, int], None] | None,
) -> Computed:
    # SmoothGrad and IG need only the image's class and score here: a forward pass.
    needs_grad = method in ("saliency", "guided_backprop")
    first = adapter.gradients(
        image[None], (), target, backward=needs_grad, guided=method == "guided_backprop"
    )
    tgt = None if callable(target) else _classes(first.logits, target, 1)[0]
    fixed = target if tgt is None else tgt  # noisy or scaled images keep the image's class
    score = float(first.scores[0])
    if method in ("saliency", "guided_backprop"):
        raw = first.input_grad[0]
        return Computed(raw, np.abs(raw).max(axis=0), tgt, None, score)
    if method == "smoothgrad":
        rng = np.random.default_rng(opts["seed"])
        sigma = opts["noise"] * float(image.max() - image.min())
        # float32 draws: half the bytes and time of float64 ones cast down
        noise = rng.standard_normal((opts["samples"], *image.shape), dtype=np.float32)
        noisy = image[None] + noise * np.float32(sigma)
        raw = _summed_grads(adapter, noisy, fixed, opts["batch_size"], progress) / opts["samples"]
        return Computed(raw, np.abs(raw).max(axis=0), tgt, None, score)
    baseline = _baseline(opts["baseline"], image)
    steps = opts["steps"]
    alphas = np.linspace(0, 1, steps, dtype=np.float64)
    weights = np.full(steps, 1 / (steps - 1))
    weights[[0, -1]] /= 2  # trapezoidal rule: the ends count half
    path = (baseline[None] + alphas[:, None, None, None] * (image - baseline)[None]).astype(
        np.float32
    )
    summed = _summed_grads(adapter, path, fixed, opts["batch_size"], progress, weights)
    raw = ((image - baseline) * summed).astype(np.float32)
    return Computed(raw, raw.sum(axis=0), tgt, None, score)


def _baseline(baseline: Any, image: np.ndarray) -> np.ndarray:
    if baseline is None:
        return np.zeros_like(image)
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(
                f"baseline must be None (black), 'blur', a number or a (C, H, W) array; "
                f"got {baseline!r}"
            )
        from .faithfulness import blurred  # the blur insertion starts from

        return blurred(image).astype(np.float32)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return np.full_like(image, float(baseline))
    array = np.asarray(baseline, np.float32)
    if array.shape != image.shape:
        raise ValueError(
            f"baseline must be None (black), 'blur', a number or an array of the image's shape "
            f"{image.shape} (C, H, W); got shape {array.shape}"
        )
    return array


def _summed_grads(
    adapter: Adapter,
    inputs: np.ndarray,
    target: Any,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    total = np.zeros(inputs.shape[1:], np.float64)
    # Chunks of near-equal size, none above batch_size (50 by 8: 8, 7, 7, ... not 8 x 6 + 2:
    # a chunk of 2 costs more per image than one of 7).
    chunks = -(-len(inputs) // batch_size)
    bounds = np.linspace(0, len(inputs), chunks + 1).round().astype(int)
    for start, stop in itertools.pairwise(bounds):
        chunk = inputs[start:stop]
        grads = adapter.gradients(chunk, (), _batch_target(target, len(chunk))).input_grad
        w = np.ones(len(chunk)) if weights is None else weights[start:stop]
        total += np.tensordot(w, grads.astype(np.float64), axes=1)
        if progress is not None:
            progress(int(stop), len(inputs))
    return total.astype(np.float32)


# -- resizing --------------------------------------------------------------------------------
def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` -> ``(N, H, W)`` float32, bilinear with half-pixel centres (what torch's
    ``interpolate(..., align_corners=False)`` and TensorFlow's ``resize`` compute): two
    matrix products, ``R @ map @ Cᵀ``, with the interpolation matrices cached per size."""
    maps = np.asarray(maps, np.float32)
    rows = _interpolation_matrix(maps.shape[1], int(size[0]))
    cols = _interpolation_matrix(maps.shape[2], int(size[1]))
    return np.matmul(rows, maps @ cols.T)


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    matrix = np.zeros((n_out, n_in), np.float32)
    matrix[np.arange(n_out), low] += 1 - frac
    matrix[np.arange(n_out), high] += frac
    matrix.setflags(write=False)  # shared through the cache
    return matrix
