// Unit tests of the feature-visualization view of widget.js: node --test + jsdom and a
// hand-made model that records what the widget writes.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import { fvProgressText, parseWhole } from "../../cnn_widgets/static/widget.js";

const HOSTILE = "<img src=x onerror=alert(1)>";
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG_BYTES = new Uint8Array([0xff, 0xd8, 0xff, 0xe0]);

/** Eight tiles of 28 px showing channels 8..15 (page 1 of a 16-channel layer). */
const FV_LAYOUT = {
  count: 8,
  ncols: 3,
  nrows: 3,
  tile_h: 28,
  tile_w: 28,
  pad: 1,
  width: 86,
  height: 86,
  channels: [8, 9, 10, 11, 12, 13, 14, 15],
};

const VIEWS = ["filters", "activations", "featureviz", "table"];

function fvState(overrides = {}) {
  const conv = { kind: "conv2d", has_filters: true, ran: true, views: VIEWS };
  return {
    views: VIEWS,
    choices: choicesFor(VIEWS),
    view: "featureviz",
    layers: [
      { index: 0, name: "conv1", type: "Conv2d", shape: [8, 28, 28], ...conv },
      { index: 1, name: "conv2", type: "Conv2d", shape: [16, 10, 10], ...conv },
      // Ran, but with no output a feature-viz run can use.
      { index: 2, name: "flatten", type: "Flatten", shape: null, kind: "other", views: ["table"] },
    ],
    layer: "conv2",
    channel: 8,
    channel_count: 16,
    table: [],
    normalization: "layer",
    colormap: "viridis",
    input_channel: "auto",
    activation_mode: "grid",
    vector_mode: "auto",
    page: 1,
    page_size: 8,
    image_png: new DataView(PNG_BYTES.buffer),
    sample: "",
    samples: [],
    grid: new DataView(PNG_BYTES.buffer),
    grid_format: "png",
    grid_layout: {},
    grid_meta: { text: "8 of 8 shown", page: 0, pages: 1, width: 86, height: 86 },
    detail: new DataView(PNG_BYTES.buffer),
    detail_format: "png",
    detail_stats: {},
    predictions: [{ index: 3, label: "three", value: 0.9 }],
    status: "idle",
    busy: false,
    error: "",
    fv_steps: 256,
    fv_size: 0,
    fv_recipe: "lucid",
    fv_objective: "channel",
    fv_run: 0,
    fv_stop: 0,
    fv_running: false,
    fv_progress: 0,
    fv_step: 0,
    fv_image: new DataView(new ArrayBuffer(0)),
    fv_format: "png",
    fv_layout: {},
    fv_meta: {},
    fv_detail: new DataView(new ArrayBuffer(0)),
    ...overrides,
  };
}

const env = useWidgetDom();
let dom;
let urls;
beforeEach(() => ({ dom, urls } = env));

function mount(state = fvState()) {
  return env.mount(state);
}

const frame = () => nextFrame(dom.window);

function change(node, type = "change") {
  node.dispatchEvent(new dom.window.Event(type, { bubbles: true }));
}

/** A run's frame arriving from Python (one update), and the animation frame that paints it. */
async function runFrame(model, bytes, format, meta) {
  model.emit("fv_format", format);
  model.emit("fv_layout", { ...FV_LAYOUT });
  model.emit("fv_meta", meta);
  model.emit("fv_image", new DataView(bytes.buffer));
  await frame();
}

describe("feature visualization helpers", () => {
  test("fvProgressText says the step, the state and the image size", () => {
    const meta = { step: 37, steps: 256, state: "stopped", size: [28, 28] };
    assert.equal(fvProgressText(meta, false), "step 37 of 256 · stopped · 28×28 px");
    assert.equal(fvProgressText(meta, true), "step 37 of 256 · running · 28×28 px");
    assert.equal(fvProgressText(null, true), "starting…");
    assert.equal(fvProgressText({}, false), "");
  });

  test("parseWhole accepts whole numbers only", () => {
    assert.equal(parseWhole(" 128 "), 128);
    assert.equal(parseWhole("-3"), -3);
    assert.equal(parseWhole("1.5"), null);
    assert.equal(parseWhole("12abc"), null);
    assert.equal(parseWhole(""), null);
  });
});

