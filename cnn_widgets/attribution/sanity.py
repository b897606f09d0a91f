"""Adebayo et al.'s sanity check (NeurIPS 2018, "Sanity Checks for Saliency Maps"): does a
method's map depend on what the model learned? Cascading randomization re-initializes the
layers from the output backwards, one more at each step, and compares each step's map with
the original by Spearman rank correlation. A map that stays the same while the model becomes
noise shows the image, not the model (guided backprop is the known example)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import LayerKey
from ..images import load_image
from .methods import CAM_METHODS, compute

__all__ = ["SanityReport", "sanity_check", "spearman"]

THRESHOLD = 0.5
"""``passed`` needs the map's rank correlation with the original to fall below this, in
magnitude, once every checked layer is randomized."""


@dataclass(frozen=True, eq=False)
class SanityReport:
    """What :func:`sanity_check` found.

    Attributes
    ----------
    method:
        The attribution method checked.
    layers:
        The layer randomized at each step, output first (step ``i`` has layers ``0..i``
        randomized).
    correlations:
        Spearman rank correlation of each step's map with the original map (same length as
        ``layers``). A map that becomes constant counts as 0.
    passed:
        True when the last correlation is below :data:`THRESHOLD` in magnitude: the map
        depends on the weights.
    original, maps:
        The original map and each step's map, ``(H, W)``.
    """

    method: str
    layers: tuple[str, ...]
    correlations: tuple[float, ...]
    passed: bool
    original: np.ndarray = field(repr=False)
    maps: tuple[np.ndarray, ...] = field(repr=False)

    def table(self) -> str:
        """The report as plain text, one line a step."""
        verdict = "PASSED" if self.passed else "FAILED: the map does not depend on the weights"
        lines = [f"sanity check of {self.method}: {verdict}", "step  randomized up to  rho"]
        for i, (name, rho) in enumerate(zip(self.layers, self.correlations, strict=True)):
            lines.append(f"{i + 1:>4}  {name:<16}  {rho:+.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        verdict = (
            "<b style='color:#1a7f37'>passed</b>"
            if self.passed
            else "<b style='color:#cf222e'>failed: the map does not depend on the weights</b>"
        )
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{html.escape(name)}</td><td>{rho:+.3f}</td></tr>"
            for i, (name, rho) in enumerate(zip(self.layers, self.correlations, strict=True))
        )
        return (
            f"<div>Sanity check of {html.escape(self.method)}: {verdict}</div>"
            "<table><tr><th>step</th><th>randomized up to</th><th>Spearman ρ</th></tr>"
            f"{rows}</table>"
        )

    def plot(self, ax: Any = None) -> Any:
        """The correlations against the number of randomized layers; returns the Figure."""
        if ax is None:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 3.5))
        else:
            fig = ax.figure
        steps = np.arange(1, len(self.correlations) + 1)
        ax.plot(steps, self.correlations, marker="o")
        ax.axhline(THRESHOLD, color="gray", linestyle="--", linewidth=1)
        ax.axhline(-THRESHOLD, color="gray", linestyle="--", linewidth=1)
        ax.set_ylim(-1.05, 1.05)
        every = max(1, len(steps) // 20)  # at most ~20 names stay readable
        ax.set_xticks(
            steps[::every], list(self.layers)[::every], rotation=60, ha="right", fontsize=7
        )
        ax.set_xlabel("randomized from the output down to")
        ax.set_ylabel("Spearman ρ with the original")
        ax.set_title(f"{self.method}: {'passed' if self.passed else 'FAILED'}")
        fig.tight_layout()
        return fig


def sanity_check(
    model: Any,
    image: Any,
    method: str = "gradcam",
    target: int | None = None,
    layers: Sequence[LayerKey] | None = None,
    *,
    layer: LayerKey | None = None,
    seed: int = 0,
    **options: Any,
) -> SanityReport:
    """Cascading randomization of ``model`` for one image and one method.

    Parameters
    ----------
    model, image:
        As for :func:`cnn_widgets.attribution` (one image).
    method:
        The attribution method to check; ``options`` are its options.
    target:
        The class (None: the top class of the intact model, kept for every step).
    layers:
        The layers to randomize, in any order (they are randomized from the output
        backwards); None: every convolution and dense layer that ran.
    layer:
        For CAM methods, the layer of the map (None: chosen on the intact model, then kept).
    seed:
        Seeds the random weights.

    The model's weights are restored bit for bit afterwards, also when a step raises.
    """
    adapter = model if isinstance(model, Adapter) else adapt(model)
    batch = load_image(image, adapter.spec.channels, adapter.spec.spatial)[None]
    if callable(target):
        raise TypeError("sanity_check needs a class index or None as target, not a callable")
    first = compute(adapter, batch, method, target, layer, options)[0]
    fixed_layer = first.layer if method in CAM_METHODS else None
    order = _layers(adapter, layers)
    maps, correlations = [], []
    for step in range(1, len(order) + 1):
        with adapter.randomized(order[:step], seed=seed):
            result = compute(adapter, batch, method, first.target, fixed_layer, options)[0]
        maps.append(result.map)
        correlations.append(spearman(first.map, result.map))
    passed = bool(abs(correlations[-1]) < THRESHOLD)
    return SanityReport(
        method, tuple(order), tuple(correlations), passed, first.map, tuple(maps)
    )


def _layers(adapter: Adapter, layers: Sequence[LayerKey] | None) -> list[str]:
    output = adapter.output_layer()
    if layers is None:
        infos = [
            i for i in adapter.layers()[: output.index + 1]
            if i.ran and i.num_params > 0 and (i.has_filters or i.kind == "dense")
        ]
    else:
        infos = [adapter.layer(k) for k in layers]
        bare = [i.name for i in infos if i.num_params == 0]
        if bare:
            raise ValueError(
                f"layer(s) {', '.join(map(repr, bare))} have no weights to randomize"
            )
    if not infos:
        raise ValueError("this model has no convolution or dense layer with weights to randomize")
    ordered = sorted({i.name: i for i in infos}.values(), key=lambda i: -i.index)
    return [i.name for i in ordered]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (ties share their mean rank); 0 when either is
    constant (nothing of the original is left to correlate with)."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0  # 1-based mean rank of each distinct value
    return mean_rank[inverse]
