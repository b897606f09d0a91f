/** A hand-made stand-in for the anywidget model: records set/save_changes/on/off calls and
 * lets a test play a change from Python with `emit`. Shared by the tests in test/. */

export class FakeModel {
  constructor(state) {
    this.state = { ...state };
    this.calls = [];
    this.handlers = new Map();
  }
  get(name) {
    return this.state[name];
  }
  set(name, value) {
    this.calls.push(["set", name, value]);
    this.state[name] = value;
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
  emit(name, value) {
    this.state[name] = value;
    for (const callback of this.handlers.get(`change:${name}`) ?? []) callback();
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
