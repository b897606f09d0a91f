// Unit tests of cnn_widgets/static/widget.js without a browser: node --test + jsdom and a
// hand-made model that records what the widget asks of it.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { FakeModel, choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import widget, {
  channelAt,
  displayScale,
  layerLabel,
  safeFileName,
  tileBox,
  tileIndexAt,
  visibleLayers,
} from "../../cnn_widgets/static/widget.js";

const HOSTILE = "<img src=x onerror=alert(1)>";
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const LAYOUT = {
  count: 8,
  ncols: 3,
  nrows: 3,
  tile_h: 28,
  tile_w: 28,
  pad: 1,
  width: 86,
  height: 86,
  channels: null,
  offset: 0,
};

const ALL_VIEWS = ["filters", "activations", "featureviz", "table"];
const OUTPUT_VIEWS = ["activations", "featureviz", "table"];

function lenetState(overrides = {}) {
  const views = overrides.views ?? ["filters", "activations", "table"];
  return {
    views,
    choices: choicesFor(views),
    view: "activations",
    layers: [
      {
        index: 0,
        name: "conv1",
        type: "Conv2d",
        shape: [8, 28, 28],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: ALL_VIEWS,
      },
      {
        index: 1,
        name: "relu1",
        type: "ReLU",
        shape: [8, 28, 28],
        kind: "other",
        has_filters: false,
        ran: true,
        views: OUTPUT_VIEWS,
      },
      {
        index: 2,
        name: "conv2",
        type: "Conv2d",
        shape: [16, 10, 10],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: ALL_VIEWS,
      },
      {
        index: 3,
        name: "fc2",
        type: "Linear",
        shape: [10],
        kind: "dense",
        has_filters: false,
        ran: true,
        views: OUTPUT_VIEWS,
      },
    ],
    layer: "conv1",
    channel: 0,
    channel_count: 8,
    table: [
      {
        index: 0,
        name: "conv1",
        type: "Conv2d",
        shape_text: "(8, 28, 28)",
        params: "weight(8, 1, 5, 5)",
        num_params: 208,
        has_filters: true,
      },
      {
        index: 3,
        name: "fc2",
        type: "Linear",
        shape_text: "(10)",
        params: "weight(10, 64)",
        num_params: 650,
        has_filters: false,
      },
    ],
    normalization: "layer",
    colormap: "viridis",
    input_channel: "auto",
    activation_mode: "grid",
    vector_mode: "auto",
    page: 0,
    page_size: 64,
    image_png: new DataView(PNG_BYTES.buffer),
    sample: "",
    samples: ["digit7", "chelsea"],
    grid: new DataView(PNG_BYTES.buffer),
    grid_format: "png",
    grid_layout: { ...LAYOUT },
    grid_meta: { text: "8 of 8 shown", page: 0, pages: 1, width: 86, height: 86, in_channels: 1 },
    detail: new DataView(PNG_BYTES.buffer),
    detail_format: "png",
    detail_stats: { shape: [28, 28], min: -0.5, max: 2.25, mean: 0.125, nonfinite: 0 },
    predictions: [],
    status: "idle",
    busy: false,
    error: "",
    ...overrides,
  };
}

const env = useWidgetDom();
let dom;
let urls;
beforeEach(() => ({ dom, urls } = env));

function mount(state = lenetState()) {
  return env.mount(state);
}

