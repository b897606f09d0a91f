"""Attribution: speed against captum / torchcam (torch) and tf-keras-vis (Keras), and
faithfulness (deletion / insertion AUC, Petsiuk et al. 2018) against a random and a centred
Gaussian map. One run, one machine, one thread (``OMP_NUM_THREADS=1``, torch and TensorFlow
set to one thread unless ``--threads`` says otherwise): EfficientNet-Lite0 at 224 px (the
bundled twins) and the bundled photos.

Speed: the same inputs, target class and layer (the last feature maps, ``_relu1`` / ``relu``),
the paper defaults (SmoothGrad 50 samples at 15 % noise, integrated gradients 50 steps, both
batched 8 at a time on both sides, our default: per image the fastest batch here, and captum's
fastest too, 5.7 s for IG against 8.5 s in batches of 16; Score-CAM over the 32 most active
channels in Keras, where tf-keras-vis's ``max_N`` does the same). Both sides get the photo at
the model's size (resized once, before timing); the libraries get it normalized as the model
expects, we get the [0, 1] image, so our time includes the normalization. One untimed warm-up
each, then the median of ``--repeats`` runs (``--long-repeats`` for SmoothGrad, IG and
Score-CAM), ours and theirs interleaved.

Faithfulness (torch): every photo in three views (the centre crop the model takes, and two
off-centre crops, so that the centred Gaussian map is no trivially strong guess), the target
being each view's top class. Two protocols: ``pixel/rise`` (Petsiuk et al.: single pixels,
deleted to black, inserted into a blurred image) and ``patch16/blur`` (16x16 patches ranked by
the map's mean, deleted to and inserted into a blurred image). Per method the mean deletion
AUC (lower is better), insertion AUC (higher) and deletion gain (least-first minus
most-first deletion AUC, higher); a method that does not beat both the random and the
Gaussian map on a measure is marked.

Usage::

    python benchmarks/attribution.py [--repeats 15] [--long-repeats 5] [--steps 16]
        [--photos astronaut chelsea coffee rocket camera] [--skip torch keras faith]
        [--out benchmarks/results/attribution.json]
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # before numpy, torch or TensorFlow read it
    _threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    os.environ.setdefault("OMP_NUM_THREADS", _threads)

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
LONG = ("smoothgrad", "integrated_gradients", "scorecam")


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


def torch_speed(photo: np.ndarray, repeats: tuple[int, int]) -> dict[str, dict[str, float]]:
    import torch
    from captum import attr as captum
    from torchcam import methods as torchcam

    adapter = cw.zoo.load("efficientnet_lite0", "torch")
    model = adapter.model
    layer = _last_spatial(adapter)  # _relu1
    photo = cw.prepare_image(adapter, photo)  # at the model's size, for both sides
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
            x, nt_type="smoothgrad", nt_samples=50, nt_samples_batch_size=8, stdevs=sigma,
            target=target, abs=False,
        ),
        "integrated_gradients": lambda: captum.IntegratedGradients(model).attribute(
            x, baselines=0.0, target=target, n_steps=50, internal_batch_size=8,
            method="riemann_trapezoid",
        ),
    }
    return _compare(adapter, photo, target, layer, theirs, repeats, "captum/torchcam")


def keras_speed(photo: np.ndarray, repeats: tuple[int, int]) -> dict[str, dict[str, float]]:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    adapter = cw.zoo.load("efficientnet_lite0", "keras")
    model = adapter.model
    layer = _last_spatial(adapter)
    photo = cw.prepare_image(adapter, photo)  # at the model's size, for both sides
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
    repeats: tuple[int, int],
    library: str,
) -> dict[str, dict[str, float]]:
    rows = {}
    for method, run in theirs.items():
        options: dict[str, Any] = {"k": 32} if method == "scorecam" else {}
        if method in CAM_METHODS:
            options["layer"] = layer
        n = repeats[1] if method in LONG else repeats[0]

        def ours(method: str = method, options: dict = options) -> Any:
            return cw.attribution(adapter, photo, method=method, target=target, **options)

        mine, other = timed_pair(ours, run, n)
        rows[method] = {"ours_s": mine, "theirs_s": other, "ratio": mine / other}
        print(f"  {method:<22} ours {mine:7.3f} s  {library} {other:7.3f} s  "
              f"ratio {mine / other:5.2f}", flush=True)
    return rows


def views(photo: np.ndarray) -> dict[str, np.ndarray]:
    """The photo (the model centre-crops it) and two off-centre square crops of 70 % of its
    shorter side, from the top-left and the bottom-right corners: the object the photo was
    taken of then lies off the centre, and a centred Gaussian map is no longer a good guess."""
    h, w = photo.shape[:2]
    side = int(0.7 * min(h, w))
    return {
        "centre": photo,
        "top-left": photo[:side, :side],
        "bottom-right": photo[h - side :, w - side :],
    }


PROTOCOLS: dict[str, dict[str, Any]] = {
    # Petsiuk et al.: single pixels, deleted to black, inserted into a blurred image
    "pixel/rise": {"patch": 1, "fill": "rise"},
    # coarse: 16x16 patches ranked by the map's mean, removed to (inserted into) a blur
    "patch16/blur": {"patch": 16, "fill": "blur"},
}
BASELINES = ("random", "gaussian")
MEASURES = ("deletion", "insertion", "gain")
OPTION_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    # documented options, reported beside the defaults (never in their place)
    "integrated_gradients:blur": ("integrated_gradients", {"baseline": "blur"}),
}


def faithfulness(photos: dict[str, np.ndarray], steps: int) -> dict[str, Any]:
    """Mean deletion AUC, insertion AUC and deletion gain per method and protocol over every
    view of every photo, the target being the top class of each view."""
    adapter = cw.zoo.load("efficientnet_lite0", "torch")
    methods = [m for m, _ in cw.choices.ATTRIBUTION_METHODS]
    rows = [*methods, *OPTION_ROWS, *BASELINES]
    scores: dict[str, dict[str, list[tuple[float, float, float]]]] = {
        p: {m: [] for m in rows} for p in PROTOCOLS
    }
    per_view: dict[str, Any] = {}
    for name, photo in photos.items():
        for view, crop in views(photo).items():
            x = cw.prepare_image(adapter, crop)
            saliency = cw.attribution(adapter, x, method="saliency")
            target = saliency.target
            h, w = x.shape[1:]
            yy, xx = np.mgrid[:h, :w]
            maps = {
                "random": np.random.default_rng(len(name) * 7 + len(view)).random((h, w)),
                "gaussian": np.exp(
                    -(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2)
                ),
                "saliency": saliency.map,
            }
            settings = {
                **{m: (m, {"k": 32} if m == "scorecam" else {}) for m in methods},
                **OPTION_ROWS,
            }
            for row, (method, options) in settings.items():
                if row not in maps:
                    maps[row] = cw.attribution(
                        adapter, x, method=method, target=target, **options
                    ).map
            per_view[f"{name}/{view}"] = {"target": target}
            for protocol, options in PROTOCOLS.items():
                # Equal maps give equal curves: HiResCAM = Grad-CAM and LayerCAM = Grad-CAM++
                # at a layer before a global-average-pool head; measured once each.
                done: dict[bytes, tuple[float, float, float]] = {}
                for method, heat in maps.items():
                    key = np.asarray(heat, np.float64).tobytes()
                    if key not in done:
                        r = deletion_insertion(adapter, x, heat, target, steps=steps, **options)
                        done[key] = (r.deletion, r.insertion, r.deletion_gain)
                    scores[protocol][method].append(done[key])
                per_view[f"{name}/{view}"][protocol] = {
                    m: dict(zip(MEASURES, scores[protocol][m][-1], strict=True)) for m in maps
                }
            print(f"  {name}/{view}: target {target}", flush=True)
    table: dict[str, Any] = {}
    for protocol, per_method in scores.items():
        means = {
            m: dict(zip(MEASURES, np.mean(v, axis=0).tolist(), strict=True))
            for m, v in per_method.items()
        }
        for method in [*methods, *OPTION_ROWS]:
            row = means[method]
            row["beats_on_deletion"] = all(
                row["deletion"] < means[b]["deletion"] for b in BASELINES
            )
            row["beats_on_insertion"] = all(
                row["insertion"] > means[b]["insertion"] for b in BASELINES
            )
            row["beats_on_gain"] = all(row["gain"] > means[b]["gain"] for b in BASELINES)
        table[protocol] = means
    table["per_view"] = per_view
    return table


def print_tables(report: dict[str, Any]) -> None:
    """The README's tables (markdown)."""
    names = dict(cw.choices.ATTRIBUTION_METHODS)
    if "torch" in report or "keras" in report:
        print("\n| method | torch: ours / captum·torchcam (s) | Keras: ours / tf-keras-vis (s) |")
        print("|---|---|---|")
        for method in names:
            cells = []
            for side in ("torch", "keras"):
                row = report.get(side, {}).get(method)
                cells.append(
                    "—" if row is None
                    else f"{row['ours_s']:.3f} / {row['theirs_s']:.3f} (×{row['ratio']:.2f})"
                )
            if cells != ["—", "—"]:
                print(f"| {names[method]} | {cells[0]} | {cells[1]} |")
    if "faithfulness" in report:
        protocols = [p for p in report["faithfulness"] if p in PROTOCOLS]
        head = " | ".join(f"{p}: del ↓ / ins ↑ / gain ↑" for p in protocols)
        print(f"\n| method | {head} |")
        print("|---|" + "---|" * len(protocols))
        labels = {
            **names,
            **{row: f"{names[m]}, {', '.join(f'{k}={v!r}' for k, v in o.items())}"
               for row, (m, o) in OPTION_ROWS.items()},
        }
        for method in [*names, *OPTION_ROWS, *BASELINES]:
            cells = []
            for p in protocols:
                row = report["faithfulness"][p][method]
                marks = [
                    "" if row.get(f"beats_on_{k}", True) else "*"
                    for k in ("deletion", "insertion", "gain")
                ]
                cells.append(
                    f"{row['deletion']:.3f}{marks[0]} / {row['insertion']:.3f}{marks[1]} / "
                    f"{row['gain']:.3f}{marks[2]}"
                )
            label = labels.get(method, f"{method} map")
            print(f"| {label} | " + " | ".join(cells) + " |")
        print("\n(* = does not beat both the random and the centred Gaussian map)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--long-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--photos", nargs="+", default=["astronaut", "chelsea", "coffee", "rocket", "camera"]
    )
    parser.add_argument("--speed-photo", default="chelsea")
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "keras", "faith"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "attribution.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if "keras" not in args.skip:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    photos = {name: cw.zoo.sample_image(name) for name in args.photos}
    speed_photo = cw.zoo.sample_image(args.speed_photo)
    repeats = (args.repeats, args.long_repeats)
    report: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "photos": args.photos,
        "speed_photo": args.speed_photo,
        "repeats": list(repeats),
        "steps": args.steps,
    }
    start = time.perf_counter()
    if "torch" not in args.skip:
        print("speed, torch (ours vs captum/torchcam):", flush=True)
        report["torch"] = torch_speed(speed_photo, repeats)
    if "keras" not in args.skip:
        print("speed, keras (ours vs tf-keras-vis):", flush=True)
        report["keras"] = keras_speed(speed_photo, repeats)
    if "faith" not in args.skip:
        print(f"faithfulness, torch, {args.steps} steps:", flush=True)
        report["faithfulness"] = faithfulness(photos, args.steps)
    report["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_tables(report)
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
