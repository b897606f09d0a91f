// Unit tests of the analysis parts of widget.js (health marks and list, the top-images strip,
// the kernel x image mode): node --test + jsdom and a hand-made model.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import { flagBoxes, healthLine, topCaption } from "../../cnn_widgets/static/widget.js";

const HOSTILE = "<img src=x onerror=alert(1)>";
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** The activation mode that shows one filter applied to each input channel (from `choices`). */
const KERNEL_MODE = "kernel x image";
const VIEWS = ["filters", "activations", "featureviz", "table"];

/** Page 1 of a 16-channel layer: 8 tiles of 10 px, 3 per row, 1-pixel gaps. */
const LAYOUT = {
  count: 8,
  ncols: 3,
  nrows: 3,
  tile_h: 10,
  tile_w: 10,
  pad: 1,
  width: 32,
  height: 32,
  channels: null,
  offset: 8,
};

function conv2State(overrides = {}) {
  return {
    views: VIEWS,
    choices: choicesFor(VIEWS),
    view: "activations",
    layers: [
      {
        index: 2,
        name: "conv2",
        type: "Conv2d",
        shape: [16, 10, 10],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: VIEWS,
      },
      {
        index: 3,
        name: "relu2",
        type: "ReLU",
        shape: [16, 10, 10],
        kind: "other",
        ran: true,
        views: ["activations", "featureviz", "table"],
      },
    ],
    layer: "conv2",
    channel: 8,
    channel_count: 16,
    page: 1,
    page_size: 8,
    table: [],
    normalization: "layer",
    colormap: "viridis",
    input_channel: "auto",
    activation_mode: "grid",
    vector_mode: "auto",
    samples: [],
    sample: "",
    image_png: new DataView(new ArrayBuffer(0)),
    grid: new DataView(PNG_BYTES.buffer),
    grid_format: "png",
    grid_layout: { ...LAYOUT },
    grid_meta: { layer: "conv2", text: "8 of 16 shown", page: 1, pages: 2, width: 32, height: 32 },
    detail: new DataView(PNG_BYTES.buffer),
    detail_format: "png",
    detail_stats: { shape: [10, 10], min: 0, max: 1, mean: 0.5, nonfinite: 0 },
    predictions: [],
    status: "idle",
    busy: false,
    error: "",
    images_count: 0,
    health_flags: {},
    health_findings: [],
    health_summary: "",
    health_running: false,
    health_run: 0,
    top_strip: new DataView(new ArrayBuffer(0)),
    top_format: "png",
    top_meta: {},
    ...overrides,
  };
}

const env = useWidgetDom();
let dom;
let urls;
beforeEach(() => ({ dom, urls } = env));

/** Play a change from Python and let the widget repaint. */
async function emit(model, name, value) {
  model.emit(name, value);
  await nextFrame(dom.window);
}

function mount(state = conv2State()) {
  return env.mount(state);
}

describe("health marks", () => {
  test("flagBoxes places each flagged channel of the page on its tile", () => {
    const marks = flagBoxes(LAYOUT, { 12: ["dead_channel"], 9: ["dead_filter", "dead_channel"] });
    assert.deepEqual(
      marks.map((m) => [m.channel, m.kinds]),
      [
        [9, ["dead_filter", "dead_channel"]],
        [12, ["dead_channel"]],
      ],
    );
    // Channel 9 is tile 1 (row 0, column 1); channel 12 is tile 4 (row 1, column 1).
    assert.deepEqual(marks[0].box, { left: 11 / 32, top: 0, width: 10 / 32, height: 10 / 32 });
    assert.deepEqual(marks[1].box, {
      left: 11 / 32,
      top: 11 / 32,
      width: 10 / 32,
      height: 10 / 32,
    });
    // Channels off the page, or keys that are no channel, get no mark.
    assert.deepEqual(flagBoxes(LAYOUT, { 3: ["dead_channel"], x: ["dead_channel"] }), []);
    assert.deepEqual(flagBoxes(null, { 9: ["dead_channel"] }), []);
  });

  test("the grid shows a mark over each flagged tile, and only for its own layer", async () => {
    const { model, byRole, allByRole } = mount();
    assert.equal(allByRole("health-flag").length, 0);
    assert.equal(byRole("health-flags").hidden, true);
    await emit(model, "health_flags", {
      9: ["dead_channel"],
      12: ["dead_channel"],
      4: ["dead_channel"],
    });
    const marks = allByRole("health-flag");
    assert.deepEqual(
      marks.map((m) => m.getAttribute("data-channel")),
      ["9", "12"],
    );
    assert.equal(marks[0].style.left, `${(11 / 32) * 100}%`);
    assert.equal(marks[1].style.top, `${(11 / 32) * 100}%`);
    assert.equal(marks[0].style.width, `${(10 / 32) * 100}%`);
    assert.equal(marks[0].getAttribute("title"), "channel 9: dead channel");
    assert.equal(byRole("health-flags").hidden, false);
    // After a layer change the new layer's flags arrive before its picture: no marks on the
    // old picture.
    await emit(model, "layer", "relu2");
    await emit(model, "health_flags", { 8: ["dead_channel"] });
    assert.equal(allByRole("health-flag").length, 0);
    await emit(model, "grid_meta", { ...model.get("grid_meta"), layer: "relu2" });
    assert.deepEqual(
      allByRole("health-flag").map((m) => m.getAttribute("data-channel")),
      ["8"],
    );
    // Kernel x image tiles are input channels: no layout, no marks.
    await emit(model, "grid_layout", {});
    assert.equal(allByRole("health-flag").length, 0);
  });

  test("the list shows findings as text, hostile strings included", async () => {
    const { model, el, byRole } = mount();
    assert.equal(byRole("health-list").hidden, true);
    await emit(model, "health_summary", HOSTILE);
    await emit(model, "health_findings", [
      { channel: 4, kind: "dead_channel", label: "dead channel", message: "zero on every image" },
      { channel: 9, kind: "dead_filter", label: HOSTILE, message: HOSTILE },
    ]);
    const items = [...byRole("health-list").querySelectorAll("li")];
    assert.deepEqual(
      items.map((li) => li.textContent),
      ["channel 4: dead channel — zero on every image", `channel 9: ${HOSTILE} — ${HOSTILE}`],
    );
    assert.equal(byRole("health-summary").textContent, HOSTILE);
    assert.equal(byRole("health-list").hidden, false);
    // No element from the hostile text: every picture of the widget is one of its own roles.
    assert.equal(el.querySelectorAll("img:not([data-role])").length, 0);
    assert.equal(healthLine({ channel: null, label: "dead filter" }), "layer: dead filter");
  });

  test("Check health sends a click count and is disabled while the check runs", async () => {
    const { model, byRole } = mount();
    const button = byRole("health-run");
    assert.ok(button.hasAttribute("data-lm-suppress-shortcuts"));
    button.click();
    assert.deepEqual(model.sets(), [["health_run", 1]]);
    await emit(model, "health_running", true);
    assert.equal(button.disabled, true);
    await emit(model, "health_running", false);
    assert.equal(button.disabled, false);
  });
});

