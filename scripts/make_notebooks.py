"""Write the notebooks in notebooks/ from the cell texts below (without outputs).

The notebooks are the user-facing tour of the library; keeping their source here makes a
change to the API a one-file edit, and `python scripts/make_notebooks.py` rewrites them. The
test suite executes every notebook (tests/test_notebooks.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip())


def write(name: str, cells: list[nbformat.NotebookNode]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, NOTEBOOKS / name)


QUICKSTART = [
    md(
        """
# cnn_widgets quickstart

A pretrained ImageNet classifier (EfficientNet-Lite0, bundled — no downloads) and a sample
photo. Every call below works the same on the Keras version:
`cw.zoo.load("efficientnet_lite0", framework="keras")`.
"""
    ),
    code(
        """
import cnn_widgets as cw

model = cw.zoo.load("efficientnet_lite0", framework="auto")
image = cw.zoo.sample_image("chelsea")
"""
    ),
    md(
        """
Walk through the network: pick a layer, move the channel slider, click a tile, switch between
filters, feature maps and the layer table, try another sample image or drop in your own.
"""
    ),
    code(
        """
explorer = cw.Explorer(model, image)
explorer
"""
    ),
    md(
        """
The same things as plain functions, for scripts, papers and autograders. The layer table —
what Caffe's `net.blobs` and `net.params` print:
"""
    ),
    code("cw.summary(model)"),
    md("The 32 learned 3×3 RGB filters of the first convolution, and the feature maps one block further in:"),
    code('cw.render_filters(model, "_conv_stem")'),
    code('cw.render_activations(model, image, "_blocks.2._relu0")'),
    md("What the network thinks it sees (the output layer's logits, shown as probabilities):"),
    code("cw.render_activations(model, image, -1)"),
]


def tour(framework: str) -> list[nbformat.NotebookNode]:
    title = {"torch": "PyTorch", "keras": "Keras"}[framework]
    return [
        md(
            f"""
# A tour of cnn_widgets on {title}

Everything here runs offline on the bundled models; swap in your own model with
`cw.adapt(model, input_shape=(C, H, W), preprocess=..., labels=...)`. The `{framework}`
versions of the bundled models carry the same weights as the other framework's, so the
numbers below match the other tour to 1e-4.
"""
        ),
        code(
            f"""
import numpy as np
import cnn_widgets as cw

model = cw.zoo.load("efficientnet_lite0", framework="{framework}")
lenet = cw.zoo.load("lenet", framework="{framework}")
cat = cw.zoo.sample_image("chelsea")
model
"""
        ),
        md("## Layers\nEvery layer in forward order, with output and parameter shapes from a real forward pass."),
        code(
            """
table = cw.summary(lenet)
table
"""
        ),
        code(
            """
convs = [info.name for info in cw.layers(model) if info.has_filters]
print(len(convs), "conv layers, e.g.", convs[:4])
"""
        ),
        md("## Filters\n`(out, in_per_group, kh, kw)` in both frameworks."),
        code(
            """
weights = cw.filters(model, "_conv_stem")
print(weights.shape, weights.dtype)
cw.render_filters(model, "_conv_stem")                    # RGB kernels
"""
        ),
        code('cw.render_filters(model, "_blocks.1._depthwise_conv")   # depthwise: one input channel each'),
        code('cw.render_filters(lenet, "conv2", input_channel=0)        # one input channel of a deeper layer'),
        md("## Feature maps"),
        code(
            """
maps = cw.activations(model, cat, ["_relu0", "_blocks.4._relu1", "_fc"])
{name: a.shape for name, a in maps.items()}
"""
        ),
        code('cw.render_activations(model, cat, "_blocks.4._relu1", channels=range(36))'),
        code('cw.render_activations(model, cat, "_blocks.4._relu1", view="sum")'),
        code('cw.render_activations(model, cat, "_avg_pooling", view="dense")'),
        code("cw.render_activations(model, cat, -1)   # top-5 classes"),
        md("## Matplotlib, for papers"),
        code(
            """
fig = cw.plot_activations(lenet, cw.zoo.sample_image("digit3"), "relu1")
"""
        ),
        md("## The widget"),
        code("cw.Explorer(lenet, cw.zoo.sample_image('digit3'))"),
    ]


if __name__ == "__main__":
    NOTEBOOKS.mkdir(exist_ok=True)
    write("quickstart.ipynb", QUICKSTART)
    write("pytorch_tour.ipynb", tour("torch"))
    write("keras_tour.ipynb", tour("keras"))
    print("wrote", ", ".join(sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))))
