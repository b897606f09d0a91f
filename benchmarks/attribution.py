"""Attribution: speed against captum / torchcam (torch) and tf-keras-vis (Keras), and
faithfulness (deletion / insertion AUC, Petsiuk et al. 2018) against a random and a centred
Gaussian map. One run, one machine: EfficientNet-Lite0 at 224 px (the bundled twins) and the
bundled photos.

Speed: the same inputs, target class and layer (the last feature maps, ``_relu1`` / ``relu``),
the paper defaults (SmoothGrad 50 samples at 15 % noise, integrated gradients 50 steps, both
batched 16 at a time on both sides; Score-CAM over the 32 most active channels in Keras, where
tf-keras-vis's ``max_N`` does the same). The libraries get the model and the preprocessed
tensor; we get the adapter and the [0, 1] image, so our time includes the preprocessing. One
untimed warm-up each, then the median of ``--repeats`` runs, ours and theirs interleaved (one
run for SmoothGrad and IG).

Faithfulness (torch, each photo): lower deletion AUC and higher insertion AUC are better; a
method that does not beat both the random and the centred Gaussian map on average is marked.

Usage::

    python benchmarks/attribution.py [--repeats 3] [--photos chelsea coffee] [--steps 16]
                                     [--out benchmarks/results/attribution.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import cnn_widgets as cw
from cnn_widgets.attribution import CAM_METHODS, cam_layers, deletion_insertion

ROOT = Path(__file__).resolve().parent
LONG = ("smoothgrad", "integrated_gradients")


def timed_pair(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> list[float]:
    """Median seconds of each, runs interleaved (ours, theirs, ours, ...) after one untimed
    warm-up of each, so that a change in the machine's load hits both alike."""
    ours()  # warm-up: kernels picked, caches filled
    theirs()
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for i, run in enumerate((ours, theirs)):
            start = time.perf_counter()
            run()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def torch_speed(photo: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    import torch
    from captum import attr as captum
    from torchcam import methods as torchcam

    adapter = cw.zoo.load("efficientnet_lite0", "torch")
    model = adapter.model
    layer = _last_spatial(adapter)  # _relu1
    x = torch.from_numpy(preprocessed(adapter, photo))
    target = cw.attribution(adapter, photo, method="saliency").target

    def cam(name: str) -> Callable[[], Any]:
        def run() -> Any:
            with getattr(torchcam, name)(model, target_layer=layer) as extractor:
                return extractor(target, model(x), normalized=False)

        return run

    sigma = 0.15 * float(x.max() - x.min())
    theirs = {
        "gradcam": cam("GradCAM"),
        "gradcam++": cam("GradCAMpp"),
        "layercam": cam("LayerCAM"),
        "saliency": lambda: captum.Saliency(model).attribute(x, target=target, abs=True),
        "smoothgrad": lambda: captum.NoiseTunnel(captum.Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=50, nt_samples_batch_size=16, stdevs=sigma,
            target=target, abs=False,
        ),
        "integrated_gradients": lambda: captum.IntegratedGradients(model).attribute(
            x, baselines=0.0, target=target, n_steps=50, internal_batch_size=16,
            method="riemann_trapezoid",
        ),
    }
    return _compare(adapter, photo, target, layer, theirs, repeats, "captum/torchcam")


def keras_speed(photo: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    adapter = cw.zoo.load("efficientnet_lite0", "keras")
    model = adapter.model
    layer = _last_spatial(adapter)
    x = preprocessed(adapter, photo).transpose(0, 2, 3, 1)
    target = cw.attribution(adapter, photo, method="saliency").target
    score = CategoricalScore(target)
    cam_args = {
        "penultimate_layer": layer,
        "seek_penultimate_conv_layer": False,
        "expand_cam": True,
        "normalize_cam": False,
    }
    tools = {
        name: cls(model, clone=False)
        for name, cls in {
            "gradcam": Gradcam,
            "gradcam++": GradcamPlusPlus,
            "layercam": Layercam,
            "scorecam": Scorecam,
            "saliency": Saliency,
        }.items()
    }
    theirs = {
        **{m: (lambda m=m: tools[m](score, x, **cam_args)) for m in ("gradcam", "gradcam++")},
        "layercam": lambda: tools["layercam"](score, x, **cam_args),
        "scorecam": lambda: tools["scorecam"](score, x, max_N=32, **cam_args),
        "saliency": lambda: tools["saliency"](score, x, normalize_map=False),
        "smoothgrad": lambda: tools["saliency"](
            score, x, smooth_samples=50, smooth_noise=0.15, normalize_map=False
        ),
    }
    return _compare(adapter, photo, target, layer, theirs, repeats, "tf-keras-vis")


def preprocessed(adapter: cw.Adapter, photo: np.ndarray) -> np.ndarray:
    """``(1, C, H, W)``: the photo as the model sees it, after its Normalization."""
    norm = adapter.spec.preprocess
    x = cw.prepare_image(adapter, photo)[None].astype(np.float64)
    shape = (1, -1, 1, 1)
    mean, std = np.reshape(norm.mean, shape), np.reshape(norm.std, shape)
    return ((x * norm.scale - mean) / std).astype(np.float32)


def _last_spatial(adapter: cw.Adapter) -> str:
    return cam_layers(adapter)[-1].name


def _compare(
    adapter: cw.Adapter,
    photo: np.ndarray,
    target: int,
    layer: str,
    theirs: dict[str, Callable[[], Any]],
    repeats: int,
    library: str,
) -> dict[str, dict[str, float]]:
    rows = {}
    for method, run in theirs.items():
        options: dict[str, Any] = {"k": 32} if method == "scorecam" else {}
        if method in CAM_METHODS:
            options["layer"] = layer
        n = 1 if method in LONG else repeats

        def ours(method: str = method, options: dict = options) -> Any:
            return cw.attribution(adapter, photo, method=method, target=target, **options)

        mine, other = timed_pair(ours, run, n)
        rows[method] = {"ours_s": mine, "theirs_s": other, "ratio": mine / other}
        print(f"  {method:<22} ours {mine:7.3f} s  {library} {other:7.3f} s  "
              f"ratio {mine / other:5.2f}", flush=True)
    return rows


def faithfulness(photos: dict[str, np.ndarray], steps: int) -> dict[str, dict[str, float]]:
    adapter = cw.zoo.load("efficientnet_lite0", "torch")
    methods = [m for m, _ in cw.choices.ATTRIBUTION_METHODS]
    scores: dict[str, list[tuple[float, float]]] = {m: [] for m in [*methods, "random", "gaussian"]}
    for name, photo in photos.items():
        x = cw.prepare_image(adapter, photo)
        target = cw.attribution(adapter, photo, method="saliency").target
        h, w = x.shape[1:]
        yy, xx = np.mgrid[:h, :w]
        maps = {
            "random": np.random.default_rng(0).random((h, w)),
            "gaussian": np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2)),
        }
        for method in methods:
            options = {"k": 32} if method == "scorecam" else {}
            result = cw.attribution(adapter, photo, method=method, target=target, **options)
            maps[method] = result.map
        for method, heat in maps.items():
            result = deletion_insertion(adapter, photo, heat, target, steps=steps)
            scores[method].append((result.deletion, result.insertion))
            print(f"  {name:<10} {method:<22} deletion {result.deletion:.3f}  "
                  f"insertion {result.insertion:.3f}", flush=True)
    table = {}
    for method, values in scores.items():
        deletion = float(np.mean([v[0] for v in values]))
        insertion = float(np.mean([v[1] for v in values]))
        table[method] = {"deletion": deletion, "insertion": insertion}
    for method in methods:
        row = table[method]
        row["beats_baselines"] = all(
            row["deletion"] < table[b]["deletion"] and row["insertion"] > table[b]["insertion"]
            for b in ("random", "gaussian")
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photos", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "keras", "faith"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "attribution.json")
    args = parser.parse_args()
    photos = {name: cw.zoo.sample_image(name) for name in args.photos}
    first = photos[args.photos[0]]
    report: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "photos": args.photos,
        "repeats": args.repeats,
    }
    if "torch" not in args.skip:
        print("speed, torch (ours vs captum/torchcam):", flush=True)
        report["torch"] = torch_speed(first, args.repeats)
    if "keras" not in args.skip:
        print("speed, keras (ours vs tf-keras-vis):", flush=True)
        report["keras"] = keras_speed(first, args.repeats)
    if "faith" not in args.skip:
        print(f"faithfulness, torch, {args.steps} steps:", flush=True)
        report["faithfulness"] = faithfulness(photos, args.steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
