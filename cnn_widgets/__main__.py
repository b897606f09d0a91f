"""Command line: render a model's filters or feature maps to a PNG, no notebook needed.

Small pictures are enlarged by a whole number (nearest neighbour) so the file is readable;
``--scale 1`` writes them at natural size.

    python -m cnn_widgets render --model demo:lenet --layer conv1 --what filters --out f.png
    python -m cnn_widgets render --model demo:efficientnet_lite0 --layer blocks.1.0 \\
        --what activations --image chelsea --out maps.png
    python -m cnn_widgets layers --model my_model.keras
    python -m cnn_widgets render --model deploy.prototxt --weights net.caffemodel \\
        --mean 104,117,123 --layer conv1 --out conv1.png
    python -m cnn_widgets atlas --model demo:efficientnet_lite0 --out atlas --shard 0/4
    python -m cnn_widgets layers --model saved_model_dir/
    python -m cnn_widgets render --model frozen.pb --input-shape 1,28,28 \\
        --feed keep_prob=1.0 --layer Conv2D --out conv.png
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from . import api, choices
from .backends import adapt
from .choices import values
from .render.pixels import check_scale, pick_scale

# TensorFlow's C++ start-up chatter would bury the one line this tool prints.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_model(spec: str, framework: str = "auto", input_shape: str | None = None,
               preprocess: str | None = None, weights: str | None = None,
               mean: str | None = None, graph: dict[str, Any] | None = None) -> Any:
    """``demo:<name>`` for a bundled model, or a path to a ``.keras`` file, a torch.export
    ``.pt2`` program, a TorchScript file (``.pt``/``.pth``/``.ts``), an ONNX file, a
    Caffe ``.prototxt`` (with its ``.caffemodel`` as ``weights`` and the BGR ``mean`` as
    ``"104,117,123"`` or a ``.binaryproto``/``.npy`` file), a TensorFlow SavedModel
    directory or a frozen GraphDef ``.pb`` (``graph``: the ``input``, ``output``, ``feed``
    and ``signature`` keywords of :func:`cnn_widgets.load_tf_graph`)."""
    shape = tuple(int(s) for s in input_shape.split(",")) if input_shape else None
    pre = None if preprocess in (None, "none") else preprocess
    suffix = Path(spec).suffix.lower()
    if (weights is not None or mean is not None) and suffix != ".prototxt":
        raise ValueError("--weights and --mean are for Caffe models (--model net.prototxt)")
    if suffix in (".prototxt", ".onnx") and Path(spec).exists():
        from . import formats

        if suffix == ".onnx":
            return formats.load_onnx(spec, input_shape=shape, preprocess=pre)
        means = mean
        if mean is not None and not Path(mean).suffix:
            means = tuple(float(v) for v in mean.split(","))  # type: ignore[assignment]
        return formats.load_caffe(spec, weights, mean=means)
    graph = {k: v for k, v in (graph or {}).items() if v is not None}
    if suffix == ".pb" or (Path(spec) / "saved_model.pb").is_file():
        from .backends.tfgraph import load_tf_graph

        return load_tf_graph(spec, input_shape=shape, preprocess=pre, **graph)
    if graph:
        named = ", ".join(f"--{k}" for k in graph)
        raise ValueError(f"{named} are for TensorFlow graphs (a SavedModel directory or a .pb)")
    if spec.startswith("demo:"):
        from . import zoo

        model = zoo.load(spec[len("demo:"):], framework=framework)
        return adapt(model, input_shape=shape, preprocess=pre) if (shape or pre) else model
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"no model file at {spec!r}; use demo:<name> for a bundled model")
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        import keras

        # safe_mode refuses Lambda layers that would run code stored in the file.
        raw = keras.saving.load_model(path, safe_mode=True, compile=False)
    elif suffix == ".pt2":
        import torch

        raw = torch.export.unflatten(torch.export.load(path))
    elif suffix in (".pt", ".pth", ".ts"):
        import torch

        # TorchScript archives hold code for TorchScript's interpreter, not pickled Python.
        raw = torch.jit.load(str(path), map_location="cpu")
    else:
        raise ValueError(
            f"unknown model file type {suffix!r}: use a .keras file, a torch.export .pt2 "
            "file, a TorchScript .pt file, an .onnx file, a Caffe .prototxt, a frozen "
            "TensorFlow .pb or a SavedModel directory"
        )
    return adapt(raw, input_shape=shape, preprocess=pre)


def _image(value: str | None) -> Any:
    if value is None:
        return None
    from cnn_widgets import zoo

    return zoo.sample_image(value) if value in zoo.list_samples() else value


def _render(args: argparse.Namespace) -> int:
    if args.scale is not None:
        check_scale(args.scale)  # before the model loads: a typo fails at once
    model = load_model(args.model, args.framework, args.input_shape, args.preprocess,
                       args.weights, args.mean, _graph_options(args))
    if args.what == "filters":
        rendered = api.render_filters(
            model,
            _int_or_str(args.layer),
            input_channel=_int_or_str(args.input_channel),
            normalization=args.normalization or "symmetric",
            colormap=args.colormap or "gray",
            single=args.channel,
        )
    else:
        image = _image(args.image)
        if image is None:
            from . import zoo

            image = zoo.default_image(model)
        rendered = api.render_activations(
            model,
            image,
            _int_or_str(args.layer),
            view=args.view,
            normalization=args.normalization or "layer",
            colormap=args.colormap or "viridis",
            channel=args.channel,
        )
    scale = pick_scale(rendered.height, rendered.width, args.scale)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rendered.save(args.out, scale=scale)
    w, h = rendered.width, rendered.height
    size = f"{w}x{h} px" if scale == 1 else f"{w * scale}x{h * scale} px: {w}x{h} at {scale}x"
    print(f"wrote {args.out} ({size})")
    return 0


def _layers(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.framework, args.input_shape, args.preprocess,
                       args.weights, args.mean, _graph_options(args))
    print(repr(api.summary(model)))
    return 0


def _atlas(args: argparse.Namespace) -> int:
    from .atlas import atlas

    options: dict[str, Any] = {"steps": args.steps, "seed": args.seed}
    if args.size is not None:
        options["size"] = args.size
    model: Any = args.model
    if args.device is not None:
        model = _on_device(load_model(args.model, args.framework), args.device, args.executor)
    report = atlas(
        model,
        args.out,
        layers=args.layers.split(",") if args.layers else None,
        channels_per_unit=args.channels_per_unit,
        max_channels=args.max_channels,
        executor=None if args.executor == "none" else args.executor,
        workers=args.workers,
        address=args.address,
        shard=_shard(args.shard) if args.shard else None,
        add=args.add,
        framework=args.framework,
        progress=not args.quiet,
        **options,
    )
    print(repr(report))
    for unit, error in report.failed:
        print(f"failed: {unit}: {error}", file=sys.stderr)
    return 1 if report.failed else 0


def _on_device(model: Any, device: str, executor: str) -> Any:
    """The CLI's own copy of a torch model, moved to ``device`` (a GPU job-array task)."""
    if executor != "none":
        raise ValueError(
            f"--device is for runs in this process (--executor none, --shard), got --executor "
            f"{executor}: Ray gives each actor a GPU of its own when the cluster has GPUs"
        )
    from .backends import Adapter, adapt

    adapter = model if isinstance(model, Adapter) else adapt(model)
    if adapter.framework != "torch":
        raise ValueError(
            f"--device moves torch models; this is a {adapter.framework} model, which runs on "
            "the GPU TensorFlow sees (choose it with CUDA_VISIBLE_DEVICES)"
        )
    try:
        adapter.model.to(device)
    except (AssertionError, RuntimeError) as exc:  # torch says "not compiled with CUDA" so
        raise RuntimeError(f"--device {device}: the model cannot move there ({exc})") from exc
    return adapter


