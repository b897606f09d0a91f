// Unit tests of how widget.js is put together: panels repainted once per animation frame,
// selects built from the `choices` trait, the detail of an on-screen channel shown without a
// round trip to the kernel, and layers that never ran. node --test + jsdom and a fake model.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { CHOICES, choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import {
  createScheduler,
  inputChannelChoices,
  shownParts,
  viewForLayer,
  visibleLayers,
} from "../../cnn_widgets/static/widget.js";

const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const VIEWS = ["filters", "activations", "featureviz", "table"];

/** Page 0 of a 16-channel layer: tiles of 28 px for channels 0..7, 3 per row. */
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

const bytes = (...values) => new DataView(new Uint8Array(values).buffer);

function state(overrides = {}) {
  return {
    views: VIEWS,
    choices: choicesFor(VIEWS),
    view: "activations",
    layers: [
      {
        index: 0,
        name: "conv2",
        type: "Conv2d",
        shape: [16, 10, 10],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: VIEWS,
      },
      {
        index: 1,
        name: "skipped",
        type: "Conv2d",
        shape: null,
        kind: "conv2d",
        has_filters: true,
        ran: false,
        views: ["filters", "table"],
      },
    ],
    layer: "conv2",
    channel: 0,
    channel_count: 16,
    page: 0,
    page_size: 8,
    table: [
      {
        index: 0,
        name: "conv2",
        type: "Conv2d",
        shape_text: "(16, 10, 10)",
        params: "",
        num_params: 416,
        has_filters: true,
        ran: true,
      },
      {
        index: 1,
        name: "skipped",
        type: "Conv2d",
        shape_text: "—",
        params: "",
        num_params: 80,
        has_filters: true,
        ran: false,
      },
    ],
    normalization: "layer",
    colormap: "viridis",
    input_channel: "auto",
    activation_mode: "grid",
    vector_mode: "auto",
    image_png: new DataView(PNG_BYTES.buffer),
    samples: [],
    sample: "",
    grid: new DataView(PNG_BYTES.buffer),
    grid_format: "png",
    grid_layout: { ...LAYOUT },
    grid_meta: { layer: "conv2", text: "8 of 16 shown", page: 0, pages: 2, width: 86, height: 86 },
    detail: bytes(1),
    detail_format: "png",
    detail_stats: { shape: [28, 28], min: 0, max: 1, mean: 0.5, nonfinite: 0 },
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

function mount(initial = state()) {
  return env.mount(initial);
}

const frame = () => nextFrame(dom.window);
const options = (select) => [...select.options].map((o) => [o.value, o.textContent]);

function change(node, type = "change") {
  node.dispatchEvent(new dom.window.Event(type, { bubbles: true }));
}

/** Frames a test runs by hand, and the panels' paint calls. */
function fakeFrames() {
  const frames = { pending: new Map(), cancelled: [], next: 1 };
  frames.request = (callback) => {
    frames.pending.set(frames.next, callback);
    return frames.next++;
  };
  frames.cancel = (id) => {
    frames.cancelled.push(id);
    frames.pending.delete(id);
  };
  frames.run = () => {
    const callbacks = [...frames.pending.values()];
    frames.pending.clear();
    for (const callback of callbacks) callback();
  };
  return frames;
}

function fakePanel(traits, paint = () => {}) {
  const panel = { el: null, traits, paints: [] };
  panel.paint = (changed) => {
    panel.paints.push([...changed].sort());
    paint();
  };
  return panel;
}

describe("one paint per panel per animation frame", () => {
  test("changes before a frame paint each panel once, with every trait that changed", () => {
    const frames = fakeFrames();
    const a = fakePanel(["grid", "channel"]);
    const b = fakePanel(["channel", "@zoom"]);
    const scheduler = createScheduler([a, b], frames);
    assert.deepEqual(scheduler.traits, ["grid", "channel", "@zoom"]);
    for (const trait of ["grid", "channel", "grid", "@zoom", "channel", "not_declared"])
      scheduler.mark(trait);
    assert.equal(frames.pending.size, 1); // one frame asked for, nothing painted yet
    assert.deepEqual([a.paints, b.paints], [[], []]);
    frames.run();
    assert.deepEqual(a.paints, [["channel", "grid"]]);
    assert.deepEqual(b.paints, [["@zoom", "channel"]]);
    scheduler.mark("not_declared");
    assert.equal(frames.pending.size, 0); // nobody shows it: no frame
  });

  test("a painter that throws leaves the others painted; close cancels the pending frame", () => {
    const frames = fakeFrames();
    const errors = [];
    const broken = fakePanel(["grid"], () => {
      throw new Error("boom");
    });
    const fine = fakePanel(["grid"]);
    const scheduler = createScheduler([broken, fine], frames, (error) => errors.push(error));
    scheduler.mark("grid");
    frames.run();
    assert.deepEqual(fine.paints, [["grid"]]);
    assert.equal(errors[0].message, "boom");
    scheduler.mark("grid");
    scheduler.close();
    assert.deepEqual(frames.cancelled, [2]);
    scheduler.mark("grid");
    assert.equal(frames.pending.size, 0);
  });

  test("one update of many traits is painted in the next frame, each picture loaded once", async () => {
    const { model, byRole } = mount();
    const grid = byRole("grid");
    const info = byRole("page-info");
    const before = { grid: grid.getAttribute("src"), created: urls.created.length };
    let textChanges = 0;
    const observer = new dom.window.MutationObserver((records) => (textChanges += records.length));
    observer.observe(info, { childList: true, characterData: true, subtree: true });
    // A page flip as Python sends it (one hold_sync message), plus a stray repeat.
    model.emit("channel", 8);
    model.emit("page", 1);
    model.emit("grid", bytes(2, 2));
    model.emit("grid_layout", { ...LAYOUT, offset: 8 });
    model.emit("grid_meta", { layer: "conv2", text: "8 of 16 shown", page: 1, pages: 2 });
    model.emit("grid", bytes(3, 3));
    model.emit("detail", bytes(4));
    model.emit("detail_stats", { shape: [28, 28], min: 0, max: 2, mean: 1, nonfinite: 0 });
    assert.equal(grid.getAttribute("src"), before.grid); // nothing painted yet
    assert.equal(info.textContent, "8 of 16 shown · page 1 of 2");
    await frame();
    assert.equal(urls.created.length - before.created, 2); // the last grid, the new detail
    assert.equal(urls.created.at(-2).url, grid.getAttribute("src"));
    assert.equal(info.textContent, "8 of 16 shown · page 2 of 2");
    textChanges += observer.takeRecords().length;
    assert.equal(textChanges, 1); // the pager painted its text once
    assert.equal(byRole("detail-stats").textContent, "channel 8 · min 0 · max 2 · mean 1");
    assert.equal(byRole("channel-slider").value, "8");
  });
});

describe("selects are built from the choices trait", () => {
  test("every list comes from Python, labels included; picks send its values", async () => {
    const choices = {
      ...CHOICES,
      normalization: [
        ["layer", "one scale"],
        ["robust", "robust (quantiles)"],
      ],
      colormap: [["magma", "magma"]],
      zoom: [
        ["fit", "fit"],
        ["3", "3×"],
      ],
      view: [
        ["activations", "Maps"],
        ["table", "Layers"],
      ],
    };
    const { model, el, byRole } = mount(state({ choices, views: ["activations", "table"] }));
    assert.deepEqual(options(byRole("normalization")), [
      ["layer", "one scale"],
      ["robust", "robust (quantiles)"],
    ]);
    // The model's value is listed even when the list lacks it: the select never shows another.
    assert.deepEqual(options(byRole("colormap")), [
      ["magma", "magma"],
      ["viridis", "viridis"],
    ]);
    assert.equal(byRole("colormap").value, "viridis");
    assert.deepEqual(options(byRole("activation-mode")), CHOICES.activation_mode);
    assert.deepEqual(
      [...el.querySelectorAll('[data-role="view"]')].map((b) => b.textContent),
      ["Maps", "Layers"],
    );
    byRole("normalization").value = "robust";
    change(byRole("normalization"));
    assert.deepEqual(model.sets(), [["normalization", "robust"]]);
    byRole("zoom").value = "3";
    change(byRole("zoom"));
    await frame();
    assert.equal(byRole("grid").style.width, `${86 * 3}px`);
    assert.equal(model.sets().length, 1); // zoom stays in the browser
  });

  test("without choices the selects hold only the values in use: no list is written in JS", () => {
    const { byRole, el } = mount(state({ choices: {} }));
    assert.deepEqual(options(byRole("normalization")), [["layer", "layer"]]);
    assert.deepEqual(options(byRole("zoom")), [["fit", "fit"]]);
    assert.deepEqual(options(byRole("fv-objective")), []);
    assert.deepEqual(
      [...el.querySelectorAll('[data-role="view"]')].map((b) => b.textContent),
      VIEWS,
    );
  });

  test("choices arriving later rebuild the selects; input channels add the layer's indices", async () => {
    const { model, byRole } = mount(state({ choices: {} }));
    model.emit("choices", CHOICES);
    await frame();
    assert.deepEqual(options(byRole("fv-recipe")), CHOICES.fv_recipe);
    assert.deepEqual(
      inputChannelChoices(CHOICES.input_channel, 2).map(([value]) => value),
      ["auto", "mean", "0", "1"],
    );
    model.emit("grid_meta", { ...model.get("grid_meta"), in_channels: 3 });
    await frame();
    assert.deepEqual(options(byRole("input-channel")), [
      ["auto", "auto"],
      ["rgb", "RGB"],
      ["mean", "mean"],
      ["0", "0"],
      ["1", "1"],
      ["2", "2"],
    ]);
  });

  test("the upload limit comes from choices; a bigger file is refused in place", async () => {
    const limits = { ...CHOICES.limits, upload_bytes: [1, 4] };
    const { model, byRole } = mount(state({ choices: { ...CHOICES, limits } }));
    const input = byRole("upload");
    const file = new dom.window.File([PNG_BYTES], "big <b>.png", { type: "image/png" });
    Object.defineProperty(input, "files", { value: [file], configurable: true });
    change(input);
    await frame();
    assert.deepEqual(model.sets(), []);
    assert.equal(byRole("error").hidden, false);
    assert.equal(byRole("error").textContent, "big <b>.png is 0 MiB; the limit is 0 MiB");
  });

  test("which parts a view shows is the one piece of layout the module knows", () => {
    assert.ok(shownParts("filters").has("input-channel"));
    assert.ok(!shownParts("activations").has("examples"));
    assert.ok(shownParts("activations", { images: 3 }).has("examples"));
    const vector = shownParts("activations", { vector: true });
    assert.ok(
      vector.has("vector-mode") && !vector.has("activation-mode") && !vector.has("drawing"),
    );
    assert.deepEqual([...shownParts("no such view")], ["layer", "channel", "picture"]);
  });
});

describe("the detail of a channel on screen needs no round trip", () => {
  /** Decode the grid in jsdom (no image loading there) and record what is drawn. */
  function decodedGrid(byRole, width = 86, height = 86) {
    const grid = byRole("grid");
    Object.defineProperty(grid, "complete", { value: true, configurable: true });
    Object.defineProperty(grid, "naturalWidth", { value: width, configurable: true });
    Object.defineProperty(grid, "naturalHeight", { value: height, configurable: true });
    const drawn = [];
    dom.window.HTMLCanvasElement.prototype.getContext = () => ({
      drawImage: (...args) => drawn.push(args),
      clearRect: () => {},
    });
    return { grid, drawn };
  }

  test("the slider paints the tile at once as a preview; the kernel's picture replaces it", async () => {
    const { model, byRole } = mount();
    const { grid, drawn } = decodedGrid(byRole);
    const detail = byRole("detail");
    const preview = byRole("detail-preview");
    const figure = byRole("detail-figure");
    const exactSrc = detail.getAttribute("src");
    assert.equal(figure.getAttribute("data-state"), "exact");
    assert.equal(preview.hidden, true);
    const slider = byRole("channel-slider");
    slider.value = "5";
    change(slider, "input");
    assert.deepEqual(model.sets(), [["channel", 5]]);
    await frame();
    // Channel 5 is tile 5: column 2, row 1.
    assert.deepEqual(drawn, [[grid, 58, 29, 28, 28, 0, 0, 28, 28]]);
    assert.equal(figure.getAttribute("data-state"), "provisional");
    assert.equal(preview.hidden, false);
    assert.equal(preview.getAttribute("data-channel"), "5");
    assert.equal(preview.style.width, `${28 * 8}px`); // the size the exact picture will have
    assert.equal(detail.hidden, true);
    assert.equal(detail.getAttribute("src"), exactSrc); // the img waits for the exact bytes
    assert.equal(byRole("detail-stats").textContent, "channel 5 · preview");
    assert.equal(byRole("highlight").style.left, `${(58 / 86) * 100}%`);
    // Python answers with the exact picture and its statistics.
    model.emit("detail", bytes(5));
    model.emit("detail_stats", { shape: [28, 28], min: 0, max: 5, mean: 2, nonfinite: 0 });
    await frame();
    assert.equal(figure.getAttribute("data-state"), "exact");
    assert.equal(preview.hidden, true);
    assert.equal(detail.hidden, false);
    assert.notEqual(detail.getAttribute("src"), exactSrc);
    assert.equal(byRole("detail-stats").textContent, "channel 5 · min 0 · max 5 · mean 2");
  });

  test("arrow keys and clicks on tiles preview too; a channel off the page waits, dimmed", async () => {
    const { model, byRole } = mount();
    const { drawn } = decodedGrid(byRole);
    const figure = byRole("detail-figure");
    byRole("grid-wrap").dispatchEvent(
      new dom.window.KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }),
    );
    await frame();
    assert.equal(byRole("detail-preview").getAttribute("data-channel"), "3");
    const number = byRole("channel-number");
    number.value = "12"; // page 2: no tile on screen
    change(number);
    await frame();
    assert.deepEqual(model.sets(), [
      ["channel", 3],
      ["channel", 12],
    ]);
    assert.equal(drawn.length, 1);
    assert.equal(figure.getAttribute("data-state"), "stale");
    assert.ok(figure.classList.contains("cnnw-provisional"));
    assert.equal(byRole("detail").hidden, false); // the old picture, dimmed by CSS
    assert.equal(byRole("detail-preview").hidden, true);
    assert.equal(byRole("detail-stats").textContent, "channel 12 · updating…");
  });

  test("a grid still decoding is not cut; its load event brings the preview", async () => {
    const { byRole } = mount();
    const { drawn } = decodedGrid(byRole, 0, 0);
    const slider = byRole("channel-slider");
    slider.value = "2";
    change(slider, "input");
    await frame();
    assert.equal(byRole("detail-figure").getAttribute("data-state"), "stale");
    decodedGrid(byRole);
    byRole("grid").dispatchEvent(new dom.window.Event("load"));
    await frame();
    assert.equal(byRole("detail-figure").getAttribute("data-state"), "provisional");
    assert.equal(drawn.length, 0); // the first recorder saw nothing: drawn after the load only
  });

  test("tiles are cut from a decoded bitmap of the grid when the browser makes one", async () => {
    const closed = [];
    const bitmap = { width: 86, height: 86, close: () => closed.push("bitmap") };
    dom.window.createImageBitmap = async () => bitmap;
    const { byRole, cleanup } = mount();
    const { grid, drawn } = decodedGrid(byRole);
    grid.dispatchEvent(new dom.window.Event("load"));
    await frame();
    const slider = byRole("channel-slider");
    slider.value = "1";
    change(slider, "input");
    await frame();
    assert.equal(drawn[0][0], bitmap);
    // A new grid is not cut from the old bitmap: the img serves until its own is made.
    grid.setAttribute("src", "blob:fake/new");
    slider.value = "2";
    change(slider, "input");
    await frame();
    assert.equal(drawn[1][0], grid);
    cleanup();
    assert.deepEqual(closed, ["bitmap"]);
  });

  test("when Python names the detail's channel, an older answer keeps the preview", async () => {
    const { model, byRole } = mount();
    decodedGrid(byRole);
    const slider = byRole("channel-slider");
    for (const value of ["5", "6"]) {
      slider.value = value;
      change(slider, "input");
    }
    model.emit("detail", bytes(5));
    model.emit("detail_stats", { channel: 5, shape: [28, 28], min: 0, max: 5, mean: 2 });
    await frame();
    assert.equal(byRole("detail-figure").getAttribute("data-state"), "provisional");
    assert.equal(byRole("detail-preview").getAttribute("data-channel"), "6");
    model.emit("detail", bytes(6));
    model.emit("detail_stats", { channel: 6, shape: [28, 28], min: 0, max: 6, mean: 3 });
    await frame();
    assert.equal(byRole("detail-figure").getAttribute("data-state"), "exact");
    assert.match(byRole("detail-stats").textContent, /^channel 6 · min 0 · max 6/);
  });

  test("feature visualization previews from its own picture, with the objective", async () => {
    const fvLayout = { ...LAYOUT, channels: [8, 9, 10, 11, 12, 13, 14, 15] };
    const { model, byRole } = mount(
      state({
        view: "featureviz",
        channel: 8,
        page: 1,
        fv_image: new DataView(PNG_BYTES.buffer),
        fv_format: "png",
        fv_layout: fvLayout,
        fv_meta: { layer: "conv2", channels: fvLayout.channels, values: [1, 0.5], size: [28, 28] },
        fv_detail: bytes(8),
      }),
    );
    const { drawn } = decodedGrid(byRole);
    const slider = byRole("channel-slider");
    slider.value = "9";
    change(slider, "input");
    await frame();
    assert.deepEqual(drawn[0].slice(1, 5), [29, 0, 28, 28]);
    assert.equal(byRole("detail-stats").textContent, "channel 9 · objective 0.5 · preview");
    model.emit("fv_detail", bytes(9));
    await frame();
    assert.equal(byRole("detail-figure").getAttribute("data-state"), "exact");
    assert.equal(byRole("detail-stats").textContent, "channel 9 · objective 0.5");
  });
});

