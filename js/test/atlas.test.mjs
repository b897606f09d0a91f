// The atlas view (AtlasBrowser): the shared grid panels plus the atlas panel, no model.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import { atlasSummary } from "../../cnn_widgets/static/widget.js";

const HOSTILE = "<img src=x onerror=alert(1)>";
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const png = () => new DataView(PNG_BYTES.buffer);

function entry(index, name, done) {
  return {
    index,
    name,
    type: `${done}/8 done`,
    shape: [8, 28, 28],
    kind: "other",
    has_filters: false,
    ran: true,
    vector: false,
    views: ["atlas"],
    done,
    complete: done === 8,
  };
}

function state(overrides = {}) {
  return {
    views: ["atlas"],
    choices: choicesFor(["atlas"]),
    view: "atlas",
    layers: [entry(0, HOSTILE, 8), entry(1, "relu1", 3)],
    layer: HOSTILE,
    channel: 2,
    channel_count: 8,
    page: 0,
    page_size: 64,
    grid: png(),
    grid_format: "png",
    grid_layout: {
      count: 8,
      ncols: 3,
      nrows: 3,
      tile_h: 28,
      tile_w: 28,
      pad: 1,
      width: 86,
      height: 86,
      channels: [0, 1, 2, 3, 4, 5, 6, 7],
      offset: 0,
    },
    grid_meta: { view: "atlas", text: "8 of 8 here", page: 0, pages: 1, width: 86, height: 86 },
    detail: png(),
    detail_format: "png",
    detail_stats: { channel: 2, shape: [28, 28], activation: 1.25, rank: 3, of: 8, steps: 64 },
    atlas_info: {
      out: "/x",
      fingerprint: "42d235163e3c3fe5",
      framework: "torch",
      layers: 2,
      complete: 1,
      channels: 16,
      done: 11,
    },
    atlas_refresh: 0,
    status: "idle",
    busy: false,
    error: "",
    ...overrides,
  };
}

const env = useWidgetDom();
let dom;
beforeEach(() => ({ dom } = env));

describe("the atlas view", () => {
  test("shows the store, the channel's record, and names only as text", async () => {
    const { byRole, el } = env.mount(state());
    await nextFrame(dom.window);
    assert.equal(
      byRole("atlas-summary").textContent,
      "11 of 16 channels · 1 of 2 layers complete · torch 42d235163e3c3fe5",
    );
    assert.equal(byRole("detail-stats").textContent, "channel 2 · activation 1.25 · rank 3 of 8");
    const labels = [...byRole("layer").options].map((o) => o.textContent);
    assert.deepEqual(labels, [`${HOSTILE} — 8/8 done (8, 28, 28)`, "relu1 — 3/8 done (8, 28, 28)"]);
    assert.equal(el.querySelectorAll("img[src='x']").length, 0);
    const hidden = (part) => el.querySelector(`[data-part="${part}"]`).hidden;
    assert.equal(hidden("atlas"), false);
    assert.equal(hidden("featureviz"), true);
    assert.equal(hidden("drawing"), true);
  });

  test("a channel not in the store yet says so; Refresh asks Python to read again", async () => {
    const { byRole, model } = env.mount(
      state({
        detail: new DataView(new ArrayBuffer(0)),
        detail_stats: { channel: 2, missing: true },
      }),
    );
    await nextFrame(dom.window);
    assert.equal(byRole("detail-stats").textContent, "channel 2: not in the atlas yet");
    byRole("atlas-refresh").click();
    assert.deepEqual(model.sets().at(-1), ["atlas_refresh", 1]);
  });

  test("the summary is empty until Python sent the store's counts", () => {
    assert.equal(atlasSummary({}), "");
    assert.equal(
      atlasSummary({ channels: 4, done: 0, layers: 1, complete: 0 }),
      "0 of 4 channels · 0 of 1 layers complete",
    );
  });
});
