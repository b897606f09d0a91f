"""Where a feature-visualization step's time goes, op by op, for torch and Keras.

    python benchmarks/featureviz_profile.py                    # both frameworks
    python benchmarks/featureviz_profile.py --framework keras --images 8 --top 40

Runs ``feature_viz`` on the bundled EfficientNet-Lite0 (``_blocks.6._relu1``, 128 px, one
thread: the settings of ``featureviz.py``), profiles ``--steps`` steps after the warm-up
(the dead-ReLU redirect and the first, compiling steps) and prints the ops that took the most
time per step. torch: ``torch.profiler`` grouped by op and input shapes. Keras: TensorFlow's
profiler, its trace (an XSpace) read with ``tensorflow.tsl``'s protobuf, each op put in the
model's forward or backward pass (its node name carries the model's name) or in the rest of
the step (parameterization, random view, preprocessing, objective, Adam).

Op times from a profiler on a shared machine are indicative only: the profiler adds its own
overhead, and a single op's share can disagree with what removing it saves. Speed claims come
from ``featureviz.py`` (ratios within one run) or interleaved A/B runs.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz

sys.path.insert(0, str(Path(__file__).resolve().parent))
from featureviz import DEFAULT_LAYER, set_threads  # sibling scripts
from featureviz_baselines import keras_any_size_model

WARMUP = 24  # past the dead-ReLU warm-up (16 steps) and the first, compiling steps


def _profiled_window(first: int, last: int, start: Any, stop: Any) -> Any:
    """A feature_viz callback that calls ``start()`` after step ``first`` and ``stop()``
    after step ``last``."""

    def callback(step: int, images: np.ndarray, values: np.ndarray) -> None:
        if step == first:
            start()
        elif step == last:
            stop()

    callback.wants_images = False  # type: ignore[attr-defined]
    return callback


def profile_torch(images: int, steps: int, size: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    adapter = cw.zoo.load("efficientnet_lite0", framework="torch")
    channels = list(range(images))
    feature_viz(adapter, DEFAULT_LAYER, channels[:2], steps=4, size=size)  # warm the process
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    callback = _profiled_window(
        WARMUP, WARMUP + steps, prof.__enter__, lambda: prof.__exit__(None, None, None)
    )
    feature_viz(
        adapter, DEFAULT_LAYER, channels, steps=WARMUP + steps + 1, size=size, callback=callback
    )
    averages = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in averages) / 1000.0 / steps
    print(f"torch: {images} images per step, {total:.1f} ms of op time per step (profiled)")
    rows = sorted(averages, key=lambda e: -e.self_cpu_time_total)[:top]
    for e in rows:
        per_step = e.self_cpu_time_total / 1000.0 / steps
        shapes = str(e.input_shapes)[:90]
        print(f"  {per_step:7.2f} ms  {e.count // steps:3d}x  {e.key[:32]:32s} {shapes}")


def profile_keras(images: int, steps: int, size: int, top: int) -> None:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    torch_adapter = cw.zoo.load("efficientnet_lite0", framework="torch")
    model = keras_any_size_model()
    adapter = cw.adapt(model, preprocess=torch_adapter.spec.preprocess)
    channels = list(range(images))
    feature_viz(adapter, DEFAULT_LAYER, channels[:2], steps=4, size=size)
    with tempfile.TemporaryDirectory() as logdir:
        callback = _profiled_window(
            WARMUP,
            WARMUP + steps,
            lambda: tf.profiler.experimental.start(logdir),
            tf.profiler.experimental.stop,
        )
        feature_viz(
            adapter, DEFAULT_LAYER, channels, steps=WARMUP + steps + 1, size=size, callback=callback
        )
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    per_op: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if name != "ExecutorState::Process":
                    per_op[name] += event.duration_ps
    parts: collections.Counter[str] = collections.Counter()
    for name, ps in per_op.items():
        where = "model" if model.name in name else "rest of the step"
        parts[f"{where}, {'backward' if name.startswith('gradient_tape') else 'forward'}"] += ps
    total = sum(parts.values()) / 1e9 / steps
    print(f"keras: {images} images per step, {total:.1f} ms of op time per step (profiled)")
    for part, ps in sorted(parts.items()):
        print(f"  {ps / 1e9 / steps:7.2f} ms  {part}")
    for name, ps in per_op.most_common(top):
        print(f"  {ps / 1e9 / steps:7.2f} ms  {name[-110:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("torch", "keras", "both"), default="both")
    parser.add_argument("--images", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--steps", type=int, default=16, help="profiled steps (default 16)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--top", type=int, default=30, help="ops listed (default 30)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    set_threads(args.threads)
    if args.framework in ("torch", "both"):
        profile_torch(args.images, args.steps, args.size, args.top)
    if args.framework in ("keras", "both"):
        profile_keras(args.images, args.steps, args.size, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
