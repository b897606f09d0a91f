"""Model files opened like native models: Caffe (``deploy.prototxt`` + ``.caffemodel``) and
ONNX (``.onnx``).

Two small readers (:mod:`.caffe`, :mod:`.onnx`) turn a file into one graph form
(:mod:`.graph`); one builder (:mod:`.builder`) turns that into a ``torch.nn.Module`` whose
submodules are named after the file's layers, which :func:`cnn_widgets.adapt` wraps like
any torch model. Importing this package imports neither torch, protobuf nor onnx.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..backends import Adapter

__all__ = ["load_caffe", "load_onnx"]


def _require(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'cnn_widgets[{extra}]'"
        )


def load_caffe(
    prototxt: str | Path,
    weights: str | Path | None = None,
    *,
    mean: str | Path | Sequence[float] | np.ndarray | None = None,
    raw_scale: float = 255.0,
    scale: float = 1.0,
    labels: Sequence[str] | None = None,
) -> Adapter:
    """Open a Caffe model as an adapted torch model every cnn_widgets function accepts.

    The layers are the prototxt's, under their Caffe names (``conv1``, ``relu1``,
    ``pool1``, ...), in-place layers included, each reporting its own output. Images still
    arrive as RGB in [0, 1]; the model's preprocessing is Caffe's ``Transformer``: RGB→BGR,
    × ``raw_scale``, − ``mean``, × ``scale``.

    Parameters
    ----------
    prototxt:
        The net definition (``deploy.prototxt``, text). Old nets (the V1 ``layers`` field)
        load too.
    weights:
        The trained weights (``.caffemodel``, binary), or None for a model with seeded
        random weights (for looking at the architecture: shapes, the layer table).
    mean:
        None (nothing subtracted), one value per channel in BGR order (``(104, 117, 123)``),
        or a per-pixel mean: a ``.binaryproto`` or ``.npy`` file or a ``(C, H, W)`` array,
        centre-cropped to the input size.
    raw_scale:
        The factor from [0, 1] to the range the net was trained on (Caffe's ``raw_scale``).
    scale:
        Caffe's ``input_scale`` after the mean (e.g. 0.017 for the MobileNet Caffe models).
    labels:
        Class names for the output layer.

    Raises
    ------
    ValueError
        A file that cannot be parsed (saying which), a layer type that is not supported
        (naming the layer and listing the supported types), weights that do not fit the
        prototxt (naming the layer and both shapes).
    ImportError
        Without torch or protobuf, saying which extra to install.
    """
    _require("torch", "torch", "the Caffe loader (it builds a PyTorch model)")
    _require("google.protobuf", "caffe", "the Caffe loader")
    from .load import load_caffe as load

    return load(prototxt, weights, mean=mean, raw_scale=raw_scale, scale=scale, labels=labels)


def load_onnx(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    preprocess: str | Callable[[Any], Any] | None = None,
    labels: Sequence[str] | None = None,
) -> Adapter:
    """Open an ONNX model as an adapted torch model every cnn_widgets function accepts.

    One layer per ONNX node, named after the node (or its first output when it has no
    name; dots become ``_``), for the operators CNNs use, opsets 7 to 22.

    Parameters
    ----------
    path:
        The ``.onnx`` file.
    input_shape:
        ``(C, H, W)`` when the file leaves the image size open (or to use another size).
    preprocess, labels:
        As for :func:`cnn_widgets.adapt`: what turns a [0, 1] RGB image into the model's
        input (``"imagenet"``, a :class:`~cnn_widgets.Normalization`, a callable on an NCHW
        tensor), and class names.

    Raises
    ------
    ValueError
        A file that is no ONNX model, an operator that is not supported (naming it, the
        node and the opset), more than one input.
    ImportError
        Without torch or onnx, saying which extra to install.
    """
    _require("torch", "torch", "the ONNX loader (it builds a PyTorch model)")
    _require("onnx", "onnx", "the ONNX loader")
    from .load import load_onnx as load

    return load(path, input_shape=input_shape, preprocess=preprocess, labels=labels)
