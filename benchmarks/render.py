"""Feature-map grid -> bytes ready to send: our renderer against the matplotlib way.

The matplotlib way is what the tutorials we started from do: a subplot grid with one ``imshow``
per channel, axes off, saved to PNG (Agg backend, into memory). Ours is
``activation_grid(acts).wire()``: normalize, quantize to palette indices, tile, colour
(the RGB copy that ``Rendered.pixels`` keeps) and encode the wire PNG.

Besides the end-to-end numbers, every wire-format candidate is timed on the same grid, with
its size: Pillow PNG (RGB), our unfiltered PNG (RGB and indexed), raw RGB / RGBA / index bytes
for a browser canvas, and JPEG. Sizes are also given for a sparse, smooth "ReLU-like" input,
because uniform random data is the worst case for compression and real feature maps are not.

Usage::

    python benchmarks/render.py [--repeats N] [--mpl-repeats M] [--out results.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_widgets.render import (
    activation_grid,
    apply_colormap,
    encode_jpeg,
    encode_png,
    normalize,
    tile,
)
from cnn_widgets.render.encode import WIRE_ZLIB_STRATEGY, _png_unfiltered

SHAPES = ((64, 56, 56), (512, 14, 14))
#: Budget for "activations -> bytes ready to send", per grid, in milliseconds.
TARGET_MS = {(64, 56, 56): 8.0, (512, 14, 14): 5.0}
#: How much faster than matplotlib the 512-channel grid must be.
TARGET_SPEEDUP = 500.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "render.json"


def timings_ms(run: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Wall times of ``run()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``run()`` in milliseconds."""
    return statistics.median(timings_ms(run, repeats, warmup))


def relu_like(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise box-blurred over 5x5 and rectified: sparse, smooth, like real maps."""
    noise = rng.standard_normal(shape).astype(np.float32)
    k = 5
    summed = np.pad(noise, ((0, 0), (k, 0), (k, 0))).cumsum(axis=1).cumsum(axis=2)
    blurred = summed[:, k:, k:] - summed[:, :-k, k:] - summed[:, k:, :-k] + summed[:, :-k, :-k]
    return np.maximum(blurred, 0.0)


def matplotlib_grid(activations: np.ndarray) -> bytes:
    """The tutorials' way: one subplot and one imshow per channel, saved as PNG."""
    import matplotlib.pyplot as plt

    n = activations.shape[0]
    ncols = int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(8, 8))
    for i, ax in enumerate(np.ravel(axes)):
        if i < n:
            ax.imshow(activations[i], cmap="viridis")
        ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def candidates(rendered: Any) -> dict[str, Callable[[], bytes]]:
    """Every wire encoding we considered, each producing bytes from the rendered grid."""
    indices, palette, rgb = rendered.indices, rendered.palette, rendered.pixels
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return {
        "png-indexed-rle1 (default)": lambda: rendered.wire()[1],
        "png-indexed-0": lambda: _png_unfiltered(indices, palette, 0),
        "png-indexed-default1": lambda: _png_unfiltered(indices, palette, 1),
        "png-rgb-rle1": lambda: _png_unfiltered(rgb, None, 1, WIRE_ZLIB_STRATEGY),
        "png-rgb-0": lambda: _png_unfiltered(rgb, None, 0),
        "png-rgb-pillow-0": lambda: encode_png(rgb, 0),
        "png-rgb-pillow-1": lambda: encode_png(rgb, 1),
        "raw-index+lut": lambda: indices.tobytes(),
        "raw-rgb": lambda: rgb.tobytes(),
        "raw-rgba": lambda: np.concatenate([rgb, alpha], axis=2).tobytes(),
        "jpeg-85": lambda: encode_jpeg(rgb, 85),
    }


