"""Selectivity of channel objectives: which objective makes the target channel its layer's
most active one (highest spatially averaged activation), and at what cost in activation.

    python benchmarks/featureviz_selectivity.py --variants auto rival:1.0 --channels 0-15
    python benchmarks/featureviz_selectivity.py --variants suppress --channels 179 353

EfficientNet-Lite0 (torch, or ``--framework keras``), ``_blocks.6._relu1`` at 128 px, 256
steps, the default lucid recipe, seed 0: the settings of ``benchmarks/featureviz.py``, which
measures the default objective on its 64-channel page; this script compares objectives on the
same channels, one after the other in one process, and prints per channel who wins the layer.

Variants (``name:weight``):

``auto``
    whatever ``objective="auto"`` is now.
``channel``
    the plain channel mean.
``all:w``
    ``channel(l, c) - w * layer_max(l)`` (the soft maximum includes ``c``).
``rival:w``
    ``channel(l, c) - w * layer_max(l, exclude=c)`` (the soft maximum of the other channels).
``suppress``
    ``-channel(l, c)``: how low channel ``c`` can be driven at all.

Results (per channel: activation, ratio to the best sample photo, the layer's winner and its
mean) go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import cnn_widgets as cw
from cnn_widgets.featureviz import Objective, channel, feature_viz, layer_max

sys.path.insert(0, str(Path(__file__).resolve().parent))
from featureviz import DEFAULT_LAYER, Judge, set_threads  # sibling scripts
from featureviz_baselines import keras_any_size_model

ROOT = Path(__file__).resolve().parent


def objectives(variant: str, layer: str, channels: list[int]) -> str | list[Objective]:
    name, _, weight = variant.partition(":")
    w = float(weight) if weight else 1.0
    if name in ("auto", "channel"):
        return name
    if name == "all":
        return [channel(layer, c) - w * layer_max(layer) for c in channels]
    if name == "rival":
        return [channel(layer, c) - w * layer_max(layer, exclude=c) for c in channels]
    if name == "suppress":
        return [-channel(layer, c) for c in channels]
    raise ValueError(f"unknown variant {variant!r}; valid: auto, channel, all:w, rival:w, suppress")


def parse_channels(text: list[str]) -> list[int]:
    out: list[int] = []
    for part in text:
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last) + 1) if last else [int(first)])
    return out


def run(
    adapter: cw.Adapter,
    judged_by: cw.Adapter,
    layer: str,
    variant: str,
    channels: list[int],
    steps: int,
    size: int,
    seed: int = 0,
) -> dict[str, object]:
    objective = objectives(variant, layer, channels)
    began = time.perf_counter()
    if isinstance(objective, str):
        images = feature_viz(
            adapter, layer, channels, objective=objective, steps=steps, size=size, seed=seed
        )
    else:
        images = feature_viz(adapter, objective=objective, steps=steps, size=size, seed=seed)
    seconds = time.perf_counter() - began
    judge = Judge(judged_by, layer, sorted(set(channels)))
    targets = np.asarray(channels)
    maps = judge._maps(images)
    means = maps.mean(axis=(2, 3))  # (n, C)
    rows = np.arange(len(targets))
    reached = means[rows, targets]
    natural = judge.natural[np.searchsorted(judge.channels, targets)]
    ratio = judge._ratio(reached, natural)
    winner = means.argmax(axis=1)
    rival = np.where(np.arange(means.shape[1]) == targets[:, None], -np.inf, means).max(axis=1)
    return {
        "variant": variant,
        "seconds": seconds,
        "selectivity": float(np.mean(reached >= means.max(axis=1))),
        "ratio_ge_1": float(np.mean(ratio >= 1.0)),
        "ratio_median": float(np.median(np.minimum(ratio, 1e9))),
        "per_channel": [
            {
                "channel": int(c),
                "activation": float(a),
                "ratio": float(min(r, 1e9)),
                "winner": int(wi),
                "winner_mean": float(means[i, wi]),
                "best_rival_mean": float(rv),
            }
            for i, (c, a, r, wi, rv) in enumerate(
                zip(targets, reached, ratio, winner, rival, strict=True)
            )
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["auto"])
    parser.add_argument("--channels", nargs="+", default=["0-63"], help="e.g. 0-15 27 179")
    parser.add_argument("--layer", default=DEFAULT_LAYER)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--framework",
        choices=("torch", "keras"),
        default="torch",
        help="keras: the same weights as a Keras model (judged by the torch model, as in "
        "featureviz.py)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "featureviz_selectivity.json"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    channels = parse_channels(args.channels)
    adapter = judged_by = cw.zoo.load("efficientnet_lite0", framework="torch")
    if args.framework == "keras":
        keras = keras_any_size_model()
        adapter = cw.adapt(keras, preprocess=judged_by.spec.preprocess)
    results = []
    load = os.getloadavg()
    for variant in args.variants:
        result = run(
            adapter, judged_by, args.layer, variant, channels, args.steps, args.size, args.seed
        )
        results.append(result)
        lost = [
            f"{p['channel']}<{p['winner']}"
            for p in result["per_channel"]
            if p["winner"] != p["channel"]
        ]
        print(
            f"{variant:>12}: selectivity {result['selectivity']:.1%}, ratio>=1 "
            f"{result['ratio_ge_1']:.1%} (median {result['ratio_median']:.2f}), "
            f"{result['seconds']:.0f} s; lost: {' '.join(lost)}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "layer": args.layer,
        "steps": args.steps,
        "size": args.size,
        "threads": args.threads,
        "seed": args.seed,
        "framework": args.framework,
        "channels": channels,
        "load_average_1_5_15_min": {"start": load, "end": os.getloadavg()},
        "results": results,
    }
    args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
