"""Opening a real Caffe model, and running it: our built torch module against onnxruntime.

The model is Yahoo's open_nsfw (ResNet-50-1by2, 23.8 MB .caffemodel, from the ``nsfw``
package). The baseline is the same net written as an ONNX graph by hand and run by
onnxruntime (``scripts/nsfw_golden.py``), measured in the same run, layer by layer (graph
optimizations off: the same work as ours, where every layer's output stays observable) and,
for information, with its fusions on (BatchNorm and Scale folded into the convolutions).
Reported: the time to open the files (parse + build, median), a forward pass of a batch of
images (median), our ratio to the layer-by-layer baseline against a target, and the cost of
capturing every layer's output (``activations`` of all 228 layers) over a plain pass.

Usage::

    python benchmarks/formats.py [--repeats N] [--batch B] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from nsfw_golden import MEAN_BGR, NSFW, caffemodel_blobs, graph  # noqa: E402

import cnn_widgets as cw  # noqa: E402

#: Our forward pass may take at most this many times onnxruntime's on the same net.
TARGET_RATIO_FORWARD = 2.0
#: Opening the model (parse + build) must take at most this many forward passes of ours.
TARGET_OPEN_IN_FORWARDS = 10.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "formats.json"


def median_s(run, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both runtimes (1: fair on a shared machine, where "
                             "oversubscribed OpenMP barriers slow torch's element-wise ops ~10x)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    prototxt, weights = NSFW / "deploy.prototxt", NSFW / "resnet_50_1by2_nsfw.caffemodel"
    open_s = median_s(lambda: cw.load_caffe(prototxt, weights, mean=MEAN_BGR), args.repeats)
    model = cw.load_caffe(prototxt, weights, mean=MEAN_BGR)
    images = np.random.default_rng(0).random((args.batch, 3, 224, 224), dtype=np.float32)
    module, preprocess = model.model, model.preprocess
    inputs = torch.from_numpy(images)

    def ours() -> None:
        with torch.no_grad():
            module(preprocess(inputs))

    onnx_bytes = graph(caffemodel_blobs(weights)).SerializeToString()

    def session(optimized: bool) -> onnxruntime.InferenceSession:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        if not optimized:  # layer by layer, as ours: no BatchNorm/Mul/Add folded into Conv
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])

    mean = np.asarray(MEAN_BGR, np.float32).reshape(1, 3, 1, 1)
    caffe_input = (images[:, ::-1] * 255.0 - mean).astype(np.float32)
    ours_s = median_s(ours, args.repeats)
    plain, fused = session(optimized=False), session(optimized=True)
    ort_s = median_s(lambda: plain.run(None, {"data": caffe_input}), args.repeats)
    fused_s = median_s(lambda: fused.run(None, {"data": caffe_input}), args.repeats)
    all_layers_s = median_s(lambda: model.activations(images), args.repeats)

    ratio = ours_s / ort_s
    result = {
        "model": "open_nsfw ResNet-50-1by2 (Caffe)",
        "batch": args.batch,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "open_s": round(open_s, 3),
        "forward_ours_s": round(ours_s, 3),
        "forward_onnxruntime_layer_by_layer_s": round(ort_s, 3),
        "forward_onnxruntime_fused_s": round(fused_s, 3),
        "forward_ratio": round(ratio, 2),
        "target_forward_ratio": TARGET_RATIO_FORWARD,
        "open_in_forwards": round(open_s / ours_s, 2),
        "target_open_in_forwards": TARGET_OPEN_IN_FORWARDS,
        "all_layers_activations_s": round(all_layers_s, 3),
        "capture_overhead": round(all_layers_s / ours_s, 2),
        "met": ratio <= TARGET_RATIO_FORWARD and open_s / ours_s <= TARGET_OPEN_IN_FORWARDS,
    }
    print(f"{'measure':<40}{'value':>10}")
    shown = ("open_s", "forward_ours_s", "forward_onnxruntime_layer_by_layer_s",
             "forward_onnxruntime_fused_s", "forward_ratio",
             "open_in_forwards", "all_layers_activations_s", "capture_overhead", "met")
    for key in shown:
        print(f"{key:<40}{result[key]!s:>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
