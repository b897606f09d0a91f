"""The atlas: units per second with 1 and 2 workers, the overhead per unit over calling
``feature_viz`` directly, and a projection for a whole ResNet-50.

Units are EfficientNet-Lite0 channel batches (bundled weights). Measured in one run:

* ``direct``: ``feature_viz`` on each unit's layer and channels, the model already loaded
  (the baseline: what a hand-written loop costs);
* ``in_process``: ``cnn_widgets.atlas(..., executor=None)`` over the same units, store writes
  included; overhead = (atlas seconds per unit - direct seconds per unit) / direct, after
  taking off what a run costs once (``fixed_s_per_run``: plan, fingerprint, the store scan
  and a one-step check of the options);
* ``pool1`` / ``pool2``: a spawned ``ProcessPoolExecutor`` with 1 and 2 workers of one torch
  thread each (each run after a warm-up run in the same pool, so model loading is not
  counted); scaling = units/s with 2 workers / units/s with 1;
* ``ray1`` / ``ray2`` when Ray is installed and starts (Ray gives each one-CPU actor one
  thread; its actors live for one run, so each loads the model once inside the timing).

Two rates per executor: ``units_per_s`` over the whole run (start-up and the last unit's
tail included: what a short run costs) and ``steady_units_per_s``, the rate once every worker
is busy — (units - workers) / (time from the workers-th finished unit to the last one) —
which is what a real atlas of thousands of units runs at. The scaling target is about the
steady rate (``*_steady_scaling``).

The projection takes the in-process seconds per channel, scales it to ``--full-steps`` steps
(the cost is linear in steps) and multiplies by ResNet-50's conv channels (26,560), divided
over N workers with perfect scaling. The per-step cost of ResNet-50's deeper layers at
128 px differs from these units: the figure is an order of magnitude, and it is CPU time
on this machine; a GPU is much faster per unit (not measured here).

Usage::

    python benchmarks/atlas.py [--steps N] [--size S] [--units U] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
)  # spawned workers and Ray import this checkout too

import torch  # noqa: E402

import cnn_widgets as cw  # noqa: E402
from cnn_widgets.atlas import plan_units  # noqa: E402

MODEL = "efficientnet_lite0"
LAYER = "_blocks.2._expand_conv"  # 144 channels: the 12 default units fit
RESNET50_CHANNELS = 26_560  # conv output channels of torchvision's resnet50, counted
TARGET_SCALING = 1.7
TARGET_OVERHEAD = 0.10
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "atlas.json"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def timed_atlas(model, out: Path, busy: int, **options) -> tuple[float, float]:
    """Seconds of one atlas run, and its steady rate in units/s (see the module's doc)."""
    finished: list[float] = []
    start = time.perf_counter()
    cw.atlas(model, out, callback=lambda report: finished.append(time.perf_counter()),
             **options)
    seconds = time.perf_counter() - start
    if len(finished) <= busy:  # ``busy``: how many workers run units at once
        return seconds, float("nan")
    return seconds, (len(finished) - busy) / (finished[-1] - finished[busy - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels-per-unit", type=int, default=4)
    parser.add_argument("--units", type=int, default=12)
    parser.add_argument("--full-steps", type=int, default=512)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    options = {"steps": args.steps, "size": args.size, "progress": False,
               "layers": [LAYER], "channels_per_unit": args.channels_per_unit,
               "max_channels": args.units * args.channels_per_unit}
    model = cw.zoo.load(MODEL)
    units = plan_units(model, [LAYER], args.channels_per_unit, options["max_channels"])
    work = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    result: dict = {"machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "model": MODEL, "layer": LAYER,
                    "units": len(units), "channels_per_unit": args.channels_per_unit,
                    "steps": args.steps, "size": args.size}
    try:
        cw.feature_viz(model, LAYER, [0], steps=2, size=args.size)  # warm-up
        direct = [timed(lambda u=u: cw.feature_viz(model, u.layer, list(u.channels),
                                                   steps=args.steps, size=args.size))
                  for u in units]
        result["direct_s_per_unit"] = statistics.median(direct)
        here = timed(lambda: cw.atlas(model, work / "here", **options))
        # What a run costs once, whatever its size (amortized over a real atlas's thousands of
        # units): planning, the fingerprint, reading the store (a rerun that skips all), and
        # the one-step check of the options before the first unit.
        fixed = timed(lambda: cw.atlas(model, work / "here", **options)) + timed(
            lambda: cw.feature_viz(model, LAYER, [0], steps=1, size=args.size))
        result["fixed_s_per_run"] = fixed
        result["in_process_s_per_unit"] = (here - fixed) / len(units)
        result["in_process_units_per_s"] = len(units) / here
        result["overhead"] = result["in_process_s_per_unit"] / result["direct_s_per_unit"] - 1
        spawn = multiprocessing.get_context("spawn")
        for workers in (1, 2):
            # One intra-op thread per worker process: the scaling measured is the pool's, not
            # two workers' thread pools fighting over the same cores.
            with ProcessPoolExecutor(workers, mp_context=spawn, initializer=torch.set_num_threads,
                                     initargs=(1,)) as pool:
                cw.atlas(MODEL, work / f"warm{workers}", executor=pool, **options)
                seconds, steady = timed_atlas(MODEL, work / f"pool{workers}", workers,
                                              executor=pool, **options)
            result[f"pool{workers}_units_per_s"] = len(units) / seconds
            result[f"pool{workers}_steady_units_per_s"] = steady
        result["pool_scaling"] = result["pool2_units_per_s"] / result["pool1_units_per_s"]
        result["pool_steady_scaling"] = (result["pool2_steady_units_per_s"]
                                         / result["pool1_steady_units_per_s"])
        if not args.no_ray:
            result.update(ray_numbers(options, len(units), work))
        per_channel = result["in_process_s_per_unit"] / args.channels_per_unit
        hours_one = per_channel * args.full_steps / args.steps * RESNET50_CHANNELS / 3600
        result["projection"] = {
            "resnet50_channels": RESNET50_CHANNELS, "steps": args.full_steps,
            "hours_on_n_workers_like_this_cpu": {n: hours_one / n for n in (1, 2, 8, 32)},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average"] = os.getloadavg()  # the numbers mean little on a busy machine
    result["targets"] = {"steady_scaling": TARGET_SCALING, "overhead": TARGET_OVERHEAD}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def ray_numbers(options: dict, count: int, work: Path) -> dict:
    try:
        import ray
    except ImportError:
        return {"ray": "not installed"}
    numbers = {}
    for workers in (1, 2):
        try:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # a loaded machine can miss Ray's start-up deadlines
            return {"ray": f"did not start: {exc}"}
        try:
            cw.atlas(MODEL, work / f"rwarm{workers}", executor="ray", workers=workers, **options)
            seconds, steady = timed_atlas(MODEL, work / f"ray{workers}", workers,
                                          executor="ray", workers=workers, **options)
        finally:
            ray.shutdown()
        numbers[f"ray{workers}_units_per_s"] = count / seconds
        numbers[f"ray{workers}_steady_units_per_s"] = steady
    numbers["ray_scaling"] = numbers["ray2_units_per_s"] / numbers["ray1_units_per_s"]
    numbers["ray_steady_scaling"] = (numbers["ray2_steady_units_per_s"]
                                     / numbers["ray1_steady_units_per_s"])
    return numbers


if __name__ == "__main__":
    main()
