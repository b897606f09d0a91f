// Unit tests of the attribution view of widget.js: node --test + jsdom and a hand-made model
// that records what the widget writes.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import { attributionCaption, attributionLine, classText } from "../../cnn_widgets/static/widget.js";

const HOSTILE = "<img src=x onerror=alert(1)>";
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const VIEWS = ["attribution"];
const TILE = { count: 1, ncols: 1, nrows: 1, tile_h: 32, tile_w: 32, pad: 2 };

function attrState(overrides = {}) {
  return {
    views: VIEWS,
    choices: choicesFor(VIEWS),
    view: "attribution",
    layers: [{ index: 0, name: "conv1", type: "Conv2d", shape: [8, 32, 32], kind: "conv2d" }],
    layer: "conv1",
    channel: 0,
    channel_count: 8,
    table: [],
    page: 0,
    page_size: 64,
    image_png: new DataView(PNG_BYTES.buffer),
    sample: "",
    samples: [],
    status: "idle",
    busy: false,
    error: "",
    attr_method: "gradcam",
    attr_target: -1,
    attr_layer: "",
    attr_layers: ["conv1", "relu1"],
    attr_alpha: 0.5,
    attr_compare: false,
    attr_stop: 0,
    attr_running: false,
    attr_progress: 0,
    attr_classes: [
      { index: 3, label: "cat", probability: 0.75 },
      { index: 5, label: "dog", probability: 0.2 },
    ],
    attr_picture: new DataView(PNG_BYTES.buffer),
    attr_meta: {
      ...TILE,
      width: 32,
      height: 32,
      state: "done",
      target: 3,
      label: "cat",
      tiles: [{ method: "gradcam", name: "Grad-CAM", layer: "relu1", score: 2.5 }],
    },
    ...overrides,
  };
}

const env = useWidgetDom();
let dom;
beforeEach(() => ({ dom } = env));
const frame = () => nextFrame(dom.window);

describe("attribution helpers", () => {
  test("texts of classes, tiles and the line above the picture", () => {
    assert.equal(classText({ index: 3, label: "cat", probability: 0.75 }), "cat 75.0 %");
    assert.equal(classText({ index: 7 }), "class 7");
    assert.equal(
      attributionCaption({ name: "Grad-CAM", layer: "relu1", score: 2.5 }),
      "Grad-CAM @ relu1 · score 2.5",
    );
    assert.equal(attributionCaption({ method: "saliency", layer: null }), "saliency");
    assert.equal(
      attributionLine({ tiles: [], target: 3, label: "cat", state: "done" }),
      "Where the model looks for cat",
    );
    assert.equal(
      attributionLine({ tiles: [], target: null, state: "stopped" }),
      "Where the model looks for a custom target (stopped)",
    );
    assert.equal(attributionLine({ state: "computing" }), "computing …");
    assert.equal(attributionLine({}), "");
  });
});

describe("attribution view", () => {
  test("shows its controls, the classes as targets and the picture", () => {
    const { byRole, allByRole, el } = env.mount(attrState());
    assert.equal(el.querySelector('[data-part="attribution"]').hidden, false);
    assert.equal(el.querySelector('[data-part="picture"]').hidden, true);
    const methods = [...byRole("attr-method").options].map((o) => o.value);
    assert.equal(methods.length, 10);
    assert.equal(byRole("attr-method").value, "gradcam");
    const layers = [...byRole("attr-layer").options].map((o) => [o.value, o.textContent]);
    assert.deepEqual(layers, [
      ["", "automatic"],
      ["conv1", "conv1"],
      ["relu1", "relu1"],
    ]);
    const classes = allByRole("attr-class");
    assert.deepEqual(
      classes.map((b) => [b.textContent, b.getAttribute("aria-pressed")]),
      [
        ["cat 75.0 %", "true"],
        ["dog 20.0 %", "false"],
      ],
    );
    assert.equal(byRole("attr-picture").hidden, false);
    assert.equal(byRole("attr-line").textContent, "Where the model looks for cat");
    assert.equal(byRole("attr-captions").textContent, "Grad-CAM @ relu1 · score 2.5");
    assert.equal(byRole("attr-stop").hidden, true);
  });

  test("clicking a class, the opacity, compare and Stop write their traits", async () => {
    const { byRole, allByRole, model } = env.mount(attrState({ attr_running: true }));
    allByRole("attr-class")[1].click();
    const alpha = byRole("attr-alpha");
    alpha.value = "0.8";
    alpha.dispatchEvent(new dom.window.Event("input", { bubbles: true }));
    const compare = byRole("attr-compare");
    compare.checked = true;
    compare.dispatchEvent(new dom.window.Event("change", { bubbles: true }));
    byRole("attr-stop").click();
    assert.deepEqual(model.sets(), [
      ["attr_target", 5],
      ["attr_alpha", 0.8],
      ["attr_compare", true],
      ["attr_stop", 1],
    ]);
    await frame();
    assert.equal(byRole("attr-method").disabled, true); // compare shows several methods
    assert.equal(allByRole("attr-class")[1].getAttribute("aria-pressed"), "true");
  });

  test("compare mode captions every tile", async () => {
    const { byRole, model } = env.mount(attrState());
    model.emit("attr_meta", {
      ...TILE,
      count: 2,
      ncols: 2,
      width: 66,
      height: 32,
      state: "done",
      target: 3,
      label: "cat",
      tiles: [
        { method: "gradcam", name: "Grad-CAM", layer: "relu1", score: 2.5 },
        { method: "saliency", name: "saliency (gradient)", layer: null, score: 2.5 },
      ],
    });
    await frame();
    const captions = [...byRole("attr-captions").children].map((c) => c.textContent);
    assert.deepEqual(captions, ["Grad-CAM @ relu1 · score 2.5", "saliency (gradient) · score 2.5"]);
  });

  test("a hostile class label and layer name are shown as text", () => {
    const { el, allByRole, byRole } = env.mount(
      attrState({
        attr_classes: [{ index: 0, label: HOSTILE, probability: 1 }],
        attr_layers: [HOSTILE],
        attr_meta: {
          ...TILE,
          width: 32,
          height: 32,
          target: 0,
          label: HOSTILE,
          tiles: [{ method: "gradcam", name: "Grad-CAM", layer: HOSTILE, score: 1 }],
        },
      }),
    );
    assert.equal(allByRole("attr-class")[0].textContent, `${HOSTILE} 100.0 %`);
    assert.equal(byRole("attr-line").textContent, `Where the model looks for ${HOSTILE}`);
    const images = [...el.querySelectorAll("img")].map((img) => img.getAttribute("data-role"));
    assert.ok(images.every((role) => role !== null)); // no element was made from the text
  });
});