describe("layers that never ran", () => {
  test("the menu marks them and lists them only in the views Python says accept them", async () => {
    const { model, byRole } = mount(state({ view: "filters" }));
    const option = [...byRole("layer").options].find((o) => o.value === "skipped");
    assert.equal(option.textContent, "skipped — Conv2d (—) · did not run");
    assert.ok(option.classList.contains("cnnw-not-ran"));
    model.emit("view", "activations");
    await frame();
    assert.deepEqual(
      [...byRole("layer").options].map((o) => o.value),
      ["conv2"],
    );
    const layers = state().layers;
    assert.deepEqual(
      visibleLayers(layers, "activations", "", "skipped").map((l) => l.name),
      ["conv2", "skipped"], // the current layer always stays listed
    );
  });

  test("the table marks their rows, and a click shows them in a view that accepts them", async () => {
    const { model, el } = mount(state({ view: "table" }));
    const rows = [...el.querySelectorAll('[data-role="table-row"]')];
    const skipped = rows.find((r) => r.getAttribute("data-layer") === "skipped");
    assert.ok(skipped.classList.contains("cnnw-not-ran"));
    assert.equal(skipped.getAttribute("data-ran"), "false");
    assert.match(skipped.textContent, /— · did not run/);
    assert.ok(!rows[0].classList.contains("cnnw-not-ran"));
    skipped.click();
    assert.deepEqual(model.sets(), [
      ["layer", "skipped"],
      ["view", "filters"],
    ]);
    await frame();
    assert.equal(skipped.getAttribute("aria-selected"), "true");
  });

  test("viewForLayer prefers the view the user came from, then any that fits", () => {
    const views = ["filters", "activations", "table"];
    const conv = { views: ["filters", "activations", "table"] };
    const dense = { views: ["activations", "table"] };
    const idle = { views: ["table"] };
    assert.equal(viewForLayer(conv, views, "filters"), "filters");
    assert.equal(viewForLayer(dense, views, "filters"), "activations");
    assert.equal(viewForLayer(conv, views, ""), "activations");
    assert.equal(viewForLayer(idle, views, "filters"), null);
  });
});
