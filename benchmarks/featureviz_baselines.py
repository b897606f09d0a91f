"""The baselines of ``benchmarks/featureviz.py``: Lucent's ``render_vis`` (torch) and
tf-keras-vis's ``ActivationMaximization`` (Keras) as runners with the benchmark's interface
(``runner(channels, steps, every)`` returns the final images, snapshots every ``every``
steps, and the duration of each step), and the Keras EfficientNet-Lite0 built for any input
size. Benchmark-only packages, imported when a runner is built.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import cnn_widgets as cw

__all__ = ["Lucent", "TfKerasVis", "keras_any_size_model"]


@contextlib.contextmanager
def torchvision_stand_in() -> Iterator[None]:
    """A ``torchvision.transforms.Normalize`` good enough for Lucent's import, on sys.path
    only while Lucent is imported (and only if no working torchvision is importable: a wheel
    built for another torch fails at import with "operator torchvision::nms does not exist")."""
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision.transforms")
        except Exception:  # installed, but not for this torch
            for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
                del sys.modules[name]
        else:
            yield
            return
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder, "torchvision")
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "transforms.py").write_text(
            textwrap.dedent("""
            import torch

            class Normalize:
                def __init__(self, mean, std):
                    self.mean = torch.tensor(mean).reshape(-1, 1, 1)
                    self.std = torch.tensor(std).reshape(-1, 1, 1)

                def __call__(self, x):
                    return (x - self.mean.to(x)) / self.std.to(x)
            """)
        )
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            sys.path.remove(folder)
            for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
                del sys.modules[name]


class Lucent:
    """torch-lucent's ``render_vis``, one channel at a time, on its own copy of the model
    (Lucent leaves a forward hook on every module it sees), with our model's preprocessing in
    front (``preprocess=False``) and no upsampling to 224 (``fixed_image_size``)."""

    def __init__(self, adapter: cw.Adapter, layer: str, size: int) -> None:
        import torch
        from torch import nn

        with torchvision_stand_in():
            from lucent.optvis import param, render

        class Preprocess(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return adapter.preprocess(x)

        self.torch, self.param, self.render = torch, param, render
        self.model = nn.Sequential(Preprocess(), copy.deepcopy(adapter.model)).eval()
        self.layer = "1_" + layer.replace(".", "_")  # Lucent joins module names with "_"
        self.size = size
        self.marks: list[float] = []
        # One forward per step: time the steps from it.
        self.model.register_forward_pre_hook(
            lambda module, args: self.marks.append(time.perf_counter())
        )

    def __call__(self, channels: list[int], steps: int, every: int) -> dict[str, Any]:
        thresholds = tuple(range(every, steps + 1, every))
        if steps not in thresholds:
            thresholds += (steps,)
        finals, snapshots, step_times = [], [], []
        for c in channels:
            self.torch.manual_seed(c)
            self.marks.clear()
            shots = self.render.render_vis(
                self.model,
                f"{self.layer}:{c}",
                param_f=lambda: self.param.image(self.size),
                thresholds=thresholds,
                preprocess=False,
                progress=False,
                show_image=False,
                fixed_image_size=self.size,
            )
            step_times.extend(np.diff(self.marks))
            finals.append(shots[-1][0])
            snapshots.append([shot[0] for shot in shots])
        by_step = [
            (step, np.stack([shots[i] for shots in snapshots])) for i, step in enumerate(thresholds)
        ]
        return {
            "images": np.stack(finals).astype(np.float32),
            "snapshots": by_step,
            "step_times": np.asarray(step_times),
            "images_per_step": 1,
        }


def keras_any_size_model() -> Any:
    """The bundled Keras EfficientNet-Lite0, built with an input of any size (the zoo build
    fixes 224 x 224, which tf-keras-vis would have to use)."""
    from cnn_widgets.zoo import efficientnet

    saved = efficientnet.INPUT_SHAPE
    efficientnet.INPUT_SHAPE = (3, None, None)
    try:
        return efficientnet.build_keras()
    finally:
        efficientnet.INPUT_SHAPE = saved


class TfKerasVis:
    """tf-keras-vis ``ActivationMaximization`` with its default settings (input modifiers,
    regularizers, optimizer), batched over channels as its documentation shows, on the model
    cut at the layer (its ``ExtractIntermediateLayer`` recipe) with our preprocessing in
    front: tf-keras-vis optimizes 0..255 inputs."""

    def __init__(self, model: Any, layer: str, size: int) -> None:
        import keras
        from tf_keras_vis.activation_maximization import ActivationMaximization

        truncated = keras.Model(model.inputs, model.get_layer(layer).output)
        inputs = keras.Input((size, size, 3))
        scaled = keras.layers.Rescaling(1 / 128.0, offset=-127.0 / 128.0)(inputs)
        self.visualize = ActivationMaximization(keras.Model(inputs, truncated(scaled)), clone=False)
        self.size = size

    def __call__(self, channels: list[int], steps: int, every: int) -> dict[str, Any]:
        import tensorflow as tf
        from tf_keras_vis.activation_maximization.callbacks import Callback

        chans = tf.constant(channels)

        def score(output: tf.Tensor) -> tf.Tensor:
            picked = tf.gather(output, chans, axis=-1, batch_dims=1)  # (n, H, W)
            return tf.reduce_mean(picked, axis=(1, 2))

        marks: list[float] = []
        shots: list[tuple[int, np.ndarray]] = []

        class Snapshots(Callback):
            def __call__(self, i: int, values: Any, *args: Any, **kwargs: Any) -> None:
                marks.append(time.perf_counter())
                if (i + 1) % every == 0 or i + 1 == steps:
                    shots.append((i + 1, np.asarray(values[0]) / 255.0))

        shape = (len(channels), self.size, self.size, 3)
        seed = tf.random.stateless_uniform(shape, (0, 0), 0, 255)
        start = time.perf_counter()
        result = self.visualize(score, seed_input=seed, steps=steps, callbacks=[Snapshots()])
        return {
            "images": np.asarray(result, dtype=np.float32) / 255.0,
            "snapshots": shots,
            "step_times": np.diff([start, *marks]),
            "images_per_step": len(channels),
        }


# -- the floor -------------------------------------------------------------------------------