/** Resolve once `predicate()` holds (file reading is asynchronous); fail after 2 s. */
async function until(predicate) {
  for (let waited = 0; !predicate(); waited += 5) {
    if (waited > 2000) throw new Error("condition not reached in 2 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const frame = () => nextFrame(dom.window);

function change(node, type = "change") {
  node.dispatchEvent(new dom.window.Event(type, { bubbles: true }));
}

/** Place the grid picture on screen at (left, top), shown at `scale` x its natural size. */
function placeGrid(grid, left, top, scale, layout = LAYOUT) {
  grid.getBoundingClientRect = () => ({
    left,
    top,
    width: layout.width * scale,
    height: layout.height * scale,
    right: left + layout.width * scale,
    bottom: top + layout.height * scale,
  });
}

function click(node, clientX, clientY) {
  node.dispatchEvent(new dom.window.MouseEvent("click", { bubbles: true, clientX, clientY }));
}

describe("tile geometry", () => {
  test("tileIndexAt maps pixels to tiles and gaps to -1", () => {
    assert.equal(tileIndexAt(LAYOUT, 0, 0), 0);
    assert.equal(tileIndexAt(LAYOUT, 27, 27), 0);
    assert.equal(tileIndexAt(LAYOUT, 28, 5), -1); // the 1-pixel gap
    assert.equal(tileIndexAt(LAYOUT, 29, 0), 1);
    assert.equal(tileIndexAt(LAYOUT, 29 * 2 + 3, 29 * 2 + 3), -1); // empty 9th slot
    assert.equal(tileIndexAt(LAYOUT, 29 + 3, 29 * 2 + 3), 7);
    assert.equal(tileIndexAt(LAYOUT, -1, 3), -1);
    assert.equal(tileIndexAt(LAYOUT, 86, 3), -1);
    assert.equal(tileIndexAt(null, 3, 3), -1);
  });

  test("channelAt adds the page offset, or reads the layout's channel list", () => {
    assert.equal(channelAt({ ...LAYOUT, offset: 64 }, 29 + 3, 3), 65);
    assert.equal(channelAt({ ...LAYOUT, channels: [5, 9, 11, 2, 3, 4, 6, 7] }, 29 + 3, 3), 9);
    assert.equal(channelAt(LAYOUT, 28, 3), -1);
  });

  test("tileBox is the inverse of channelAt, as fractions of the picture", () => {
    const box = tileBox({ ...LAYOUT, offset: 8 }, 12);
    assert.deepEqual(box, { left: 29 / 86, top: 29 / 86, width: 28 / 86, height: 28 / 86 });
    assert.equal(tileBox(LAYOUT, 8), null);
  });

  test("displayScale enlarges by whole factors and never shrinks below 1", () => {
    assert.equal(displayScale(86, 86, 480), 5);
    assert.equal(displayScale(1000, 500, 480), 1);
    assert.equal(displayScale(86, 86, 480, "2"), 2);
    assert.equal(displayScale(0, 0, 480), 1);
  });

  test("layer labels read 'name — type (shape)' and the filter narrows by name or type", () => {
    const layers = lenetState().layers;
    assert.equal(layerLabel(layers[0]), "conv1 — Conv2d (8, 28, 28)");
    assert.equal(layerLabel({ ...layers[0], shape: null }), "conv1 — Conv2d (—)");
    assert.deepEqual(
      visibleLayers(layers, "filters", "", "").map((l) => l.name),
      ["conv1", "conv2"],
    );
    assert.deepEqual(
      visibleLayers(layers, "activations", "relu", "conv1").map((l) => l.name),
      ["conv1", "relu1"],
    );
    assert.deepEqual(
      visibleLayers(layers, "activations", "LINEAR", "").map((l) => l.name),
      ["fc2"],
    );
  });

  test("download names keep only safe characters", () => {
    assert.equal(safeFileName("layer1.0/conv <b>-filters"), "layer1.0_conv_b_-filters");
    assert.equal(safeFileName("../.."), "picture");
  });
});

describe("render", () => {
  test("builds every control with a stable data-role", () => {
    const { byRole, el } = mount();
    for (const role of [
      "layer",
      "layer-filter",
      "normalization",
      "colormap",
      "input-channel",
      "activation-mode",
      "vector-mode",
      "zoom",
      "sample",
      "upload",
      "channel-slider",
      "channel-number",
      "grid",
      "detail",
      "detail-stats",
      "input-image",
      "page-prev",
      "page-next",
      "page-info",
      "save-png",
      "layer-table",
      "status",
      "error",
    ]) {
      assert.ok(byRole(role), `no element with data-role=${role}`);
    }
    const views = [...el.querySelectorAll('[data-role="view"]')].map((b) =>
      b.getAttribute("data-view"),
    );
    assert.deepEqual(views, ["filters", "activations", "table"]);
    assert.equal(byRole("error").getAttribute("role"), "alert");
    assert.equal(byRole("page-info").textContent, "8 of 8 shown");
    assert.match(byRole("detail-stats").textContent, /min -0\.5 · max 2\.25 · mean 0\.125/);
  });

  test("every focusable control carries data-lm-suppress-shortcuts", () => {
    const { el } = mount();
    const focusables = el.querySelectorAll("button, input, select, textarea, a[href], [tabindex]");
    assert.ok(focusables.length >= 15);
    for (const node of focusables) {
      assert.ok(node.hasAttribute("data-lm-suppress-shortcuts"), `${node.outerHTML.slice(0, 80)}`);
    }
  });

  test("every select and input has a <label for> naming it (or an aria-label)", () => {
    const { el } = mount();
    for (const node of el.querySelectorAll("select, input")) {
      const label = node.id && el.querySelector(`label[for="${node.id}"]`);
      assert.ok(
        label || node.getAttribute("aria-label"),
        `unlabelled ${node.outerHTML.slice(0, 80)}`,
      );
    }
  });

  test("changing the layer select sends the layer and saves", () => {
    const { model, byRole } = mount();
    const select = byRole("layer");
    assert.equal(select.options[0].textContent, "conv1 — Conv2d (8, 28, 28)");
    select.value = "conv2";
    change(select);
    assert.deepEqual(model.sets(), [["layer", "conv2"]]);
    assert.deepEqual(model.calls.at(-1), ["save_changes"]);
  });

  test("the layer filter narrows the menu in the browser, without a round trip", async () => {
    const { model, byRole } = mount();
    const filter = byRole("layer-filter");
    filter.value = "conv2";
    change(filter, "input");
    await frame();
    const names = [...byRole("layer").options].map((o) => o.value);
    assert.deepEqual(names, ["conv1", "conv2"]); // the current layer stays listed
    assert.equal(byRole("layer-count").textContent, "2 of 4");
    assert.deepEqual(model.sets(), []);
  });

  test("the filters view lists the layers Python says it accepts", async () => {
    const { model, byRole } = mount();
    model.emit("view", "filters");
    await frame();
    assert.deepEqual(
      [...byRole("layer").options].map((o) => o.value),
      ["conv1", "conv2"],
    );
  });

  test("clicking a tile selects its channel from the layout, with no round trip for mapping", () => {
    const { model, byRole } = mount(
      lenetState({ grid_layout: { ...LAYOUT, offset: 64 }, channel_count: 200 }),
    );
    const grid = byRole("grid");
    placeGrid(grid, 10, 20, 2);
    // Natural pixel (29 + 5, 58 + 3): column 1, row 2 -> tile 7 -> channel 64 + 7.
    click(grid, 10 + (29 + 5) * 2, 20 + (58 + 3) * 2);
    assert.deepEqual(model.sets(), [["channel", 71]]);
    assert.deepEqual(model.calls.at(-1), ["save_changes"]);
  });

  test("clicking a gap or an empty slot selects nothing", () => {
    const { model, byRole } = mount();
    const grid = byRole("grid");
    placeGrid(grid, 0, 0, 3);
    click(grid, 28 * 3 + 1, 10); // gap after the first column
    click(grid, (58 + 10) * 3, (58 + 10) * 3); // 9th slot of 8 tiles
    assert.deepEqual(model.sets(), []);
  });

  test("hovering a tile shows its layer and channel as text", () => {
    const { byRole } = mount();
    const grid = byRole("grid");
    placeGrid(grid, 0, 0, 1);
    grid.dispatchEvent(
      new dom.window.MouseEvent("mousemove", { bubbles: true, clientX: 30, clientY: 1 }),
    );
    const tooltip = byRole("tooltip");
    assert.equal(tooltip.hidden, false);
    assert.equal(tooltip.textContent, "conv1 · channel 1");
  });

  test("arrow keys on the grid move the channel by one or by a row", () => {
    const { model, byRole } = mount();
    const wrap = byRole("grid-wrap");
    wrap.dispatchEvent(
      new dom.window.KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true }),
    );
    model.emit("channel", 1);
    wrap.dispatchEvent(
      new dom.window.KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }),
    );
    assert.deepEqual(model.sets(), [
      ["channel", 1],
      ["channel", 4],
    ]);
  });

  test("a hostile layer name is shown as text and creates no element", () => {
    const state = lenetState({
      layers: [
        {
          index: 0,
          name: HOSTILE,
          type: "<b>Conv</b>",
          shape: [8, 4, 4],
          kind: "conv2d",
          has_filters: true,
        },
      ],
      layer: HOSTILE,
      table: [
        {
          index: 0,
          name: HOSTILE,
          type: "<b>Conv</b>",
          shape_text: "(8, 4, 4)",
          params: "",
          num_params: 1,
          has_filters: true,
        },
      ],
      samples: [HOSTILE],
      predictions: [{ index: 0, label: HOSTILE, value: 0.5 }],
      error: `Explorer: ${HOSTILE}`,
      status: HOSTILE,
    });
    const { el, byRole } = mount(state);
    const images = [...el.querySelectorAll("img")];
    assert.deepEqual(images.map((img) => img.getAttribute("data-role")).sort(), [
      "attr-picture",
      "detail",
      "grid",
      "input-image",
      "monitor-filters",
      "monitor-maps",
      "top-strip",
    ]);
    assert.ok(images.every((img) => img.getAttribute("src") !== "x"));
    assert.equal(el.querySelectorAll("b").length, 0);
    assert.equal(byRole("layer").options[0].textContent, `${HOSTILE} — <b>Conv</b> (8, 4, 4)`);
    assert.equal(byRole("error").textContent, `Explorer: ${HOSTILE}`);
    assert.ok(byRole("layer-table").textContent.includes(HOSTILE));
    assert.ok(byRole("predictions").textContent.includes(HOSTILE));
    const grid = byRole("grid");
    placeGrid(grid, 0, 0, 1);
    grid.dispatchEvent(
      new dom.window.MouseEvent("mousemove", { bubbles: true, clientX: 1, clientY: 1 }),
    );
    assert.equal(byRole("tooltip").textContent, `${HOSTILE} · channel 0`);
    assert.equal(el.querySelectorAll("img:not([data-role])").length, 0);
  });

  test("pictures are shown through object URLs and a replaced picture's URL is revoked", async () => {
    const { model, byRole } = mount();
    const grid = byRole("grid");
    const first = grid.getAttribute("src");
    assert.match(first, /^blob:fake\//);
    assert.equal(urls.created.find((u) => u.url === first).blob.type, "image/png");
    model.emit("grid_format", "jpeg");
    model.emit("grid", new DataView(new Uint8Array([1, 2, 3]).buffer));
    await frame();
    const second = grid.getAttribute("src");
    assert.notEqual(second, first);
    assert.ok(urls.revoked.includes(first));
    assert.equal(urls.created.find((u) => u.url === second).blob.type, "image/jpeg");
    assert.equal(grid.style.width, `${86 * 5}px`); // enlarged by CSS, pixelated
    assert.ok(grid.classList.contains("cnnw-pixelated"));
  });

  test("an empty picture hides its img", async () => {
    const { model, byRole } = mount();
    model.emit("detail", new DataView(new ArrayBuffer(0)));
    await frame();
    assert.equal(byRole("detail").hidden, true);
    assert.equal(byRole("detail").hasAttribute("src"), false);
  });

  test("cleanup aborts DOM listeners, unsubscribes from the model and revokes every URL", async () => {
    const { model, byRole, el, cleanup } = mount();
    const subscribed = model.listenerCount();
    assert.ok(subscribed > 10);
    const select = byRole("layer");
    const prev = byRole("page-prev");
    const grid = byRole("grid");
    placeGrid(grid, 0, 0, 1);
    // A change whose frame is still pending when the view goes away is never painted.
    const detail = byRole("detail");
    const detailSrc = detail.getAttribute("src");
    model.emit("detail", new DataView(new Uint8Array([9, 9]).buffer));
    cleanup();
    await frame();
    assert.equal(detail.getAttribute("src"), detailSrc);
    assert.equal(model.listenerCount(), 0);
    assert.equal(model.calls.filter((c) => c[0] === "off").length, subscribed);
    assert.equal(new Set(urls.revoked).size, urls.created.length);
    // DOM events and model changes after cleanup do nothing.
    select.value = "conv2";
    change(select);
    prev.disabled = false;
    prev.click();
    click(grid, 30, 1);
    const created = urls.created.length;
    model.emit("grid", new DataView(PNG_BYTES.buffer));
    assert.equal(urls.created.length, created);
    assert.deepEqual(model.sets(), []);
    assert.equal(el.children.length, 0);
  });

  test("an aborted render signal (anywidget >= 0.11) runs the cleanup too", () => {
    const model = new FakeModel(lenetState());
    const el = dom.window.document.createElement("div");
    const controller = new dom.window.AbortController();
    widget.render({ model, el, signal: controller.signal });
    controller.abort();
    assert.equal(model.listenerCount(), 0);
  });

  test("view buttons switch the view; the layer table picks a layer and goes back to pictures", async () => {
    const { model, el, byRole } = mount();
    assert.deepEqual(
      [...el.querySelectorAll('[data-role="view"]')].map((b) => b.textContent),
      ["Filters", "Feature maps", "Layer table"],
    );
    el.querySelector('[data-view="table"]').click();
    assert.deepEqual(model.sets(), [["view", "table"]]);
    model.emit("view", "table");
    await frame();
    assert.equal(byRole("layer-table").closest("[data-part]").hidden, false);
    assert.equal(byRole("grid-wrap").closest("[data-part]").hidden, true);
    const row = [...el.querySelectorAll('[data-role="table-row"]')].find(
      (r) => r.getAttribute("data-layer") === "fc2",
    );
    row.click();
    assert.deepEqual(model.sets().slice(1), [
      ["layer", "fc2"],
      ["view", "activations"],
    ]);
    assert.deepEqual(model.calls.at(-1), ["save_changes"]);
  });

  test("the pager steps pages and is disabled at the ends", async () => {
    const { model, byRole } = mount(
      lenetState({
        page: 1,
        channel_count: 200,
        grid_meta: { text: "64 of 200 shown", page: 1, pages: 4, width: 86, height: 86 },
      }),
    );
    assert.equal(byRole("page-info").textContent, "64 of 200 shown · page 2 of 4");
    byRole("page-next").click();
    byRole("page-prev").click();
    assert.deepEqual(model.sets(), [
      ["page", 2],
      ["page", 1],
    ]);
    model.emit("grid_meta", { text: "8 of 200 shown", page: 3, pages: 4 });
    await frame();
    assert.equal(byRole("page-next").disabled, true);
    assert.equal(byRole("page-prev").disabled, false);
  });

  test("the channel slider and number set the channel, clamped to the layer", () => {
    const { model, byRole } = mount();
    const slider = byRole("channel-slider");
    assert.equal(slider.max, "7");
    slider.value = "5";
    change(slider, "input");
    const number = byRole("channel-number");
    number.value = "99";
    change(number);
    assert.deepEqual(model.sets(), [
      ["channel", 5],
      ["channel", 7],
    ]);
  });

  test("selects send their trait; the input-channel menu follows the layer's inputs", () => {
    const { model, byRole } = mount(
      lenetState({ view: "filters", grid_meta: { in_channels: 3, text: "" } }),
    );
    const inputs = [...byRole("input-channel").options].map((o) => o.value);
    assert.deepEqual(inputs, ["auto", "rgb", "mean", "0", "1", "2"]);
    for (const [role, trait, value] of [
      ["normalization", "normalization", "symmetric"],
      ["colormap", "colormap", "diverging"],
      ["input-channel", "input_channel", "rgb"],
      ["activation-mode", "activation_mode", "sum"],
      ["sample", "sample", "chelsea"],
    ]) {
      const select = byRole(role);
      select.value = value;
      change(select);
      assert.deepEqual(model.sets().at(-1), [trait, value]);
    }
  });

  test("zoom is browser-only: it resizes the picture and sends nothing", async () => {
    const { model, byRole } = mount();
    const zoom = byRole("zoom");
    zoom.value = "2";
    change(zoom);
    await frame();
    assert.equal(byRole("grid").style.width, "172px");
    assert.deepEqual(model.sets(), []);
  });

  test("a chosen file is sent as upload bytes with its name", async () => {
    const { model, byRole } = mount();
    const input = byRole("upload");
    const file = new dom.window.File([PNG_BYTES], "my <digit>.png", { type: "image/png" });
    Object.defineProperty(input, "files", { value: [file], configurable: true });
    change(input);
    await until(() => model.calls.some((call) => call[0] === "save_changes"));
    const sets = model.sets();
    assert.deepEqual(sets[0], ["upload_name", "my <digit>.png"]);
    assert.equal(sets[1][0], "upload");
    assert.ok(sets[1][1] instanceof DataView);
    assert.deepEqual(new Uint8Array(sets[1][1].buffer), PNG_BYTES);
    assert.deepEqual(model.calls.at(-1), ["save_changes"]);
  });

  test("a file dropped on the widget is sent too", async () => {
    const { model, el } = mount();
    const drop = new dom.window.Event("drop", { bubbles: true, cancelable: true });
    const file = new dom.window.File([PNG_BYTES], "dropped.png", { type: "image/png" });
    Object.defineProperty(drop, "dataTransfer", { value: { files: [file] } });
    el.querySelector(".cnnw-root").dispatchEvent(drop);
    assert.equal(drop.defaultPrevented, true);
    await until(() => model.calls.some((call) => call[0] === "save_changes"));
    assert.deepEqual(model.sets()[0], ["upload_name", "dropped.png"]);
  });

  test("Save PNG downloads the grid through a temporary link", () => {
    const { model, byRole, el } = mount();
    const downloads = [];
    dom.window.HTMLAnchorElement.prototype.click = function () {
      downloads.push({ name: this.download, href: this.href, attached: el.contains(this) });
    };
    byRole("save-png").click();
    assert.equal(downloads.length, 1);
    assert.equal(downloads[0].name, "conv1-activations.png");
    assert.equal(downloads[0].attached, true);
    assert.equal(el.querySelectorAll("a").length, 0); // removed again
    assert.deepEqual(model.sets(), []);
  });

  test("status and error follow the model; busy shows the spinner", async () => {
    const { model, byRole, el } = mount();
    assert.equal(byRole("error").hidden, true);
    model.emit("busy", true);
    model.emit("status", "busy: computing the feature maps of 'conv2'");
    await frame();
    assert.equal(byRole("status").textContent, "busy: computing the feature maps of 'conv2'");
    assert.equal(el.querySelector(".cnnw-spinner").hidden, false);
    assert.equal(el.querySelector(".cnnw-root").getAttribute("aria-busy"), "true");
    model.emit("error", "Explorer: no layer named 'x'");
    await frame();
    assert.equal(byRole("error").hidden, false);
    assert.equal(byRole("error").textContent, "Explorer: no layer named 'x'");
  });

  test("a single-view widget hides the view switch", () => {
    const { byRole } = mount(lenetState({ views: ["filters"], view: "filters" }));
    assert.equal(byRole("views").hidden, true);
    assert.equal(byRole("sample").closest("[data-part]").hidden, true);
  });

  test("a vector layer shows its predictions and the vector mode instead of channel grids", () => {
    const { byRole } = mount(
      lenetState({
        layer: "fc2",
        channel: 7,
        grid_layout: {},
        predictions: [{ index: 7, label: "7", value: 0.998 }],
        detail: new DataView(new ArrayBuffer(0)),
        detail_stats: { index: 7, value: 9.5, label: "7", probability: 0.998 },
      }),
    );
    assert.equal(byRole("predictions").textContent, "7 — 99.8%");
    assert.equal(byRole("vector-mode").closest("[data-part]").hidden, false);
    assert.equal(byRole("activation-mode").closest("[data-part]").hidden, true);
    assert.match(byRole("detail-stats").textContent, /unit 7 “7” · value 9\.5 · p 99\.8%/);
  });
});
