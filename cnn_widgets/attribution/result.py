""":class:`Attribution`, one image's map, and the overlay picture of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import choices
from ..render.colormaps import apply_colormap
from ..render.rendered import Rendered, readable_png

__all__ = ["CLIP_PERCENTILE", "Attribution", "overlay"]

CLIP_PERCENTILE = 99.5
"""The overlay's colours span ``|map|`` up to this percentile; brighter values saturate."""


@dataclass(frozen=True, eq=False)
class Attribution:
    """Where the model looked for one image: :func:`cnn_widgets.attribution` returns it.

    Attributes
    ----------
    map:
        ``(H, W)`` float32 at the model's input resolution, unnormalized.
    raw:
        The map before resizing or channel reduction: ``(h, w)`` at the layer's resolution
        for CAM methods (``map`` is it upsampled bilinearly); ``(C, H, W)`` per input channel
        for the input-gradient methods (``map`` is max ``|raw|`` over channels for saliency
        and SmoothGrad, the sum over channels for integrated gradients, so that completeness
        holds on ``map``); guided backprop and guided Grad-CAM are ``(C, H, W)`` too, reduced
        by max ``|·|``.
    method:
        The method's name (one of :data:`cnn_widgets.choices.ATTRIBUTION_METHODS`).
    target:
        The class index used, or None for a callable target.
    layer:
        The layer a CAM method used, or None.
    score:
        The target's value for the image (the logit, before any softmax).
    image:
        ``(C, H, W)`` float32 in [0, 1]: the image as the model saw it (before preprocessing).
    label:
        The target class's label when the model has labels, else None.
    options:
        The method's options, defaults filled in.
    """

    map: np.ndarray
    raw: np.ndarray
    method: str
    target: int | None
    layer: str | None
    score: float
    image: np.ndarray = field(repr=False)
    label: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def render(self, alpha: float = 0.5, colormap: str | None = None) -> Rendered:
        """The map over the image: ``alpha`` is the map's opacity (0 shows only the image).

        ``colormap`` None picks viridis for maps without negative values and the diverging
        blue-white-red scale (zero in the middle) for signed ones (integrated gradients)."""
        return overlay(self.image, self.map, alpha=alpha, colormap=colormap)

    def _repr_png_(self) -> bytes:
        return readable_png(self.render())

    def __repr__(self) -> str:
        what = f"class {self.target}" if self.target is not None else "custom target"
        if self.label:
            what += f" ({self.label})"
        where = f", layer {self.layer!r}" if self.layer else ""
        return (
            f"Attribution({self.method}, {what}{where}, score={self.score:.4g}, "
            f"map {self.map.shape[0]}x{self.map.shape[1]})"
        )


def overlay(
    image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, colormap: str | None = None
) -> Rendered:
    """``heat`` (``(H, W)``) coloured and blended over ``image`` (``(C, H, W)``, [0, 1]).

    Maps without negative values go from 0 (the colormap's first colour) to the
    :data:`CLIP_PERCENTILE` percentile of their values (brighter ones saturate); signed maps
    likewise by magnitude, zero in the middle. Non-finite values count as 0.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha is the map's opacity in [0, 1], got {alpha!r}")
    values = np.nan_to_num(np.asarray(heat, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    signed = bool((values < 0).any())
    if colormap is None:
        colormap = "diverging" if signed else "viridis"
    choices.check(choices.COLORMAPS, colormap, "colormap")
    magnitude = np.abs(values)
    peak = float(magnitude.max())
    # Gradient maps are a few bright pixels over a faint rest: the colours span up to the
    # 99.5th percentile of |map| (brighter pixels saturate), else the picture is nearly empty.
    scale = float(np.percentile(magnitude, CLIP_PERCENTILE)) or peak or 1.0
    x01 = np.clip(values / scale * 0.5 + 0.5 if signed else values / scale, 0, 1)
    colours = apply_colormap(x01, colormap).astype(np.float32) / 255
    picture = np.asarray(image, np.float32)
    picture = np.repeat(picture, 3, axis=0) if picture.shape[0] == 1 else picture[:3]
    blended = (1 - alpha) * picture.transpose(1, 2, 0) + alpha * colours
    pixels = np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
    return Rendered(
        pixels, meta={"kind": "attribution", "peak": peak, "scale": scale, "signed": signed}
    )
