"""Feature visualization: speed and quality of ``cnn_widgets.feature_viz`` against Lucent and
tf-keras-vis, on the bundled EfficientNet-Lite0, one run, same machine, same layer, channels,
steps and image size.

    python benchmarks/featureviz.py            # the full run (about 10 minutes on 2 cores)
    python benchmarks/featureviz.py --quick    # a smoke run in about a minute
    python benchmarks/featureviz.py --threads 1   # torch and TensorFlow on one thread each

Results go to ``benchmarks/results/featureviz.json`` and a table is printed.

What is measured
----------------
(a) Speed: milliseconds per image and step, and seconds per channel for a whole run. Our
    batched run of a page of channels (torch and Keras) against Lucent's ``render_vis``
    looped over channels (torch) and tf-keras-vis's ``ActivationMaximization`` (Keras,
    batched over channels as its documentation shows). After a warm-up call each, the
    methods run in turn for a few rounds of 48 steps, so that the load of this shared machine
    falls on all of them alike; per round the median step time after the 16 warm-up steps,
    then the median over rounds. Also the time until an image first reaches the quality bar
    (ratio >= 1 below): the median step at which it does, times the time per image-step.
(b) Quality, from full-length runs (fewer channels for the baselines; every number is per
    channel): the activation reached (mean of the channel over its map, the synthetic image at
    its own size) divided by the best activation of that channel over the bundled sample
    images (astronaut, chelsea, coffee, rocket, camera, through ``cw.activations`` at the
    model's 224 px); whether the channel is its layer's argmax at the centre of the map (ties
    count: ReLU6 saturates at 6), and whether it is the argmax of the map means. The centre
    check (the DeepVis toolbox's) fits the ``neuron`` objective, which is run too: a channel
    objective makes a texture in which the unit fires at some positions and not others.
    Also the *shift-robust* activation: the smallest over the image shifted by 0/1 pixel in
    x and y. Plain pixel ascent finds patterns locked to the stride grid whose activation
    collapses after a one-pixel shift; a natural image (or a real feature visualization)
    keeps it.
(c) The physical floor: FLOPs of one forward + input-gradient backward pass of the truncated
    model per image (counted by ``torch.utils.flop_counter``), divided by the FLOP/s of a
    large float32 matmul measured here; how far each method's time per image-step is above.

The machine is shared (2 cores, other jobs running), so all timings are medians and noisy;
compare ratios measured in the same run, not absolute seconds across runs.

The baselines are optional packages, installed only for this script::

    pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 tf-keras-vis==0.8.7
    pip install decorator tqdm deprecated imageio scipy

Lucent imports ``torchvision.transforms.Normalize`` at import time (and nothing else from
torchvision on our path); torchvision wheels do not match this torch, so a stand-in module
is put on ``sys.path`` for the duration of the import.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz, torch_impl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import featureviz_first_layers as first_layers  # a sibling script
from featureviz_baselines import Lucent, TfKerasVis, keras_any_size_model

ROOT = Path(__file__).resolve().parent
PIP_HINT = (
    "pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 tf-keras-vis==0.8.7 && "
    "pip install decorator tqdm deprecated imageio scipy"
)
DEFAULT_LAYER = "_blocks.6._relu1"


# -- quality ---------------------------------------------------------------------------------
class Judge:
    """Scores synthetic images of one layer against the sample images, with the torch model
    (the Keras model holds the same weights, so its images are judged by the same numbers)."""

    def __init__(self, adapter: cw.Adapter, layer: str, channels: list[int]) -> None:
        self.adapter = adapter
        self.layer = layer
        self.channels = np.asarray(channels)
        means = [
            cw.activations(adapter, cw.zoo.sample_image(name), layer)[layer].mean(axis=(1, 2))
            for name in cw.zoo.SAMPLE_IMAGES
        ]
        self.natural = np.max(means, axis=0)[self.channels]  # best sample image per channel

    def _maps(self, images: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.adapter.activations(batch, [self.layer])[self.layer]

    def activation(self, images: np.ndarray, channels: np.ndarray) -> np.ndarray:
        maps = self._maps(images)
        return maps[np.arange(len(channels)), channels].mean(axis=(1, 2))

    def score(self, images: np.ndarray, channels: np.ndarray) -> dict[str, np.ndarray]:
        """Per image: activation, ratio, shift-robust activation and ratio, centre argmax."""
        maps = self._maps(images)
        rows = np.arange(len(channels))
        reached = maps[rows, channels].mean(axis=(1, 2))
        h, w = maps.shape[2:]
        centre = maps[:, :, h // 2, w // 2]
        is_max = centre[rows, channels] >= centre.max(axis=1)
        means = maps.mean(axis=(2, 3))
        shifted = [reached]
        for dy, dx in ((0, 1), (1, 0), (1, 1)):
            moved = np.roll(images, (dy, dx), axis=(1, 2))
            shifted.append(self.activation(moved, channels))
        robust = np.min(shifted, axis=0)
        natural = self.natural[np.searchsorted(self.channels, channels)]
        return {
            "activation": reached,
            "ratio": self._ratio(reached, natural),
            "robust_activation": robust,
            "robust_ratio": self._ratio(robust, natural),
            "argmax": is_max,
            "mean_argmax": means[rows, channels] >= means.max(axis=1),
        }

    @staticmethod
    def _ratio(reached: np.ndarray, natural: np.ndarray) -> np.ndarray:
        # A channel no sample image excites (best ~0) counts as beaten by any positive value.
        beaten = np.where(reached > 0, np.inf, 0.0)
        return np.where(natural > 1e-6, reached / np.maximum(natural, 1e-6), beaten)


def steps_to_bar(
    judge: Judge, snapshots: list[tuple[int, np.ndarray]], channels: np.ndarray, key: str = "ratio"
) -> np.ndarray:
    """Per channel: the first snapshot step whose image reaches ratio >= 1 (inf if never)."""
    first = np.full(len(channels), np.inf)
    for step, images in snapshots:
        ok = judge.score(images, channels)[key] >= 1.0
        first = np.where(np.isinf(first) & ok, step, first)
    return first


def summarize(scores: dict[str, np.ndarray]) -> dict[str, float]:
    ratio, robust = scores["ratio"], scores["robust_ratio"]
    return {
        "activation_median": float(np.median(scores["activation"])),
        "ratio_median": float(np.median(np.minimum(ratio, 1e9))),
        "ratio_ge_1": float(np.mean(ratio >= 1.0)),
        "robust_ratio_median": float(np.median(np.minimum(robust, 1e9))),
        "robust_ratio_ge_1": float(np.mean(robust >= 1.0)),
        "argmax_at_centre": float(np.mean(scores["argmax"])),
    }


# -- the runs ---------------------------------------------------------------------------------
# Every runner returns the final images, snapshots every ``every`` steps, and the duration of
# each step (so that a median ignores the first, compiling, steps and passing hiccups).
def run_ours(
    adapter: cw.Adapter,
    layer: str,
    channels: list[int],
    steps: int,
    size: int,
    every: int,
    **options: Any,
) -> dict[str, Any]:
    """One batched run of ``feature_viz``. The snapshots are its recorded frames: the
    pictures are decoded every ``every`` steps only, as Lucent's thresholds do (a callback
    that took images every step would decode them every step)."""
    marks: list[float] = []

    def callback(step: int, images: np.ndarray, values: np.ndarray) -> None:
        marks.append(time.perf_counter())

    callback.wants_images = False  # type: ignore[attr-defined]  # timing marks only
    start = time.perf_counter()
    images, frames = feature_viz(
        adapter,
        layer,
        channels,
        steps=steps,
        size=size,
        callback=callback,
        record_every=every,
        **options,
    )
    snapshots = [(min((i + 1) * every, steps), frame) for i, frame in enumerate(frames)]
    return {
        "images": images,
        "snapshots": snapshots,
        "step_times": np.diff([start, *marks]),
        "images_per_step": len(channels),
    }


def run_unfolded(*args: Any, **options: Any) -> dict[str, Any]:
    """``run_ours`` on the model itself, without the folded private copy."""
    torch_impl.Session.fold_batchnorm = False
    try:
        return run_ours(*args, **options)
    finally:
        torch_impl.Session.fold_batchnorm = True


def flops_per_image_step(adapter: cw.Adapter, layer: str, size: int) -> float:
    """FLOPs of one forward to ``layer`` plus the backward pass to the image, per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = adapter.module(layer)

    class Stop(Exception):
        pass

    def stop(module: Any, args: Any, output: Any) -> None:
        raise Stop(output)

    image = torch.rand(1, 3, size, size, requires_grad=True)
    handle = module.register_forward_hook(stop)
    counter = FlopCounterMode(display=False)
    try:
        with adapter.protect(), counter:
            try:
                adapter.model(adapter.preprocess(image))
            except Stop as caught:
                out = caught.args[0]
            out.mean().backward()
    finally:
        handle.remove()
    return float(counter.get_total_flops())