describe("feature visualization view", () => {
  test("shows its controls and hides those of the other views", () => {
    const { byRole, el } = mount();
    assert.equal(el.querySelector('[data-part="featureviz"]').hidden, false);
    assert.equal(byRole("normalization").closest("[data-part]").hidden, true);
    assert.equal(byRole("input-image").closest("[data-part]").hidden, true);
    assert.equal(byRole("predictions").hidden, true);
    assert.equal(byRole("fv-run").textContent, "Run gradient ascent");
    assert.equal(byRole("fv-stop").disabled, true);
    assert.equal(byRole("fv-hint").hidden, false);
    assert.equal(byRole("grid").hidden, true); // nothing synthesized yet
    assert.equal(byRole("page-info").textContent, "channels 8–15 of 16 · page 2 of 2");
    const options = [...byRole("layer").options].map((o) => o.value);
    assert.deepEqual(options, ["conv1", "conv2"]); // a layer without output is not offered
  });

  test("every feature-viz control is labelled and suppresses notebook shortcuts", () => {
    const { el } = mount();
    const controls = el.querySelectorAll(".cnnw-fv button, .cnnw-fv input, .cnnw-fv select");
    assert.equal(controls.length, 7);
    for (const node of controls) {
      assert.ok(node.hasAttribute("data-lm-suppress-shortcuts"), node.outerHTML.slice(0, 80));
      if (node.tagName !== "BUTTON")
        assert.ok(el.querySelector(`label[for="${node.id}"]`), node.outerHTML.slice(0, 80));
    }
  });

  test("Run and Stop bump their counters; Stop only works while running", async () => {
    const { model, byRole } = mount();
    byRole("fv-run").click();
    assert.deepEqual(model.sets(), [["fv_run", 1]]);
    model.emit("fv_running", true);
    await frame();
    assert.equal(byRole("fv-stop").disabled, false);
    assert.equal(byRole("fv-run").textContent, "Restart");
    assert.equal(byRole("status").querySelector(".cnnw-spinner").hidden, false);
    byRole("fv-stop").click();
    assert.deepEqual(model.sets().at(-1), ["fv_stop", 1]);
  });

  test("Save GIF asks the kernel for the animation and downloads the GIF it sends", async () => {
    const { model, byRole, el } = mount();
    const downloads = [];
    dom.window.HTMLAnchorElement.prototype.click = function () {
      downloads.push({ name: this.download, attached: el.contains(this) });
    };
    const save = byRole("fv-save-gif");
    assert.equal(save.disabled, true); // no run on screen
    model.emit("fv_gif_ready", true);
    await frame();
    assert.equal(save.disabled, false);
    model.emit("fv_running", true);
    await frame();
    assert.equal(save.disabled, true); // frames of a run still going are not complete
    model.emit("fv_running", false);
    await frame();
    // A GIF that arrives unasked (another view of the same widget asked) is not downloaded.
    model.emit("fv_gif", new DataView(new Uint8Array([0x47, 0x49, 0x46]).buffer));
    await frame();
    assert.equal(downloads.length, 0);
    save.click();
    assert.deepEqual(model.sets(), [["fv_save_gif", 1]]);
    model.emit("fv_meta", { layer: HOSTILE, state: "done" });
    model.emit("fv_gif", new DataView(new Uint8Array([0x47, 0x49, 0x46, 0x38]).buffer));
    await frame();
    assert.equal(downloads.length, 1);
    assert.match(downloads[0].name, /^[\w.-]+-featureviz\.gif$/);
    assert.equal(downloads[0].attached, true);
    assert.equal(el.querySelectorAll("a").length, 0);
    model.emit("fv_gif", new DataView(new Uint8Array([0x47, 0x49, 0x46, 0x39]).buffer));
    await frame();
    assert.equal(downloads.length, 1); // one click, one download
  });

  test("settings are sent as numbers and choices; bad numbers stay in the browser", async () => {
    const { model, byRole } = mount();
    const steps = byRole("fv-steps");
    steps.value = "64";
    change(steps);
    const size = byRole("fv-size");
    size.value = "96";
    change(size);
    size.value = "";
    change(size);
    byRole("fv-recipe").value = "naive";
    change(byRole("fv-recipe"));
    byRole("fv-objective").value = "neuron";
    change(byRole("fv-objective"));
    assert.deepEqual(model.sets(), [
      ["fv_steps", 64],
      ["fv_size", 96],
      ["fv_size", 0],
      ["fv_recipe", "naive"],
      ["fv_objective", "neuron"],
    ]);
    await frame();
    steps.value = "1e3x";
    change(steps);
    await frame();
    assert.equal(model.sets().length, 5);
    assert.equal(byRole("error").textContent, "steps must be a whole number");
    assert.equal(steps.getAttribute("aria-invalid"), "true");
    // Out of the limits Python sent: refused here, and what the user typed stays in the field
    // (a repaint of the panel, here by the run's progress, does not overwrite it).
    steps.value = "0";
    change(steps);
    model.emit("fv_progress", 0.5);
    await frame();
    assert.equal(model.sets().length, 5);
    assert.equal(byRole("error").textContent, "steps must be between 1 and 100000");
    assert.equal(steps.value, "0");
    assert.equal(steps.max, "100000");
    size.value = "4";
    change(size);
    await frame();
    assert.equal(
      byRole("error").textContent,
      "size must be between 8 and 1024, or empty for automatic",
    );
    // A new value from Python replaces the field's text.
    model.emit("fv_steps", 128);
    await frame();
    assert.equal(steps.value, "128");
    assert.equal(steps.hasAttribute("aria-invalid"), false);
  });

  test("streamed frames replace the picture, revoke the old URL and move the progress", async () => {
    const { model, byRole } = mount();
    model.emit("fv_running", true);
    await runFrame(model, JPEG_BYTES, "jpeg", {
      step: 10,
      steps: 100,
      state: "running",
      size: [28, 28],
    });
    model.emit("fv_progress", 0.1);
    await frame();
    const grid = byRole("grid");
    const first = grid.getAttribute("src");
    assert.equal(urls.created.find((u) => u.url === first).blob.type, "image/jpeg");
    assert.equal(grid.hidden, false);
    assert.equal(byRole("fv-hint").hidden, true);
    assert.equal(byRole("fv-progress").value, 0.1);
    assert.equal(byRole("fv-progress-text").textContent, "step 10 of 100 · running · 28×28 px");
    await runFrame(model, PNG_BYTES, "png", {
      step: 100,
      steps: 100,
      state: "done",
      size: [28, 28],
      channels: FV_LAYOUT.channels,
      values: [1.5, 0, 0, 0, 0, 0, 0, 0],
    });
    model.emit("fv_progress", 1);
    model.emit("fv_running", false);
    await frame();
    const second = grid.getAttribute("src");
    assert.notEqual(second, first);
    assert.ok(urls.revoked.includes(first));
    assert.equal(urls.created.find((u) => u.url === second).blob.type, "image/png");
    assert.equal(grid.style.width, `${86 * 5}px`);
    model.emit("fv_detail", new DataView(PNG_BYTES.buffer));
    await frame();
    assert.equal(byRole("detail-stats").textContent, "channel 8 · objective 1.5");
  });

  test("a click on a tile selects the channel it shows", async () => {
    const { model, byRole } = mount();
    await runFrame(model, PNG_BYTES, "png", { step: 1, steps: 1, state: "done" });
    const grid = byRole("grid");
    grid.getBoundingClientRect = () => ({ left: 0, top: 0, width: 172, height: 172 });
    grid.dispatchEvent(
      new dom.window.MouseEvent("click", { bubbles: true, clientX: 60, clientY: 60 }),
    );
    assert.deepEqual(model.sets(), [["channel", 12]]);
  });

  test("text from Python stays text", async () => {
    const { model, byRole } = mount();
    model.emit("error", HOSTILE);
    await runFrame(model, PNG_BYTES, "png", { step: 1, steps: 2, state: HOSTILE });
    assert.equal(byRole("error").textContent, HOSTILE);
    assert.equal(byRole("fv-progress-text").textContent, `step 1 of 2 · ${HOSTILE}`);
    // Only the widget's own pictures, each with its role: none made from the hostile text.
    assert.equal(byRole("root").querySelectorAll("img:not([data-role])").length, 0);
  });

  test("switching back to another view shows that view's picture again", async () => {
    const { model, byRole } = mount();
    await runFrame(model, JPEG_BYTES, "jpeg", { step: 1, steps: 2, state: "running" });
    model.emit("view", "activations");
    await frame();
    const src = byRole("grid").getAttribute("src");
    assert.equal(urls.created.find((u) => u.url === src).blob.type, "image/png");
    assert.equal(byRole("predictions").hidden, false);
    assert.equal(byRole("root").querySelector('[data-part="featureviz"]').hidden, true);
  });

  test("cleanup revokes the feature-viz picture's URL", async () => {
    const { model, cleanup } = mount();
    await runFrame(model, PNG_BYTES, "png", { step: 1, steps: 1, state: "done" });
    cleanup();
    assert.equal(new Set(urls.revoked).size, urls.created.length);
  });
});
