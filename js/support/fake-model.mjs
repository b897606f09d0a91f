/** A hand-made stand-in for the anywidget model: records set/save_changes/on/off calls and
 * lets a test play a change from Python with `emit`. Shared by the tests in test/. */

/**
 * The `choices` trait as Python sends it (`cnn_widgets.choices.for_frontend()`); the widget
 * builds every select from it. Regenerate after changing choices.py:
 * python -c "import json, cnn_widgets.choices as c; print(json.dumps(c.for_frontend()))"
 */
export const CHOICES = Object.freeze({
  normalization: [
    ["layer", "layer (one scale)"],
    ["channel", "per channel"],
    ["symmetric", "symmetric (zero = middle)"],
    ["std", "std (mean ± 5σ)"],
  ],
  colormap: [
    ["gray", "gray"],
    ["viridis", "viridis"],
    ["diverging", "diverging (blue–white–red)"],
  ],
  activation_mode: [
    ["grid", "grid of channels"],
    ["sum", "sum over channels"],
    ["mean", "mean over channels"],
    ["kernel x image", "kernel × image (selected filter)"],
  ],
  vector_mode: [
    ["auto", "auto"],
    ["dense", "values + histogram"],
    ["probabilities", "top-k probabilities"],
  ],
  input_channel: [
    ["auto", "auto"],
    ["rgb", "RGB"],
    ["mean", "mean"],
  ],
  fv_objective: [
    ["channel", "channel (mean)"],
    ["neuron", "neuron (centre)"],
    ["layer", "layer (DeepDream)"],
    ["class", "class logit"],
  ],
  fv_recipe: [
    ["lucid", "lucid (interpretable)"],
    ["naive", "naive (pixel ascent)"],
  ],
  attr_method: [
    ["gradcam", "Grad-CAM"],
    ["gradcam++", "Grad-CAM++"],
    ["layercam", "LayerCAM"],
    ["hirescam", "HiResCAM"],
    ["scorecam", "Score-CAM"],
    ["saliency", "saliency (gradient)"],
    ["smoothgrad", "SmoothGrad"],
    ["integrated_gradients", "integrated gradients"],
    ["guided_backprop", "guided backprop"],
    ["guided_gradcam", "guided Grad-CAM"],
  ],
  view: [
    ["filters", "Filters"],
    ["activations", "Feature maps"],
    ["featureviz", "Feature viz"],
    ["attribution", "Attribution"],
    ["table", "Layer table"],
    ["monitor", "Training"],
  ],
  zoom: [
    ["fit", "fit"],
    ["1", "1×"],
    ["2", "2×"],
    ["4", "4×"],
    ["8", "8×"],
  ],
  limits: {
    page_size: [1, 4096],
    top_k: [1, 100],
    fv_steps: [1, 100000],
    fv_size: [8, 1024],
    upload_bytes: [1, 26214400],
  },
});

/** The `choices` trait of a widget with these views (Python narrows `view` the same way). */
export function choicesFor(views) {
  const labels = new Map(CHOICES.view);
  return { ...CHOICES, view: views.map((name) => [name, labels.get(name) ?? name]) };
}

function same(a, b) {
  if (Object.is(a, b)) return true;
  const plain = (value) =>
    value !== null && typeof value === "object" && !ArrayBuffer.isView(value);
  return plain(a) && plain(b) && JSON.stringify(a) === JSON.stringify(b);
}

export class FakeModel {
  constructor(state) {
    this.state = { ...state };
    this.calls = [];
    this.handlers = new Map();
  }
  get(name) {
    return this.state[name];
  }
  /** Like Backbone's set: a changed value fires `change:name` at once, in the browser. */
  set(name, value) {
    this.calls.push(["set", name, value]);
    const old = this.state[name];
    this.state[name] = value;
    if (!same(old, value)) this.fire(name);
  }
  save_changes() {
    this.calls.push(["save_changes"]);
  }
  on(event, callback) {
    this.calls.push(["on", event]);
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(callback);
  }
  off(event, callback) {
    this.calls.push(["off", event]);
    this.handlers.get(event)?.delete(callback);
  }
  /** A change arriving from Python. */
  emit(name, value) {
    this.state[name] = value;
    this.fire(name);
  }
  fire(name) {
    for (const callback of this.handlers.get(`change:${name}`) ?? []) callback();
  }
  /** A custom message to the kernel (`model.send`). */
  send(content) {
    this.calls.push(["send", content]);
  }
  /** A custom message arriving from Python. */
  message(content, buffers = []) {
    for (const callback of this.handlers.get("msg:custom") ?? []) callback(content, buffers);
  }
  sets() {
    return this.calls.filter((call) => call[0] === "set").map((call) => [call[1], call[2]]);
  }
  listenerCount() {
    let total = 0;
    for (const callbacks of this.handlers.values()) total += callbacks.size;
    return total;
  }
}

/** Resolve after the window's next animation frame: the widget repaints in it. */
export function nextFrame(window) {
  return new Promise((resolve) => window.requestAnimationFrame(() => resolve()));
}
