"""Matplotlib figures for scripts and papers (pyplot is imported only when called).

Each function draws one ``imshow`` of the tiled grid — not one subplot per channel as the seed
articles do, which costs seconds for a deep layer — and returns the ``Figure``; pass ``ax`` to
draw into an existing axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .api import render_activations, render_filters
from .images import ImageLike


def _show(rendered: Any, ax: Any, title: str) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        height, width = rendered.pixels.shape[:2]
        scale = 6.0 / max(height, width)
        fig, ax = plt.subplots(figsize=(max(2.0, width * scale), max(2.0, height * scale)))
    else:
        fig = ax.figure
    ax.imshow(rendered.pixels, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def plot_filters(
    model: Any,
    layer: str | int,
    *,
    ax: Any = None,
    input_channel: str | int = "auto",
    normalization: str = "symmetric",
    colormap: str = "gray",
    channels: Sequence[int] | slice | None = None,
) -> Any:
    """The filters of a conv layer as one tiled picture; returns the matplotlib ``Figure``."""
    rendered = render_filters(
        model,
        layer,
        input_channel=input_channel,
        normalization=normalization,
        colormap=colormap,
        channels=channels,
    )
    shown = rendered.meta.get("shown", "")
    return _show(rendered, ax, f"filters of {layer} {shown}".strip())


def plot_activations(
    model: Any,
    image: ImageLike,
    layer: str | int,
    *,
    ax: Any = None,
    view: str = "auto",
    normalization: str = "layer",
    colormap: str = "viridis",
    channels: Sequence[int] | slice | None = None,
    channel: int | None = None,
) -> Any:
    """What a layer outputs for ``image`` (grid, channel sum, one channel, dense or top-k);
    returns the matplotlib ``Figure``."""
    rendered = render_activations(
        model,
        image,
        layer,
        view=view,
        normalization=normalization,
        colormap=colormap,
        channels=channels,
        channel=channel,
    )
    return _show(rendered, ax, f"{layer}: {view}")
