/** A fresh jsdom per test, with the browser pieces the widget uses, and `mount` to render the
 * widget into it with a FakeModel. Shared by the tests in test/. */
import { afterEach, beforeEach } from "node:test";
import { JSDOM } from "jsdom";

import widget from "../../cnn_widgets/static/widget.js";
import { FakeModel } from "./fake-model.mjs";

/**
 * Register the per-test jsdom; the returned object's `dom` and `urls` are the current test's.
 * `urls.created` / `urls.revoked` record object URLs (jsdom has none of its own).
 */
export function useWidgetDom() {
  const env = {
    dom: null,
    urls: null,
    /** Render the widget for `state`: `{model, el, cleanup, byRole, allByRole}`. */
    mount(state) {
      const model = new FakeModel(state);
      const el = env.dom.window.document.createElement("div");
      env.dom.window.document.body.append(el);
      const cleanup = widget.render({ model, el });
      const byRole = (role) => el.querySelector(`[data-role="${role}"]`);
      const allByRole = (role) => [...el.querySelectorAll(`[data-role="${role}"]`)];
      return { model, el, cleanup, byRole, allByRole };
    },
  };
  beforeEach(() => {
    // pretendToBeVisual: requestAnimationFrame, which the widget repaints in.
    env.dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true });
    // jsdom only accepts its own AbortSignal in addEventListener.
    globalThis.AbortController = env.dom.window.AbortController;
    globalThis.FileReader = env.dom.window.FileReader;
    const urls = { created: [], revoked: [] };
    let next = 0;
    URL.createObjectURL = (blob) => {
      const url = `blob:fake/${next++}`;
      urls.created.push({ url, blob });
      return url;
    };
    URL.revokeObjectURL = (url) => urls.revoked.push(url);
    env.urls = urls;
  });
  afterEach(() => env.dom.window.close());
  return env;
}
