// The training monitor's front end: the frames Python sends are kept in the browser, so the
// timeline scrubs through them while the kernel is busy training. node --test + jsdom.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { choicesFor, nextFrame } from "../support/fake-model.mjs";
import { useWidgetDom } from "../support/dom.mjs";

import {
  addFrame,
  channelSeries,
  chartPath,
  loggedNumbers,
} from "../../cnn_widgets/static/widget.js";

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A frame of two layers; conv2's channel 1 is dead (all its units <= 0) from step 20 on. */
function meta(step, loss) {
  const dead = step >= 20 ? [0.2, 1.0] : [0.2, 0.6];
  return {
    step,
    steps: step,
    layers: {
      conv1: {
        filters: [0, 8, 11, 11],
        maps: [8, 8, 28, 28],
        maps_text: "2 of 2 channels",
        mean: [0.1, step / 100],
        dead: [0, 0],
      },
      conv2: { filters: null, maps: [0, 8, 10, 10], maps_text: "", mean: [0.3, 0.0], dead },
    },
    numbers: { loss: [[step, loss]] },
  };
}
const frameBytes = (step) =>
  new DataView(new Uint8Array([...PNG, ...PNG.map((b) => b ^ step)]).buffer);

function state(overrides = {}) {
  return {
    views: ["monitor"],
    view: "monitor",
    choices: choicesFor(["monitor"]),
    layer: "conv1",
    layers: [
      {
        index: 0,
        name: "conv1",
        type: "Conv2d",
        shape: [2, 28, 28],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: ["monitor"],
      },
      {
        index: 1,
        name: "relu1",
        type: "ReLU",
        shape: [2, 28, 28],
        kind: "other",
        has_filters: false,
        ran: true,
        views: [],
      },
      {
        index: 2,
        name: "conv2",
        type: "Conv2d",
        shape: [2, 10, 10],
        kind: "conv2d",
        has_filters: true,
        ran: true,
        views: ["monitor"],
      },
    ],
    monitor_meta: meta(0, 2.3),
    monitor_frame: frameBytes(0),
    monitor_history: 50,
    monitor_every: 10,
    status: "idle",
    error: "",
    ...overrides,
  };
}

describe("monitor helpers", () => {
  test("frames are kept in step order, one per step, the oldest dropped beyond the limit", () => {
    const frame = (step) => ({ step, meta: { step }, bytes: new Uint8Array() });
    let history = [];
    for (const step of [10, 30, 20, 30]) history = addFrame(history, frame(step), 3);
    assert.deepEqual(
      history.map((f) => f.step),
      [10, 20, 30],
    );
    history = addFrame(history, frame(40), 3);
    assert.deepEqual(
      history.map((f) => f.step),
      [20, 30, 40],
    );
  });

  test("channel series and logged numbers follow the frames", () => {
    const history = [0, 10, 20].map((step) => ({
      step,
      meta: meta(step, 3 - step / 10),
      bytes: new Uint8Array(),
    }));
    const dead = channelSeries(history, "conv2", "dead");
    assert.deepEqual(dead[1], [
      [0, 0.6],
      [10, 0.6],
      [20, 1],
    ]);
    assert.deepEqual(loggedNumbers(history), {
      loss: [
        [0, 3],
        [10, 2],
        [20, 1],
      ],
    });
  });

  test("a chart path spans its box with y pointing up", () => {
    const path = chartPath(
      [
        [0, 0],
        [10, 1],
      ],
      { x: [0, 10], y: [0, 1] },
      100,
      50,
    );
    assert.equal(path, "M0.0 50.0 L100.0 0.0");
  });
});

describe("the monitor panel", () => {
  const env = useWidgetDom();
  let dom, model, el;
  beforeEach(() => {
    dom = env.dom;
    ({ model, el } = env.mount(state()));
  });
  const role = (name) => el.querySelector(`[data-role="${name}"]`);

  test("asks Python for the frames it missed and lists only the monitored layers", () => {
    assert.ok(model.calls.some(([kind, content]) => kind === "send" && content.type === "history"));
    const options = [...role("layer").querySelectorAll("option")].map((o) => o.value);
    assert.deepEqual(options, ["conv1", "conv2"]);
    assert.equal(role("monitor-timeline").max, "0");
  });

  test("new frames are kept; the timeline scrubs back without the kernel", async () => {
    for (const step of [10, 20, 30]) {
      model.emit("monitor_meta", meta(step, 2 - step / 30));
      model.emit("monitor_frame", frameBytes(step));
    }
    await nextFrame(dom.window);
    const slider = role("monitor-timeline");
    assert.equal(slider.max, "3");
    assert.match(role("monitor-step").textContent, /step 30 · frame 4 of 4 · live/);
    const sent = model.calls.length;
    slider.value = "1";
    slider.dispatchEvent(new dom.window.Event("input"));
    await nextFrame(dom.window);
    assert.match(role("monitor-step").textContent, /step 10 · frame 2 of 4$/);
    assert.equal(model.calls.length, sent); // scrubbing sends nothing to the kernel
    // A new frame while scrubbing keeps the frame on screen.
    model.emit("monitor_meta", meta(40, 0.5));
    model.emit("monitor_frame", frameBytes(40));
    await nextFrame(dom.window);
    assert.match(role("monitor-step").textContent, /step 10 · frame 2 of 5$/);
  });

  test("frames sent as messages (the history of a late view) join in step order", async () => {
    model.message({ type: "frame", meta: meta(5, 2.2) }, [frameBytes(5)]);
    await nextFrame(dom.window);
    assert.equal(role("monitor-timeline").max, "1");
    assert.match(role("monitor-step").textContent, /step 5 · frame 2 of 2 · live/);
  });

  test("dead channels of the selected layer are marked and listed", async () => {
    model.emit("monitor_meta", meta(20, 1.0));
    model.emit("monitor_frame", frameBytes(20));
    model.set("layer", "conv2"); // the browser switches at once, kernel busy or not
    await nextFrame(dom.window);
    assert.equal(role("monitor-dead-list").textContent, "dead on the probe at step 20: channel 1");
    assert.equal(role("monitor-dead").querySelectorAll(".cnnw-marked").length, 1);
    assert.equal(role("monitor-filters").hidden, true); // conv2 sent no filter picture here
    assert.equal(role("monitor-maps").hidden, false);
  });
});