def matmul_flops_per_second(n: int = 2048, repeats: int = 7) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / float(np.median(times))


# -- the run ---------------------------------------------------------------------------------
TORCH_OURS = "cnn_widgets lucid (torch, batched)"
TORCH_NAIVE = "cnn_widgets naive (torch, batched)"
TORCH_NEURON = "cnn_widgets lucid, neuron objective (torch, batched)"
TORCH_UNFOLDED = "cnn_widgets lucid, model as is: no BN fold, no 1x1 rewrite (torch)"
LUCENT = "lucent 0.1.8 render_vis (torch, looped)"
KERAS_OURS = "cnn_widgets lucid (keras, batched)"
TFKV = "tf-keras-vis 0.8.7 ActivationMaximization (keras, batched)"


def set_threads(n: int) -> None:
    """Run torch and TensorFlow on ``n`` threads (TensorFlow: before its first op)."""
    import tensorflow as tf
    import torch

    torch.set_num_threads(n)
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer of all)")
    parser.add_argument("--layer", default=DEFAULT_LAYER)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="default 256 (quick: 32)")
    parser.add_argument("--page", type=int, default=None, help="our page (default 64, quick 8)")
    parser.add_argument("--rounds", type=int, default=None, help="speed rounds (3, quick 1)")
    parser.add_argument("--skip-keras", action="store_true")
    parser.add_argument(
        "--skip-first-layers", action="store_true", help="not featureviz_first_layers.py"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and TensorFlow (intra- and inter-op); default: their own",
    )
    parser.add_argument(
        "--tune-allocator",
        action="store_true",
        help="call cnn_widgets.featureviz.tune_allocator() first (process-wide: every method "
        "of the run, the baselines too, gets the tuned malloc)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "featureviz.json")
    args = parser.parse_args(argv)
    tuned = bool(args.tune_allocator) and cw.featureviz.tune_allocator()
    if args.tune_allocator and not tuned:
        print("--tune-allocator: the C library is not glibc; nothing changed")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        set_threads(args.threads)
    load_before = os.getloadavg()
    quick = args.quick
    steps = args.steps or (32 if quick else 256)
    n_page = args.page or (8 if quick else 64)
    rounds = args.rounds or (1 if quick else 3)
    speed_steps = 24 if quick else 48  # 16 warm-up steps, then the steady state
    n_small = 4 if quick else 16  # naive, neuron and Keras quality runs
    n_lucent = 2 if quick else 6
    n_tfkv = 2 if quick else 8
    every = 8 if quick else 16
    size, layer = args.size, args.layer

    missing = [m for m in ("lucent", "kornia", "tf_keras_vis") if not importlib.util.find_spec(m)]
    if missing:
        print(f"missing benchmark-only packages ({', '.join(missing)}); install with:")
        print(f"  {PIP_HINT}")
        return 2
    warnings.filterwarnings("ignore", message="The structure of `inputs`")  # Keras, cosmetic
    started = time.perf_counter()
    adapter = cw.zoo.load("efficientnet_lite0", framework="torch")
    page = list(range(n_page))
    judge = Judge(adapter, layer, page)
    lucent = Lucent(adapter, layer, size)
    methods: dict[str, Callable[[list[int], int, int], dict[str, Any]]] = {
        TORCH_OURS: lambda ch, n, k: run_ours(adapter, layer, ch, n, size, k),
        TORCH_UNFOLDED: lambda ch, n, k: run_unfolded(adapter, layer, ch, n, size, k),
        LUCENT: lucent,
    }
    if not args.skip_keras:
        keras_model = keras_any_size_model()
        keras_adapter = cw.adapt(keras_model, preprocess=adapter.spec.preprocess)
        methods[KERAS_OURS] = lambda ch, n, k: run_ours(keras_adapter, layer, ch, n, size, k)
        methods[TFKV] = TfKerasVis(keras_model, layer, size)
    speed_channels = {
        TORCH_OURS: page,
        TORCH_UNFOLDED: page,
        LUCENT: page[:2],
        KERAS_OURS: page,
        TFKV: page[:n_tfkv],
    }

    # (a) Speed: all methods in turn, `rounds` times, so that the load of this shared machine
    # falls on all of them alike; per round the median step time of each; then the median.
    print(f"layer {layer}, {size}x{size}; speed: {rounds} round(s) of {speed_steps} steps")
    for name, run in methods.items():
        run(speed_channels[name][:2], 3, 3)  # warm-up: first calls, tracing, caches
    per_round: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, run in methods.items():
            result = run(speed_channels[name], speed_steps, speed_steps)
            steady = result["step_times"][16:] if speed_steps > 20 else result["step_times"]
            per_round[name].append(float(np.median(steady)) / result["images_per_step"])
    speed = {name: float(np.median(times)) for name, times in per_round.items()}
    for name, value in speed.items():
        print(f"  {name}: {value * 1e3:.1f} ms per image-step")

    # (b) Quality: full runs, snapshots every `every` steps.
    print(f"quality: {steps} steps; {n_page} channels for ours, fewer for the others")
    quality_runs = {
        TORCH_OURS: (methods[TORCH_OURS], page),
        TORCH_NAIVE: (
            lambda ch, n, k: run_ours(adapter, layer, ch, n, size, k, recipe="naive"),
            page[:n_small],
        ),
        TORCH_NEURON: (
            lambda ch, n, k: run_ours(adapter, layer, ch, n, size, k, objective="neuron"),
            page[:n_small],
        ),
        LUCENT: (lucent, page[:n_lucent]),
    }
    if not args.skip_keras:
        quality_runs[KERAS_OURS] = (methods[KERAS_OURS], page[:n_small])
        quality_runs[TFKV] = (methods[TFKV], page[:n_tfkv])
    speed[TORCH_NAIVE] = speed[TORCH_NEURON] = speed[TORCH_OURS]  # same step, same cost
    results: dict[str, Any] = {}
    for name, (run, channels) in quality_runs.items():
        began = time.perf_counter()
        result = run(channels, steps, every)
        wall = time.perf_counter() - began  # one-time costs (copy, fold, trace) included
        chans = np.asarray(channels)
        scores = judge.score(result["images"], chans)
        first = steps_to_bar(judge, result["snapshots"], chans)
        entry = {
            "channels": len(chans),
            "seconds_per_image_step": speed[name],
            "seconds_per_channel": speed[name] * steps,
            "wall_seconds_per_channel": wall / len(chans),
            "steps_to_bar_median": float(np.median(first)),
            "seconds_per_channel_to_bar": float(np.median(first)) * speed[name],
            "mean_argmax": float(np.mean(scores["mean_argmax"])),
            **summarize(scores),
            "per_channel_ratio": [float(min(r, 1e9)) for r in scores["ratio"]],
        }
        if name == TORCH_NAIVE:
            entry["note"] = "speed: the lucid step's (pixel ascent costs about the same)"
        results[name] = entry
        print(
            f"  {name}: ratio>=1 {entry['ratio_ge_1']:.0%}, robust>=1 "
            f"{entry['robust_ratio_ge_1']:.0%}, argmax at centre {entry['argmax_at_centre']:.0%}"
            f", steps to bar {entry['steps_to_bar_median']:g}"
        )

    # (c) The floor.
    flops = flops_per_image_step(adapter, layer, size)
    peak = matmul_flops_per_second()
    floor = flops / peak
    for entry in results.values():
        entry["x_above_floor"] = entry["seconds_per_image_step"] / floor
    summary = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, shared with other jobs "
        "(timings are medians of interleaved rounds, still noisy)",
        "threads": args.threads,
        "tuned_allocator": tuned,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "model": "efficientnet_lite0",
        "layer": layer,
        "size": size,
        "steps": steps,
        "speed_rounds": rounds,
        "speed_steps": speed_steps,
        "quick": quick,
        "per_round_seconds_per_image_step": per_round,
        "flops_per_image_step": flops,
        "matmul_flops_per_second": peak,
        "floor_seconds_per_image_step": floor,
        "speedup_vs_lucent_per_channel": speed[LUCENT] / speed[TORCH_OURS],
        "speedup_from_private_copy": speed[TORCH_UNFOLDED] / speed[TORCH_OURS],
        "first_layers": {} if args.skip_first_layers else first_layers.run_all(),
        "speedup_vs_lucent_per_round": [
            lu / ours for lu, ours in zip(per_round[LUCENT], per_round[TORCH_OURS], strict=True)
        ],
        "wall_seconds": time.perf_counter() - started,
        "methods": results,
    }
    if not args.skip_keras:
        summary["speedup_keras_vs_tf_keras_vis_per_channel"] = speed[TFKV] / speed[KERAS_OURS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=float))
    print_table(summary)
    return 0


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"\n{summary['model']} {summary['layer']}, {summary['steps']} steps, "
        f"{summary['size']}x{summary['size']}, {summary['machine']}"
    )
    load = summary["load_average_1_5_15_min"]
    print(
        f"threads: {summary['threads'] or 'default'}; malloc tuned: "
        f"{summary.get('tuned_allocator', False)}; load average (1 min) "
        f"{load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end"
    )
    print(
        f"floor: {summary['flops_per_image_step'] / 1e9:.3f} GFLOP per image-step / "
        f"{summary['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s matmul = "
        f"{summary['floor_seconds_per_image_step'] * 1e3:.2f} ms"
    )
    header = (
        f"{'method':<58} {'n':>3} {'s/chan':>7} {'ms/img-step':>11} {'x floor':>7} "
        f"{'ratio>=1':>8} {'robust>=1':>9} {'argmax':>6} {'mean-max':>8} {'s to bar':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, e in summary["methods"].items():
        print(
            f"{name:<58} {e['channels']:>3} {e['seconds_per_channel']:>7.2f} "
            f"{e['seconds_per_image_step'] * 1e3:>11.1f} {e['x_above_floor']:>7.1f} "
            f"{e['ratio_ge_1']:>8.0%} {e['robust_ratio_ge_1']:>9.0%} "
            f"{e['argmax_at_centre']:>6.0%} {e['mean_argmax']:>8.0%} "
            f"{e['seconds_per_channel_to_bar']:>8.2f}"
        )
    print(f"speed-up per channel vs Lucent: {summary['speedup_vs_lucent_per_channel']:.1f}x")
    copy_gain = summary["speedup_from_private_copy"]
    print(f"speed-up from the private copy (BN fold, 1x1 rewrite): {copy_gain:.2f}x")
    first_layers.print_table(summary["first_layers"])
    if "speedup_keras_vs_tf_keras_vis_per_channel" in summary:
        print(
            "speed-up per channel vs tf-keras-vis: "
            f"{summary['speedup_keras_vs_tf_keras_vis_per_channel']:.1f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
