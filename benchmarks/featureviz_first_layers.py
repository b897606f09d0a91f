"""Feature visualization of first layers: saturation and kernel correlation, default settings.

For a linear first conv the channel-mean objective is degenerate: every interior pixel weighs
the kernel's sum, so its optimum is a flat saturated image. ``objective="auto"`` (the default)
uses the neuron objective with a pull towards gray there. Two numbers per channel, for the
images ``feature_viz`` returns with default settings:

* **saturation**: the fraction of pixels within 0.02 of 0 or 1 (goal: at most 20 %);
* **kernel correlation**: the correlation, over the centre unit's receptive field, between
  the image after the model's preprocessing and the gradient of that unit with respect to
  the preprocessed image, which for a linear layer is its kernel (times a BatchNorm's scale,
  sign included) placed where the unit looks (goal: above 0.5).

The judge is the torch model (the Keras LeNet holds the same weights).

    python benchmarks/featureviz_first_layers.py     # about a minute on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz

SATURATED = 0.02
CASES = (  # model, framework, layer, channels
    ("lenet", "torch", "conv1", None),
    ("lenet", "keras", "conv1", None),
    ("efficientnet_lite0", "torch", "_conv_stem", None),
)


def unit_kernel(adapter: cw.Adapter, layer: str, channel: int, image: np.ndarray) -> tuple:
    """The preprocessed image and d unit / d preprocessed image for the unit at the centre
    of ``layer``'s map, both ``(C, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        z = adapter.preprocess(x)
    z = z.clone().requires_grad_(True)
    kept: list[torch.Tensor] = []

    class Stop(Exception):
        pass

    def hook(module: Any, args: Any, output: torch.Tensor) -> None:
        kept.append(output)
        raise Stop

    handle = adapter.module(layer).register_forward_hook(hook)
    try:
        adapter.model(z)
    except Stop:
        pass
    finally:
        handle.remove()
    out = kept[0]
    h, w = out.shape[2:]
    (grad,) = torch.autograd.grad(out[0, channel, h // 2, w // 2], z)
    return z.detach()[0].numpy(), grad[0].numpy()


def measure(adapter: cw.Adapter, judge: cw.Adapter, layer: str, channels: list[int]) -> dict:
    started = time.perf_counter()
    images = feature_viz(adapter, layer, channels)
    seconds = time.perf_counter() - started
    saturation = ((images < SATURATED) | (images > 1 - SATURATED)).mean(axis=(1, 2, 3))
    correlations = []
    for image, channel in zip(images, channels, strict=True):
        pixels, kernel = unit_kernel(judge, layer, channel, image)
        field = np.any(kernel != 0, axis=0)  # the receptive field, every input channel
        a, b = pixels[:, field].ravel(), kernel[:, field].ravel()
        correlations.append(float(np.corrcoef(a, b)[0, 1]))
    correlations = np.array(correlations)
    return {
        "channels": len(channels),
        "size": list(images.shape[1:3]),
        "seconds": seconds,
        "saturation_max": float(saturation.max()),
        "saturation_median": float(np.median(saturation)),
        "saturation_le_20pct": float(np.mean(saturation <= 0.2)),
        "kernel_correlation_min": float(correlations.min()),
        "kernel_correlation_median": float(np.median(correlations)),
        "kernel_correlation_gt_half": float(np.mean(correlations > 0.5)),
    }


def run_all() -> dict[str, Any]:
    results = {}
    for name, framework, layer, channels in CASES:
        adapter = cw.adapt(cw.zoo.load(name, framework))
        judge = adapter if framework == "torch" else cw.adapt(cw.zoo.load(name, "torch"))
        picked = channels or list(range(adapter.filters(layer).shape[0]))
        results[f"{name} {layer} ({framework})"] = measure(adapter, judge, layer, picked)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'first layer, default settings':<42} {'n':>3} {'sat max':>7} {'sat<=20%':>8} "
        f"{'corr min':>8} {'corr>0.5':>8} {'s':>6}"
    )
    for name, e in results.items():
        print(
            f"{name:<42} {e['channels']:>3} {e['saturation_max']:>7.1%} "
            f"{e['saturation_le_20pct']:>8.0%} {e['kernel_correlation_min']:>8.3f} "
            f"{e['kernel_correlation_gt_half']:>8.0%} {e['seconds']:>6.1f}"
        )


def main() -> int:
    results = run_all()
    out = Path(__file__).resolve().parent / "results" / "featureviz_first_layers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