describe("top-activating images", () => {
  const META = {
    count: 3,
    ncols: 3,
    nrows: 1,
    tile_h: 14,
    tile_w: 14,
    pad: 2,
    width: 46,
    height: 14,
    layer: "conv2",
    channel: 8,
    k: 3,
    images: 10,
    scores: [12.75, 11.373, 0.0001],
    indices: [7, 0, 1],
    sources: ["a.png", null, HOSTILE],
    state: "done",
  };

  test("the strip shows only when images are set, enlarged, with scores as text", async () => {
    const { model, byRole } = mount();
    const figure = byRole("top-strip").closest("figure");
    assert.equal(figure.hidden, true); // no images set
    await emit(model, "images_count", 10);
    assert.equal(figure.hidden, false);
    await emit(model, "top_meta", {
      state: "computing",
      layer: "conv2",
      channel: 8,
      k: 3,
      images: 10,
    });
    assert.equal(
      byRole("top-caption").textContent,
      "finding the 3 of 10 images that excite channel 8 most…",
    );
    model.state.top_meta = META;
    await emit(model, "top_strip", new DataView(PNG_BYTES.buffer));
    const strip = byRole("top-strip");
    assert.equal(strip.hidden, false);
    assert.equal(strip.style.width, "276px"); // 46 px x 6, up to 300
    assert.equal(
      byRole("top-caption").textContent,
      "top 3 of 10 images for channel 8 · max activation 12.8, 11.4, 1.00e-4",
    );
    assert.equal(strip.getAttribute("title"), `a.png, ${HOSTILE}`);
    assert.equal(urls.created.at(-1).blob.type, "image/png");
    await emit(model, "images_count", 0);
    assert.equal(figure.hidden, true);
  });

  test("topCaption says when ranking failed", () => {
    assert.equal(topCaption({}), "");
    assert.equal(
      topCaption({ state: "error", channel: 2 }),
      "no top images for channel 2 (see the error)",
    );
  });
});

describe("kernel x image", () => {
  test("the mode is offered and the detail caption says it is the sum of the inputs", async () => {
    const { model, byRole } = mount();
    const select = byRole("activation-mode");
    assert.ok([...select.options].some((o) => o.value === KERNEL_MODE));
    select.value = KERNEL_MODE;
    select.dispatchEvent(new dom.window.Event("change", { bubbles: true }));
    assert.deepEqual(model.sets(), [["activation_mode", KERNEL_MODE]]);
    await emit(model, "detail_stats", {
      shape: [10, 10],
      min: -1,
      max: 2,
      mean: 0.5,
      nonfinite: 0,
      sum_of: 8,
      bias: 0.25,
    });
    assert.equal(
      byRole("detail-stats").textContent,
      "Σ of 8 inputs × filter 8 (before bias) · min -1 · max 2 · mean 0.5 · bias 0.25",
    );
  });
});

test("cleanup removes the marks, the listeners and the strip's object URL", async () => {
  const { model, el, cleanup } = mount(conv2State({ images_count: 3 }));
  await emit(model, "health_flags", { 9: ["dead_channel"] });
  model.state.top_meta = { state: "done", width: 46, height: 14, k: 3, images: 3, channel: 8 };
  await emit(model, "top_strip", new DataView(PNG_BYTES.buffer));
  const stripUrl = urls.created.at(-1).url;
  cleanup();
  assert.equal(model.listenerCount(), 0);
  assert.ok(urls.revoked.includes(stripUrl));
  assert.equal(el.querySelectorAll("[data-role='health-flag']").length, 0);
  assert.equal(el.children.length, 0);
});
