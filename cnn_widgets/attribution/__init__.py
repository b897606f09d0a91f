"""Where is the model looking: the Grad-CAM family and gradient methods for both frameworks.

Every method is written once, in numpy, on top of one adapter primitive
(:meth:`Adapter.gradients <cnn_widgets.backends.base.Adapter.gradients>`: the chosen layers'
outputs and the gradients of a target with respect to them and to the image, in one pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..images import load_image
from .faithfulness import Faithfulness, deletion_insertion
from .methods import CAM_METHODS, DEFAULTS, cam_layers, compute
from .result import Attribution, overlay
from .sanity import SanityReport, sanity_check, spearman

__all__ = [
    "CAM_METHODS",
    "DEFAULTS",
    "Attribution",
    "Faithfulness",
    "SanityReport",
    "attribution",
    "cam_layers",
    "deletion_insertion",
    "overlay",
    "plot_attribution",
    "sanity_check",
    "spearman",
]

_BATCH = 16  # images per pass for CAM methods and saliency over a list of images


def attribution(
    model: Any,
    image: Any,
    *,
    method: str = "gradcam",
    target: int | Callable[[Any], Any] | None = None,
    layer: str | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Attribution | list[Attribution]:
    """Which parts of ``image`` made the model give its score to ``target``.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one.
    image:
        Anything :func:`cnn_widgets.prepare_image` takes; a list of them (or an ``(N, ...)``
        array of 4 dimensions) gives a list of results, computed in batches.
    method:
        ``"gradcam"`` (Selvaraju et al. 2017), ``"gradcam++"`` (Chattopadhay et al. 2018),
        ``"layercam"`` (Jiang et al. 2021), ``"hirescam"`` (Draelos & Carin 2020),
        ``"scorecam"`` (Wang et al. 2020; options ``k=None`` — every channel, or the ``k``
        most active — and ``batch_size=32``), ``"saliency"`` (Simonyan et al. 2014: max
        ``|∂score/∂input|`` over channels), ``"smoothgrad"`` (Smilkov et al. 2017; options
        ``samples=50``, ``noise=0.15`` of the image's value range, ``seed=0``,
        ``batch_size=8``) or ``"integrated_gradients"`` (Sundararajan et al. 2017; options
        ``steps=50`` on the trapezoidal rule, ``baseline=None`` — black —, ``"blur"`` — the
        image blurred, as :func:`deletion_insertion` inserts into — or a number or a
        ``(C, H, W)`` array, ``batch_size=8``), ``"guided_backprop"`` (Springenberg et al.
        2015: the gradient with only positive values passed back through every ReLU/ReLU6;
        it fails the sanity check, see :func:`sanity_check`) or ``"guided_gradcam"``
        (Selvaraju et al. 2017: guided backprop times the upsampled Grad-CAM; uses
        ``layer``; ``raw`` is ``(C, H, W)``).
    target:
        None: each image's top class. An int: that class's logit (never the softmax
        probability: a model ending in a softmax is read before it). A callable for anything
        else: it receives the model's output for the batch as a framework tensor ``(N, ...)``
        and returns ``(N,)`` or a scalar; ``Attribution.target`` is then None.
    layer:
        CAM methods only: a name or an index; None picks the last layer with a ``(C, H, W)``
        output that the target depends on.
    progress:
        ``progress(done, total)`` after each batch of a long method; it may raise to stop.

    Returns
    -------
    Attribution, or a list of them for a list of images.

    Raises
    ------
    ValueError
        An unknown method (the valid ones are listed), a class out of range, a layer without
        a spatial output for a CAM method, a bad option value.
    TypeError
        An unknown option, or a target callable whose result is not ``(N,)`` or a scalar.
    """
    adapter = model if isinstance(model, Adapter) else adapt(model)
    images, single = _images(adapter, image)
    computed = []
    step = _BATCH if method in CAM_METHODS or method == "saliency" else 1
    targets = _split_targets(target, len(images))
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        tgt = targets if not isinstance(targets, list) else targets[start : start + step]
        computed += compute(adapter, chunk, method, tgt, layer, options, progress)
    opts = {**DEFAULTS[method], **options}
    labels = adapter.spec.labels
    results = [
        Attribution(
            map=c.map.astype(np.float32),
            raw=np.asarray(c.raw, np.float32),
            method=method,
            target=c.target,
            layer=c.layer,
            score=c.score,
            image=img,
            label=labels[c.target] if labels and c.target is not None and c.target < len(labels)
            else None,
            options=opts,
        )
        for c, img in zip(computed, images, strict=True)
    ]
    return results[0] if single else results


def _images(adapter: Adapter, image: Any) -> tuple[np.ndarray, bool]:
    shape = (adapter.spec.channels, adapter.spec.spatial)
    if isinstance(image, (list, tuple)):
        items = list(image)
        if not items:
            raise ValueError("got an empty list of images")
        batch = [load_image(item, shape[0], shape[1]) for item in items]
        if len({b.shape for b in batch}) > 1:
            raise ValueError(
                f"images of a list must share one size for this model (any-size model); got "
                f"{sorted({b.shape for b in batch})}"
            )
        return np.stack(batch), False
    if isinstance(image, np.ndarray) and image.ndim == 4:
        return _images(adapter, list(image))[0], False
    return load_image(image, shape[0], shape[1])[None], True


def _split_targets(target: Any, n: int) -> Any:
    if target is None or callable(target):
        return target
    if isinstance(target, bool):
        raise TypeError("target must be None, a class index (int) or a callable; got bool")
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (list, tuple, np.ndarray)):
        targets = [int(t) for t in target]
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for {n} images")
        return targets
    raise TypeError(
        "target must be None (the top class), a class index (int) or a callable on the "
        f"model's output; got {type(target).__name__}"
    )


def plot_attribution(
    source: Any,
    image: Any = None,
    *,
    ax: Any = None,
    alpha: float = 0.5,
    colormap: str | None = None,
    **kwargs: Any,
) -> Any:
    """A matplotlib ``Figure`` of an attribution over its image.

    ``source`` is an :class:`Attribution`, or a model (then ``image`` and the keyword
    arguments of :func:`attribution` say what to compute). Pass ``ax`` to draw into it."""
    result = source if isinstance(source, Attribution) else attribution(source, image, **kwargs)
    if isinstance(result, list):
        raise ValueError("plot_attribution draws one image; pass a single image")
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.imshow(result.render(alpha=alpha, colormap=colormap).pixels, interpolation="nearest")
    ax.set_axis_off()
    what = result.label or (str(result.target) if result.target is not None else "target")
    ax.set_title(f"{result.method}: {what}" + (f" @ {result.layer}" if result.layer else ""))
    return fig