def bench_shape(
    shape: tuple[int, int, int], repeats: int, mpl_repeats: int, seed: int = 0
) -> dict[str, Any]:
    """All measurements for one activation shape."""
    rng = np.random.default_rng(seed)
    acts = rng.standard_normal(shape).astype(np.float32)
    rendered = activation_grid(acts)

    # The median is the number we hold to the target; the minimum is the cost without
    # interference, worth having on a shared 2-core machine where other jobs preempt us.
    ours = timings_ms(lambda: activation_grid(acts).wire(), repeats)
    ours_ms = statistics.median(ours)
    x01 = normalize(acts, "layer")
    rgb_tiles = apply_colormap(x01, "viridis")
    stages = {
        "normalize": median_ms(lambda: normalize(acts, "layer"), repeats),
        "colormap_rgb": median_ms(lambda: apply_colormap(x01, "viridis"), repeats),
        "tile_rgb": median_ms(lambda: tile(rgb_tiles, pad_value=255), repeats),
        "render_indexed (normalize+quantize+tile+palette)": median_ms(
            lambda: activation_grid(acts), repeats
        ),
        "encode_wire": median_ms(lambda: rendered.wire(), repeats),
    }
    render_ms = stages["render_indexed (normalize+quantize+tile+palette)"]

    smooth = activation_grid(relu_like(shape, rng))
    rows = []
    smooth_encoders = candidates(smooth)
    for name, encode in candidates(rendered).items():
        ms = median_ms(encode, repeats)
        rows.append(
            {
                "name": name,
                "encode_ms": ms,
                "end_to_end_ms": render_ms + ms,
                "bytes": len(encode()),
                "bytes_relu_like": len(smooth_encoders[name]()),
            }
        )

    mpl_ms = mpl_bytes = None
    if mpl_repeats > 0:
        mpl_ms = median_ms(lambda: matplotlib_grid(acts), mpl_repeats, warmup=1)
        mpl_bytes = len(matplotlib_grid(acts))
    target = TARGET_MS[shape]
    return {
        "shape": list(shape),
        "canvas": [rendered.width, rendered.height],
        "ours_ms": ours_ms,
        "ours_min_ms": min(ours),
        "ours_bytes": len(rendered.wire()[1]),
        "target_ms": target,
        "meets_target": ours_ms <= target,
        "matplotlib_ms": mpl_ms,
        "matplotlib_bytes": mpl_bytes,
        "speedup": None if mpl_ms is None else mpl_ms / ours_ms,
        "stages_ms": stages,
        "candidates": rows,
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        # Other jobs on the machine inflate medians; the load average says how much to trust.
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import matplotlib

        info["matplotlib"] = matplotlib.__version__
    except ImportError:
        info["matplotlib"] = None
    return info


def print_report(results: dict[str, Any]) -> None:
    for case in results["cases"]:
        shape = "x".join(map(str, case["shape"]))
        canvas = "x".join(map(str, case["canvas"]))
        verdict = "OK" if case["meets_target"] else "MISSED"
        print(f"\n== activations {shape} -> {canvas} grid")
        print(
            f"ours (activation_grid().wire()): median {case['ours_ms']:.2f} ms "
            f"(min {case['ours_min_ms']:.2f}), "
            f"{case['ours_bytes']:,} bytes; target <= {case['target_ms']:.0f} ms: {verdict}"
        )
        if case["matplotlib_ms"] is not None:
            print(
                f"matplotlib subplots+imshow+savefig: {case['matplotlib_ms']:.0f} ms, "
                f"{case['matplotlib_bytes']:,} bytes; ours is {case['speedup']:.0f}x faster"
            )
        stages = ", ".join(f"{k} {v:.2f}" for k, v in case["stages_ms"].items())
        print(f"stages (ms): {stages}")
        header = ("wire candidate", "encode ms", "e2e ms", "bytes", "relu-like")
        print("{:30s} {:>10s} {:>8s} {:>9s} {:>10s}".format(*header))
        for row in case["candidates"]:
            print(
                f"{row['name']:30s} {row['encode_ms']:10.2f} {row['end_to_end_ms']:8.2f} "
                f"{row['bytes']:9,d} {row['bytes_relu_like']:10,d}"
            )
    big = next(c for c in results["cases"] if c["shape"] == [512, 14, 14])
    if big["speedup"] is not None:
        verdict = "OK" if big["speedup"] >= TARGET_SPEEDUP else "MISSED"
        print(f"\nspeedup at 512 channels: {big['speedup']:.0f}x (target >= 500x): {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed runs of our path")
    parser.add_argument(
        "--mpl-repeats", type=int, default=3, help="timed runs of matplotlib (0 skips it)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    results = {
        "benchmark": "render",
        "machine": machine(),
        "repeats": args.repeats,
        "mpl_repeats": args.mpl_repeats,
        "default_wire": "png-indexed-rle1",
        "cases": [bench_shape(shape, args.repeats, args.mpl_repeats) for shape in SHAPES],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_report(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
