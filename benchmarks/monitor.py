"""What the TrainingMonitor costs a training run: the bundled LeNet trained on the MNIST subset
(torch, batch 64), with and without the monitor, the two interleaved in the same process.

A round trains ``--steps`` steps from the same initial weights four ways: without the monitor,
and with it at ``every`` = 50 (the default), 10 and 1 (a snapshot after every step). The
monitor's own drawing and sending run on its thread meanwhile, as in a notebook (here with
a comm that goes nowhere). Reported: the median step time of each, and the overhead against
the run without the monitor measured in the same round (median over rounds, with the spread).

Target: <= 3 % at the default every=50.

Usage::

    python benchmarks/monitor.py [--rounds 5] [--steps 140] [--out benchmarks/results/monitor.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import cnn_widgets as cw
from cnn_widgets.zoo.lenet import build_torch, mnist_5k

EVERY = (None, 50, 10, 1)


def train(x: torch.Tensor, y: torch.Tensor, steps: int, every: int | None) -> float:
    """Seconds per step for ``steps`` steps (with a monitor taking snapshots every ``every``)."""
    torch.manual_seed(0)
    model = build_torch(pretrained=False).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    monitor = None
    if every is not None:
        monitor = cw.TrainingMonitor(cw.adapt(model, input_shape=(1, 28, 28)), every=every)
    order = torch.randperm(len(x))[: steps * 64].split(64)
    start = time.perf_counter()
    with monitor.watch(optimizer) if monitor else contextlib.nullcontext():
        for batch in order:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.record(loss=loss)
    seconds = (time.perf_counter() - start) / len(order)
    if monitor is not None:
        monitor.wait()
        monitor.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=140)
    parser.add_argument("--out", default="benchmarks/results/monitor.json")
    args = parser.parse_args()
    images, labels = mnist_5k()
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels)
    train(x, y, 10, 1)  # warm up: imports, first allocations, the widget's thread
    times: dict[str, list[float]] = {str(e): [] for e in EVERY}
    overhead: dict[str, list[float]] = {str(e): [] for e in EVERY if e is not None}
    for _ in range(args.rounds):
        plain = None
        for every in EVERY:
            seconds = train(x, y, args.steps, every)
            times[str(every)].append(seconds)
            if every is None:
                plain = seconds
            else:
                overhead[str(every)].append(seconds / plain - 1.0)
    print(f"{'every':>6}  {'ms/step (median)':>17}  {'overhead (median [min, max])':>30}")
    result = {"machine": platform.processor() or platform.machine(), "steps": args.steps,
              "rounds": args.rounds, "ms_per_step": {}, "overhead": {}}
    for every in EVERY:
        key = str(every)
        median = statistics.median(times[key]) * 1e3
        result["ms_per_step"][key] = median
        line = f"{'none' if every is None else every:>6}  {median:>17.2f}"
        if every is not None:
            values = overhead[key]
            result["overhead"][key] = {"median": statistics.median(values),
                                       "min": min(values), "max": max(values)}
            line += (f"  {statistics.median(values):>+12.1%} [{min(values):+.1%}, "
                     f"{max(values):+.1%}]")
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