def _shard(value: str) -> tuple[int, int]:
    part, _, total = value.partition("/")
    if not (part.isdigit() and total.isdigit()) or not 0 <= int(part) < int(total):
        raise ValueError(f"--shard is i/N with 0 <= i < N (e.g. 0/4), got {value!r}")
    return int(part), int(total)
def _graph_options(args: argparse.Namespace) -> dict[str, Any]:
    feed = None
    if args.feed:
        feed = {}
        for item in args.feed:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(f"--feed takes NAME=VALUE (keep_prob=1.0), got {item!r}")
            lowered = value.strip().lower()
            feed[name] = lowered == "true" if lowered in ("true", "false") else float(value)
    return {"input": args.input, "output": args.output, "feed": feed,
            "signature": args.signature}  # fmt: skip


def _int_or_str(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnn_widgets",
        description="Render a CNN's filters and feature maps to PNG (PyTorch or Keras).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True,
                       help="demo:<name> (demo:lenet, demo:efficientnet_lite0) or a model file "
                            "(.keras, torch.export .pt2, TorchScript .pt, .onnx, Caffe "
                            ".prototxt, TensorFlow SavedModel directory or frozen .pb)")
        p.add_argument("--weights", help="a Caffe model's trained weights (.caffemodel)")
        p.add_argument("--mean", help="a Caffe model's mean: B,G,R values (e.g. 104,117,123) "
                                      "or a .binaryproto / .npy file")
        p.add_argument("--framework", default="auto", choices=("auto", "torch", "keras"),
                       help="for demo models: which framework's version (default: auto)")
        p.add_argument("--input-shape", help="C,H,W when the model cannot tell (e.g. 3,224,224)")
        p.add_argument("--preprocess", choices=("none", "imagenet"),
                       help="normalization of a [0,1] image before the model (default: none)")
        p.add_argument("--input", help="TensorFlow graphs: the image placeholder's name")
        p.add_argument("--output", help="TensorFlow graphs: the op the layers lead to")
        p.add_argument("--feed", action="append", metavar="NAME=VALUE",
                       help="TensorFlow graphs: a value for another placeholder "
                            "(keep_prob=1.0); repeatable")
        p.add_argument("--signature",
                       help="TensorFlow SavedModels: the signature (default: serving_default)")

    render = sub.add_parser("render", help="write a PNG of filters or feature maps")
    model_options(render)
    render.add_argument("--layer", required=True, help="layer name or index")
    render.add_argument("--what", choices=("filters", "activations"), default="filters")
    render.add_argument("--image", help="a sample name (chelsea, coffee, astronaut, rocket, "
                                        "camera, digit0..digit9) or an image file")
    render.add_argument("--view", default="auto", choices=values(choices.ACTIVATION_VIEWS),
                        help="activations: how to draw them")
    render.add_argument("--channel", type=int, help="one channel / one filter")
    render.add_argument("--input-channel", default="auto",
                        help="filters: auto, rgb, mean or an input channel index")
    render.add_argument("--normalization",
                        choices=(*values(choices.NORMALIZATIONS), choices.RAW))
    render.add_argument("--colormap", choices=values(choices.COLORMAPS))
    render.add_argument("--out", required=True, help="PNG file to write")
    render.add_argument("--scale", type=int,
                        help="pixels per picture pixel, a whole number (nearest neighbour); "
                             "default: enough for a long side near 512 px; 1: natural size")
    render.set_defaults(func=_render)

    table = sub.add_parser("layers", help="print the layer table")
    model_options(table)
    table.set_defaults(func=_layers)

    book = sub.add_parser("atlas", help="feature visualization of every channel of every layer, "
                                        "into a resumable store")
    book.add_argument("--model", required=True,
                      help="demo:<name> or a model file (workers load it by itself)")
    book.add_argument("--framework", default="auto", choices=("auto", "torch", "keras"),
                      help="for demo models: which framework's version (default: auto)")
    book.add_argument("--out", required=True, help="the store directory")
    book.add_argument("--layers", help="comma-separated layer names (default: every layer "
                                       "with a spatial output)")
    book.add_argument("--steps", type=int, default=256, help="optimization steps (default 256)")
    book.add_argument("--size", type=int, help="image side in pixels (default: feature_viz's)")
    book.add_argument("--seed", type=int, default=0)
    book.add_argument("--channels-per-unit", type=int, default=32)
    book.add_argument("--max-channels", type=int, help="only the first N channels of a layer")
    book.add_argument("--executor", default="none", choices=("none", "ray"))
    book.add_argument("--workers", type=int, help="Ray workers (default: one per CPU)")
    book.add_argument("--address", help="an existing Ray cluster's address")
    book.add_argument("--shard", help="i/N: only units i, i+N, ... (job arrays; no engine)")
    book.add_argument("--device", help="torch device for a run in this process, e.g. cuda or "
                                       "cuda:1 (Ray places its actors on GPUs itself)")
    book.add_argument("--add", action="store_true",
                      help="allow an out that holds another model's atlas")
    book.add_argument("--quiet", action="store_true", help="no progress bar")
    book.set_defaults(func=_atlas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
