"""Why saliency and integrated gradients miss insertion on patch16/blur (README): per view,
the deletion / insertion AUC and deletion gain of saliency (max and sum of |gradient| over
channels), integrated gradients from black (signed map, |map|, positive part) and from the
blurred image, SmoothGrad, Grad-CAM, and the random and centred Gaussian maps; the share of
negative IG attributions; and the mean insertion curves. Same views, targets, maps and
protocol (16x16 patches, blur, 16 steps) as ``benchmarks/attribution.py``; torch, one thread.

Usage::

    python benchmarks/attribution_faithfulness_why.py [--out benchmarks/results/why.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy or torch read it

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import cnn_widgets as cw
from cnn_widgets.attribution import deletion_insertion

try:
    from attribution import views  # run as a script from benchmarks/
except ImportError:  # imported as benchmarks.attribution_faithfulness_why
    from benchmarks.attribution import views

ROOT = Path(__file__).resolve().parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def view_maps(adapter: cw.Adapter, x: np.ndarray, name: str, view: str) -> dict[str, Any]:
    saliency = cw.attribution(adapter, x, method="saliency")
    target = saliency.target
    ig = cw.attribution(adapter, x, method="integrated_gradients", target=target).map
    blur = cw.attribution(
        adapter, x, method="integrated_gradients", target=target, baseline="blur"
    ).map
    h, w = x.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    maps = {
        "saliency": saliency.map,
        "saliency_sum": np.abs(saliency.raw).sum(axis=0),
        "ig": ig,
        "ig_abs": np.abs(ig),
        "ig_positive": np.maximum(ig, 0),
        "ig_blur": blur,
        "smoothgrad": cw.attribution(adapter, x, method="smoothgrad", target=target).map,
        "gradcam": cw.attribution(adapter, x, method="gradcam", target=target).map,
        "random": np.random.default_rng(len(name) * 7 + len(view)).random((h, w)),
        "gaussian": np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2)),
    }
    row: dict[str, Any] = {
        "target": target,
        "ig_negative_pixels": float((ig < 0).mean()),
        "ig_positive_mass": float(np.maximum(ig, 0).sum() / np.abs(ig).sum()),
    }
    for key, heat in maps.items():
        r = deletion_insertion(adapter, x, heat, target, steps=16, patch=16, fill="blur")
        row[key] = {
            "deletion": r.deletion,
            "insertion": r.insertion,
            "gain": r.deletion_gain,
            "insertion_curve": r.insertion_curve.tolist(),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "why.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    adapter = cw.zoo.load("efficientnet_lite0", "torch")
    rows = {}
    for name in PHOTOS:
        for view, crop in views(cw.zoo.sample_image(name)).items():
            rows[f"{name}/{view}"] = view_maps(adapter, cw.prepare_image(adapter, crop), name, view)
            print(f"  {name}/{view}", flush=True)
    keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, dict)]
    print("\n| map | del | ins | gain | views beating both on insertion |")
    print("|---|---|---|---|---|")
    for key in keys:
        means = [
            np.mean([r[key][m] for r in rows.values()]) for m in ("deletion", "insertion", "gain")
        ]
        beats = sum(
            r[key]["insertion"] > max(r["random"]["insertion"], r["gaussian"]["insertion"])
            for r in rows.values()
        )
        print(f"| {key} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {beats}/{len(rows)} |")
    for key in ("saliency", "ig", "ig_blur", "gradcam", "gaussian"):
        curve = np.mean([r[key]["insertion_curve"] for r in rows.values()], axis=0)
        print(f"mean insertion curve, {key}: {np.round(curve[::4], 3).tolist()}")
    negative = np.mean([r["ig_negative_pixels"] for r in rows.values()])
    print(f"IG (black): {negative:.0%} of pixels negative")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
