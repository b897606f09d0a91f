"""How selective can a picture be on EfficientNet-Lite0 ``_blocks.6._relu1``? Exact bounds.

    python benchmarks/featureviz_bounds.py            # the 64-channel page of featureviz.py

The layer is ``ReLU6(BN(depthwise 3x3 conv(relu0)))`` with ``relu0 = ReLU6(...)`` in [0, 6]:
channel ``c`` of the output sees only channel ``c`` of ``relu0``. So, whatever the image,

* the largest spatial mean channel ``c`` can reach is at most the mean over positions of
  ``clip(b_c + 6 * (sum of the positive taps inside the map), 0, 6)`` (zero 'same' padding:
  taps outside the map read 0);
* the smallest spatial mean a channel can be driven to is at least the minimum of
  ``mean(clip(b + K x, 0, 6))`` over ``x`` in [0, 6]^(H x W), a small mixed-integer program
  (a binary per position says whether the ReLU6 caps it; solved by HiGHS, exactly or, when
  that takes over a minute, to the lower bound it has proven). This treats relu0's channel
  as free, so the true floor can only be higher.

A target whose largest reachable mean is below another channel's smallest one can never be
the layer's most active channel, at this image size, for any picture. The map is 8x8 for a
128 px image. Needs scipy (a benchmark-only dependency).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

import cnn_widgets as cw


def folded_depthwise(block: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The depthwise kernels ``(C, 3, 3)`` and biases ``(C,)`` with the BatchNorm folded in."""
    bn = block._bn1
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    bias = bn.bias.detach().double() - bn.running_mean.double() * scale
    kernels = block._depthwise_conv.weight.detach().double()[:, 0] * scale[:, None, None]
    return kernels.numpy(), bias.numpy()


def tap_matrix(kernel: np.ndarray, height: int, width: int) -> np.ndarray:
    """``A`` with ``(A @ x.ravel())[p]`` = the 'same'-padded 3x3 correlation at position p."""
    n = height * width
    a = np.zeros((n, n))
    for y in range(height):
        for x in range(width):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < height and 0 <= xx < width:
                        a[y * width + x, yy * width + xx] += kernel[dy + 1, dx + 1]
    return a


def largest_mean(kernel: np.ndarray, bias: float, height: int, width: int) -> float:
    positive = tap_matrix(np.clip(kernel, 0, None), height, width).sum(axis=1)
    return float(np.clip(bias + 6.0 * positive, 0.0, 6.0).mean())


def smallest_mean(
    kernel: np.ndarray,
    bias: float,
    height: int,
    width: int,
    capped: bool = True,
    time_limit: float = 60.0,
) -> float:
    """min over x in [0,6]^n of mean(clip(b + A x, 0, 6)): variables x, u (the clipped value)
    and d (1: the position is capped at 6); u >= b + A x - M d, u >= 6 d, u >= 0.

    ``capped=False``: the same without the cap at 6 (a linear program, quick), which is at
    least the true floor (the cap can only lower a mean)."""
    n = height * width
    a = tap_matrix(kernel, height, width)
    if not capped:
        result = linprog(
            np.concatenate([np.zeros(n), np.full(n, 1.0 / n)]),
            A_ub=np.hstack([a, -np.eye(n)]),
            b_ub=np.full(n, -bias),
            bounds=[(0.0, 6.0)] * n + [(0.0, None)] * n,
            method="highs",
        )
        return float(result.fun)
    big = abs(bias) + 6.0 * np.abs(kernel).sum() + 1.0
    eye, zero = np.eye(n), np.zeros((n, n))
    cost = np.concatenate([np.zeros(n), np.full(n, 1.0 / n), np.zeros(n)])
    constraints = [
        LinearConstraint(np.hstack([a, -eye, -big * eye]), -np.inf, -bias),
        LinearConstraint(np.hstack([zero, -eye, 6.0 * eye]), -np.inf, 0.0),
    ]
    upper = np.concatenate([np.full(n, 6.0), np.full(n, np.inf), np.ones(n)])
    result = milp(
        cost,
        constraints=constraints,
        integrality=np.concatenate([np.zeros(2 * n), np.ones(n)]),
        bounds=Bounds(np.zeros(3 * n), upper),
        options={"time_limit": time_limit},
    )
    # Stopped by the time limit, the solver's dual bound is still a floor (a lower one).
    bound = getattr(result, "mip_dual_bound", None)
    if result.status == 1 and bound is not None and np.isfinite(bound):
        return float(bound)
    if not result.success:
        raise RuntimeError(f"the MILP failed: {result.message}")
    return float(result.fun)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=int, default=64, help="targets 0..page-1")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    adapter = cw.zoo.load("efficientnet_lite0", framework="torch")
    layer = "_blocks.6._relu1"
    gray = np.full((1, 3, args.size, args.size), 0.5, np.float32)
    height, width = adapter.activations(gray, [layer])[layer].shape[2:]
    kernels, biases = folded_depthwise(adapter.model._blocks[6])
    count = len(biases)
    highs = np.array([largest_mean(kernels[c], biases[c], height, width) for c in range(count)])
    # A channel's floor is at most its value at rest (relu0 = 0: the bias), and at most the
    # floor without the cap: only channels above the weakest target's maximum on both counts
    # get the (slower) exact program; the others count as 0, which claims nothing.
    weakest = highs[: args.page].min()
    lows = np.zeros(count)
    for j in np.flatnonzero(biases > weakest):
        if smallest_mean(kernels[j], biases[j], height, width, capped=False) > weakest:
            lows[j] = smallest_mean(kernels[j], biases[j], height, width)
            print(f"  floor of channel {j}: {lows[j]:.3f}", flush=True)
    order = np.argsort(-lows)
    print(f"{layer}: {count} channels, map {height}x{width} at {args.size} px")
    print("highest floors:", ", ".join(f"{j}: {lows[j]:.3f}" for j in order[:6]))
    never = []
    for c in range(args.page):
        above = [int(j) for j in np.flatnonzero(lows > highs[c]) if j != c]
        if above:
            never.append(c)
            print(f"  channel {c}: at most {highs[c]:.3f}; always below channels {above}")
    best = args.page - len(never)
    print(f"at most {best} of {args.page} targets ({best / args.page:.1%}) can be selective")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
