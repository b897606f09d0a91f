// @ts-check
/**
 * cnn_widgets front end: one plain ES module for every widget of the package.
 *
 * Python owns the state and renders the pictures; this module draws the controls, shows the
 * picture bytes it is sent and writes the user's choices back to the model. The widget is
 * made of panels, `xxxPanel(ctx) -> {el, traits, paint}`: a panel builds its elements once,
 * names the traits it shows, and `paint(changed)` brings it up to date. `render` composes the
 * panels and routes every change of those traits to one scheduler that repaints each panel
 * whose traits changed once per animation frame, however many traits one update carries.
 *
 * What the choices are (normalizations, colormaps, views, limits ...) comes from Python in the
 * `choices` trait; this module only knows the layout: which control groups a view shows.
 * Work that needs no kernel stays here: filtering the layer menu, hover labels, zoom, mapping
 * a click on the grid to a channel, and showing a newly selected channel at once, cropped
 * from its tile of the grid on screen, until the kernel's exact picture arrives.
 *
 * Rules this file keeps: text from the model (layer names, labels, file names, errors) reaches
 * the DOM only through `textContent` or attributes; every focusable control carries
 * `data-lm-suppress-shortcuts` so notebook shortcuts do not fire while it has focus; DOM
 * listeners hang off one AbortController; `render` returns a cleanup that also unsubscribes
 * from the model, revokes object URLs and cancels timers and the pending animation frame.
 */

/**
 * The part of the anywidget model this module uses.
 * @typedef {object} Model
 * @property {(name: string) => any} get
 * @property {(name: string, value: any) => void} set
 * @property {() => void} save_changes
 * @property {(event: string, callback: () => void) => void} on
 * @property {(event?: string | null, callback?: (() => void) | null) => void} off
 */

/**
 * Grid geometry sent with every grid picture (`grid_layout`, `fv_layout`).
 * @typedef {object} TileLayout
 * @property {number} count
 * @property {number} ncols
 * @property {number} nrows
 * @property {number} tile_h
 * @property {number} tile_w
 * @property {number} pad
 * @property {number} width
 * @property {number} height
 * @property {number[] | null} [channels]  channel shown by each tile
 * @property {number} [offset]  channel of the first tile when `channels` is absent
 */

/**
 * One entry of the `layers` trait.
 * @typedef {object} LayerEntry
 * @property {string} name
 * @property {string} type
 * @property {number[] | null} shape
 * @property {string} kind
 * @property {boolean} has_filters
 * @property {number} index
 * @property {boolean} [ran]  false for a module that never ran in the forward pass
 * @property {string[]} [views]  the views that can show this layer
 */

/**
 * One feature of the widget (see the module comment).
 * @typedef {object} Panel
 * @property {HTMLElement} el  its elements; `render` places them
 * @property {string[]} traits  what it shows: model traits, and browser-only state as "@name"
 * @property {(changed: Set<string>) => void} paint  bring `el` up to date; `changed` holds
 *   what changed since its last paint (everything it declared, the first time)
 */

/**
 * Where the big picture and the selected channel's picture come from in the current view.
 * @typedef {object} PictureSource
 * @property {string} bytes  trait holding the big picture
 * @property {string} format  its encoding
 * @property {TileLayout | null} layout  its tiles; null for one picture without tiles
 * @property {Record<string, any>} meta
 * @property {number} width  natural size of the big picture
 * @property {number} height
 * @property {string} detail  trait holding the selected channel's picture
 * @property {string} detailFormat
 * @property {[number, number]} detailSize  its natural [width, height]
 * @property {string[]} arrivals  traits whose change means the kernel's detail arrived
 * @property {number | null} detailChannel  the channel that detail shows, when Python says so
 * @property {(channel: number) => string} label  "channel 5", "filter 5", "unit 5", "class 5"
 * @property {(channel: number) => string} caption  the exact detail's caption
 * @property {Array<{label: string, value: number}>} predictions
 * @property {{page: number, pages: number, text: string}} pager
 * @property {string} what  what a tile shows, for hover labels: "filter", "channel", "unit"
 */

/**
 * The control groups ("parts") each view shows: the one piece of layout this module owns.
 * Labels and choices come from Python; a view missing here shows DEFAULT_PARTS.
 * @type {Record<string, string[]>}
 */
export const VIEW_PARTS = {
  filters: [
    "layer",
    "drawing",
    "input-channel",
    "channel",
    "picture",
    "examples",
    "pager",
    "health",
  ],
  activations: [
    "layer",
    "drawing",
    "activation-mode",
    "image",
    "channel",
    "picture",
    "examples",
    "pager",
    "health",
  ],
  featureviz: ["layer", "featureviz", "channel", "picture", "examples", "pager", "health"],
  attribution: ["image", "attribution"],
  table: ["table"],
  monitor: ["layer", "monitor"],
  atlas: ["layer", "channel", "picture", "pager", "atlas"],
};
const DEFAULT_PARTS = ["layer", "channel", "picture"];

/** Display size targets in CSS pixels; pictures are enlarged by whole factors up to these. */
const GRID_TARGET = 480;
const DETAIL_TARGET = 240;
const INPUT_TARGET = 128;
const STRIP_TARGET = 300;

/** Traits the big picture comes from (either source) and those of the selected channel's. */
const PICTURE_TRAITS = [
  "view",
  "grid",
  "grid_format",
  "grid_layout",
  "grid_meta",
  "fv_image",
  "fv_format",
  "fv_layout",
  "fv_meta",
  "predictions",
  "channel_count",
  "page",
  "page_size",
];
const DETAIL_TRAITS = ["detail", "detail_format", "detail_stats", "fv_detail"];

/** Browser-only state that panels repaint on; these names never travel to the kernel. */
const LOCAL = {
  zoom: "@zoom",
  layerFilter: "@layer-filter",
  error: "@error",
  gridLoaded: "@grid-loaded",
  monitor: "@monitor",
};

let instances = 0;

// --------------------------------------------------------------------------- pure helpers

/**
 * Pixel box of the tile showing `channel`, in the grid picture's own pixels, or null.
 * @param {TileLayout | null | undefined} layout
 * @param {number} channel
 * @returns {{x: number, y: number, width: number, height: number} | null}
 */
export function tileRect(layout, channel) {
  if (!layout || !layout.ncols || !layout.width || !layout.height) return null;
  const index = Array.isArray(layout.channels)
    ? layout.channels.indexOf(channel)
    : channel - (layout.offset ?? 0);
  if (!Number.isInteger(index) || index < 0 || index >= layout.count) return null;
  return {
    x: (index % layout.ncols) * (layout.tile_w + layout.pad),
    y: Math.floor(index / layout.ncols) * (layout.tile_h + layout.pad),
    width: layout.tile_w,
    height: layout.tile_h,
  };
}

/**
 * Box of the tile showing `channel`, as fractions of the picture, or null.
 * @param {TileLayout | null | undefined} layout
 * @param {number} channel
 * @returns {{left: number, top: number, width: number, height: number} | null}
 */
export function tileBox(layout, channel) {
  const rect = tileRect(layout, channel);
  if (!rect || !layout) return null;
  return {
    left: rect.x / layout.width,
    top: rect.y / layout.height,
    width: rect.width / layout.width,
    height: rect.height / layout.height,
  };
}

/**
 * Index of the tile under a point of the grid picture (natural pixels), or -1 for the gaps
 * between tiles, empty slots and points outside.
 * @param {TileLayout | null | undefined} layout
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
export function tileIndexAt(layout, x, y) {
  if (!layout || !layout.ncols || !layout.count) return -1;
  if (!(x >= 0 && y >= 0 && x < layout.width && y < layout.height)) return -1;
  const stepX = layout.tile_w + layout.pad;
  const stepY = layout.tile_h + layout.pad;
  const col = Math.floor(x / stepX);
  const row = Math.floor(y / stepY);
  if (x - col * stepX >= layout.tile_w || y - row * stepY >= layout.tile_h) return -1;
  const index = row * layout.ncols + col;
  return index < layout.count ? index : -1;
}

/**
 * Channel shown at a point of the grid picture, or -1.
 * @param {TileLayout | null | undefined} layout
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
export function channelAt(layout, x, y) {
  const index = tileIndexAt(layout, x, y);
  if (index < 0 || !layout) return -1;
  if (Array.isArray(layout.channels)) return layout.channels[index];
  return (layout.offset ?? 0) + index;
}

/**
 * Whole-number enlargement so the longest side comes close to `target` (never below 1).
 * @param {number} width
 * @param {number} height
 * @param {number} target
 * @param {string} [zoom]  "fit" or a factor
 * @returns {number}
 */
export function displayScale(width, height, target, zoom = "fit") {
  const factor = Number(zoom);
  if (zoom !== "fit" && factor > 0) return factor;
  const longest = Math.max(width || 0, height || 0);
  if (!longest) return 1;
  return Math.max(1, Math.floor(target / longest));
}

/**
 * "name — type (shape)", the text of a layer menu entry; a layer that never ran says so.
 * @param {LayerEntry} layer
 * @returns {string}
 */
export function layerLabel(layer) {
  const shape = Array.isArray(layer.shape) ? `(${layer.shape.join(", ")})` : "(—)";
  const label = `${layer.name} — ${layer.type} ${shape}`;
  return layer.ran === false ? `${label} · did not run` : label;
}

/**
 * Whether a view can show a layer: Python says so in the layer's `views`.
 * @param {LayerEntry | undefined} layer
 * @param {string} view
 * @returns {boolean}
 */
export function layerFitsView(layer, view) {
  return !Array.isArray(layer?.views) || layer.views.includes(view);
}

/**
 * Layers the menu lists in a view, narrowed by a search text; `keep` stays listed.
 * @param {LayerEntry[]} layers
 * @param {string} view
 * @param {string} query
 * @param {string} keep
 * @returns {LayerEntry[]}
 */
export function visibleLayers(layers, view, query, keep) {
  const q = query.trim().toLowerCase();
  return layers.filter((layer) => {
    if (layer.name === keep) return true;
    if (!layerFitsView(layer, view)) return false;
    if (!q) return true;
    return layer.name.toLowerCase().includes(q) || layer.type.toLowerCase().includes(q);
  });
}

/**
 * The view a click on a table row goes to: the picture view the user came from when it can
 * show the layer, else the first of the widget's views that can; null when none can.
 * @param {LayerEntry | undefined} layer
 * @param {string[]} views  the widget's views
 * @param {string} last  the picture view shown before the table
 * @returns {string | null}
 */
export function viewForLayer(layer, views, last) {
  const fits = (/** @type {string} */ view) =>
    Boolean(view) && view !== "table" && views.includes(view) && layerFitsView(layer, view);
  return [last, "activations", ...views].find(fits) ?? null;
}

/**
 * The parts a view shows: its VIEW_PARTS, with the vector mode instead of the activation mode
 * (and no drawing options) for a layer that outputs a vector, and examples only with images.
 * @param {string} view
 * @param {{vector?: boolean, images?: number}} [state]
 * @returns {Set<string>}
 */
export function shownParts(view, { vector = false, images = 0 } = {}) {
  const parts = new Set(VIEW_PARTS[view] ?? DEFAULT_PARTS);
  if (vector && parts.delete("activation-mode")) parts.add("vector-mode");
  if (vector && view === "activations") parts.delete("drawing");
  if (!(images > 0)) parts.delete("examples");
  return parts;
}

/**
 * One list of the `choices` trait as [value, label] pairs; empty when Python sent none.
 * @param {Record<string, any> | null | undefined} choices
 * @param {string} name
 * @returns {[string, string][]}
 */
export function choiceList(choices, name) {
  const list = choices?.[name];
  if (!Array.isArray(list)) return [];
  return list
    .filter((pair) => Array.isArray(pair) && pair.length > 0)
    .map(([value, label]) => [String(value), String(label ?? value)]);
}

/**
 * The inclusive range of a numeric setting from `choices.limits`, or null.
 * @param {Record<string, any> | null | undefined} choices
 * @param {string} name
 * @returns {[number, number] | null}
 */
export function choiceLimit(choices, name) {
  const range = choices?.limits?.[name];
  if (!Array.isArray(range) || range.length !== 2) return null;
  const [low, high] = range.map(Number);
  return Number.isFinite(low) && Number.isFinite(high) ? [low, high] : null;
}

/**
 * The input-channel menu: Python's words ("rgb" only for three inputs) and each index.
 * @param {[string, string][]} words  `choices.input_channel`
 * @param {number} inChannels  input channels of the layer's kernels
 * @returns {[string, string][]}
 */
export function inputChannelChoices(words, inChannels) {
  const count = Number.isInteger(inChannels) && inChannels > 0 ? inChannels : 0;
  /** @type {[string, string][]} */
  const indices = Array.from({ length: count }, (_, i) => [String(i), String(i)]);
  return [...words.filter(([value]) => value !== "rgb" || count === 3), ...indices];
}

/**
 * Flagged channels that have a tile in the picture, with the tile's box (fractions).
 * @param {TileLayout | null | undefined} layout
 * @param {Record<string, string[]> | null | undefined} flags  `{channel: [kind, ...]}`
 * @returns {{channel: number, kinds: string[], box: {left: number, top: number, width: number, height: number}}[]}
 */
export function flagBoxes(layout, flags) {
  const marks = [];
  for (const [key, kinds] of Object.entries(flags ?? {})) {
    const channel = Number(key);
    if (!Number.isInteger(channel)) continue;
    const box = tileBox(layout, channel);
    if (box) marks.push({ channel, kinds: Array.isArray(kinds) ? kinds.map(String) : [], box });
  }
  return marks.sort((a, b) => a.channel - b.channel);
}

/**
 * One line of the health list, e.g. "channel 4: dead channel — channel 4 is exactly 0 …".
 * @param {Record<string, any>} row  an entry of `health_findings`
 * @returns {string}
 */
export function healthLine(row) {
  const where = typeof row.channel === "number" ? `channel ${row.channel}` : "layer";
  const label = String(row.label ?? row.kind ?? "");
  return row.message ? `${where}: ${label} — ${row.message}` : `${where}: ${label}`;
}

/**
 * The caption of the top-activating images strip.
 * @param {Record<string, any> | null | undefined} meta  the `top_meta` trait
 * @returns {string}
 */
export function topCaption(meta) {
  if (!meta || !meta.state) return "";
  const what = `channel ${meta.channel}`;
  if (meta.state === "computing")
    return `finding the ${meta.k} of ${meta.images} images that excite ${what} most…`;
  if (meta.state === "error") return `no top images for ${what} (see the error)`;
  const scores = Array.isArray(meta.scores) ? meta.scores.map(formatNumber).join(", ") : "";
  return `top ${meta.k} of ${meta.images} images for ${what} · max activation ${scores}`;
}

/**
 * The progress line of a feature-visualization run, e.g. "step 37 of 256 · running".
 * @param {Record<string, any> | null | undefined} meta  the `fv_meta` trait
 * @param {boolean} running
 * @returns {string}
 */
export function fvProgressText(meta, running) {
  if (!meta || typeof meta.steps !== "number") return running ? "starting…" : "";
  const state = running ? "running" : String(meta.state ?? "");
  const size = Array.isArray(meta.size) ? ` · ${meta.size.join("×")} px` : "";
  return `step ${meta.step ?? 0} of ${meta.steps} · ${state}${size}`;
}

/**
 * The text of a target class button: "label 42.0 %".
 * @param {{index?: number, label?: string, probability?: number}} entry
 * @returns {string}
 */
export function classText(entry) {
  const label = String(entry?.label ?? `class ${entry?.index ?? "?"}`);
  const p = Number(entry?.probability);
  return Number.isFinite(p) ? `${label} ${(p * 100).toFixed(1)} %` : label;
}

/**
 * The caption of one attribution tile: "Grad-CAM @ layer4 · score 3.2".
 * @param {{name?: string, method?: string, layer?: string | null, score?: number | null}} tile
 * @returns {string}
 */
export function attributionCaption(tile) {
  let text = String(tile?.name ?? tile?.method ?? "");
  if (tile?.layer) text += ` @ ${tile.layer}`;
  if (typeof tile?.score === "number" && Number.isFinite(tile.score))
    text += ` · score ${formatNumber(tile.score)}`;
  return text;
}

/**
 * The line above the attribution picture: what target the maps are for, and their state.
 * @param {Record<string, any>} meta
 * @returns {string}
 */
export function attributionLine(meta) {
  if (!meta || !Array.isArray(meta.tiles)) return meta?.state === "computing" ? "computing …" : "";
  const what =
    meta.target === null || meta.target === undefined
      ? "a custom target"
      : String(meta.label ?? `class ${meta.target}`);
  /** @type {Record<string, string>} */
  const states = { computing: " (computing …)", stopped: " (stopped)", error: " (failed)" };
  return `Where the model looks for ${what}${states[String(meta.state)] ?? ""}`;
}

/**
 * "412 of 1,024 channels · 3 of 8 layers complete · torch 42d235163e3c3fe5", the atlas line.
 * @param {Record<string, any>} info  the `atlas_info` trait
 * @returns {string}
 */
export function atlasSummary(info) {
  if (!info || typeof info.channels !== "number") return "";
  const parts = [
    `${info.done} of ${info.channels} channels`,
    `${info.complete} of ${info.layers} layers complete`,
  ];
  parts.push([info.framework, info.fingerprint].filter(Boolean).join(" "));
  return parts.filter(Boolean).join(" · ");
}

/**
 * A whole number typed into a number field, or null when it is not one.
 * @param {string} text
 * @returns {number | null}
 */
export function parseWhole(text) {
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return null;
  return Number(trimmed);
}

/**
 * A typed setting checked against its range: `{value}`, or `{error}` saying what is wrong.
 * @param {string} text
 * @param {string} what  the setting's name in the message
 * @param {[number, number] | null} range  inclusive limits
 * @param {number | null} [empty]  the value of an empty field (and always allowed), if any
 * @returns {{value: number} | {error: string}}
 */
export function readSetting(text, what, range, empty = null) {
  if (empty !== null && !text.trim()) return { value: empty };
  const value = parseWhole(text);
  if (value === null) return { error: `${what} must be a whole number` };
  if (range && value !== empty && (value < range[0] || value > range[1])) {
    const or = empty !== null ? ", or empty for automatic" : "";
    return { error: `${what} must be between ${range[0]} and ${range[1]}${or}` };
  }
  return { value };
}

/**
 * A number short enough for a status line.
 * @param {unknown} value
 * @returns {string}
 */
export function formatNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e4 || magnitude < 1e-3) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

/**
 * A file name made of safe characters.
 * @param {string} text
 * @returns {string}
 */
export function safeFileName(text) {
  return (
    text
      .replace(/[^A-Za-z0-9._-]+/g, "_")
      .replace(/^[._]+/, "")
      .slice(0, 80) || "picture"
  );
}

/**
 * The caption of a channel's exact picture from its statistics (`detail_stats`).
 * @param {Record<string, any>} stats
 * @param {string} what  "filter" or "channel"
 * @param {number} channel
 * @returns {string}
 */
function statsCaption(stats, what, channel) {
  const shape = Array.isArray(stats.shape) ? stats.shape : [];
  const parts = [];
  if (typeof stats.activation === "number") {
    parts.push(`${what} ${channel}`, `activation ${formatNumber(stats.activation)}`);
    if (typeof stats.rank === "number") parts.push(`rank ${stats.rank} of ${stats.of}`);
  } else if (stats.missing) {
    parts.push(`${what} ${channel}: not in the atlas yet`);
  } else if (typeof stats.value === "number") {
    const label = stats.label !== undefined ? ` “${stats.label}”` : "";
    parts.push(`unit ${stats.index}${label}`, `value ${formatNumber(stats.value)}`);
    if (typeof stats.probability === "number")
      parts.push(`p ${(stats.probability * 100).toFixed(1)}%`);
  } else if (shape.length) {
    if (typeof stats.sum_of === "number")
      parts.push(`Σ of ${stats.sum_of} inputs × filter ${channel} (before bias)`);
    else parts.push(`${what} ${channel}`);
    parts.push(
      `min ${formatNumber(stats.min)}`,
      `max ${formatNumber(stats.max)}`,
      `mean ${formatNumber(stats.mean)}`,
    );
    if (stats.nonfinite) parts.push(`${stats.nonfinite} NaN/Inf`);
    if (typeof stats.bias === "number") parts.push(`bias ${formatNumber(stats.bias)}`);
  }
  return parts.join(" · ");
}

/**
 * "channel 5 · objective 1.5" for a feature visualization in the run on screen, else "".
 * @param {Record<string, any>} meta  the `fv_meta` trait
 * @param {number} channel
 * @returns {string}
 */
function fvCaption(meta, channel) {
  /** @type {number[]} */
  const channels = Array.isArray(meta.channels) ? meta.channels : [];
  const index = channels.indexOf(channel);
  if (index < 0) return "";
  const parts = [`${meta.objective === "class" ? "class" : "channel"} ${channel}`];
  const values = Array.isArray(meta.values) ? meta.values : [];
  if (typeof values[index] === "number") parts.push(`objective ${formatNumber(values[index])}`);
  return parts.join(" · ");
}

/**
 * @param {unknown} value
 * @returns {TileLayout | null}
 */
function tiles(value) {
  const layout = /** @type {TileLayout | null | undefined} */ (value);
  return layout && layout.ncols ? layout : null;
}

/**
 * Where the big picture and the detail come from: feature visualization streams pictures of
 * its own; every other view shows `grid` and `detail`. The one place that tells them apart.
 * @param {Model} model
 * @returns {PictureSource}
 */
export function pictureSource(model) {
  const get = (/** @type {string} */ name) => model.get(name);
  return get("view") === "featureviz" ? featureVizSource(get) : gridSource(get, vectorLayer(model));
}

/**
 * @param {(name: string) => any} get
 * @param {boolean} vector  whether the layer outputs a vector (its channels are units)
 * @returns {PictureSource}
 */
function gridSource(get, vector) {
  const meta = get("grid_meta") ?? {};
  const stats = get("detail_stats") ?? {};
  const shape = Array.isArray(stats.shape) ? stats.shape : [];
  const [height, width] = shape.length >= 2 ? shape.slice(-2) : [0, 0];
  const what = get("view") === "filters" ? "filter" : vector ? "unit" : "channel";
  // Vector layers name their unit (`index`); Python may also name the channel outright.
  const said = typeof stats.channel === "number" ? stats.channel : stats.index;
  return {
    bytes: "grid",
    format: get("grid_format") || "png",
    layout: tiles(get("grid_layout")),
    meta,
    width: Number(meta.width ?? 0),
    height: Number(meta.height ?? 0),
    detail: "detail",
    detailFormat: get("detail_format") || "png",
    detailSize: [Number(width), Number(height)],
    arrivals: ["detail", "detail_stats"],
    detailChannel: typeof said === "number" ? said : null,
    label: (channel) => `${what} ${channel}`,
    caption: (channel) => statsCaption(stats, what, channel),
    predictions: get("predictions") ?? [],
    pager: {
      page: Number(meta.page ?? get("page") ?? 0),
      pages: Number(meta.pages ?? 1),
      text: String(meta.text ?? ""),
    },
    what,
  };
}

/**
 * @param {(name: string) => any} get
 * @returns {PictureSource}
 */
function featureVizSource(get) {
  const layout = get("fv_layout") ?? {};
  const meta = get("fv_meta") ?? {};
  const size = Array.isArray(meta.size) ? meta.size : [0, 0];
  // The feature-viz page is the layer's page of channels (what a run optimizes).
  const total = Math.max(1, Number(get("channel_count") ?? 1));
  const pageSize = Math.max(1, Number(get("page_size") ?? 1));
  const page = Number(get("page") ?? 0);
  const first = page * pageSize;
  const last = Math.min(total, first + pageSize) - 1;
  const hasDetail = get("fv_detail")?.byteLength > 0;
  return {
    bytes: "fv_image",
    format: get("fv_format") || "png",
    layout: tiles(layout),
    meta,
    width: Number(layout.width ?? 0),
    height: Number(layout.height ?? 0),
    detail: "fv_detail",
    detailFormat: "png",
    detailSize: [Number(size[1] ?? 0), Number(size[0] ?? 0)],
    arrivals: ["fv_detail"],
    detailChannel: null,
    label: (channel) => fvCaption(meta, channel) || `channel ${channel}`,
    caption: (channel) => (hasDetail ? fvCaption(meta, channel) : ""),
    predictions: [],
    pager: {
      page,
      pages: Math.ceil(total / pageSize),
      text: `channels ${first}–${last} of ${total}`,
    },
    what: "channel",
  };
}

/**
 * @param {Model} model
 * @returns {LayerEntry | undefined}
 */
function currentLayer(model) {
  /** @type {LayerEntry[]} */
  const layers = model.get("layers") ?? [];
  return layers.find((layer) => layer.name === model.get("layer"));
}

/**
 * @param {Model} model
 * @returns {boolean} whether the current layer outputs a vector
 */
function vectorLayer(model) {
  return (currentLayer(model)?.shape?.length ?? 3) === 1;
}

/**
 * The bytes of a file, also where `Blob.arrayBuffer` is missing.
 * @param {Blob} file
 * @returns {Promise<ArrayBuffer>}
 */
function readBytes(file) {
  if (typeof file.arrayBuffer === "function") return file.arrayBuffer();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(/** @type {ArrayBuffer} */ (reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(file);
  });
}

// --------------------------------------------------------------------------- training monitor

/**
 * A frame of the training monitor: its facts (`monitor_meta`) and its packed pictures.
 * @typedef {{step: number, meta: Record<string, any>, bytes: Uint8Array}} MonitorFrame
 */

/**
 * The history with `frame` in its place by step (a frame of the same step is replaced), the
 * oldest dropped beyond `limit`.
 * @param {MonitorFrame[]} history
 * @param {MonitorFrame} frame
 * @param {number} limit
 * @returns {MonitorFrame[]}
 */
export function addFrame(history, frame, limit) {
  const kept = history.filter((old) => old.step !== frame.step);
  kept.push(frame);
  kept.sort((a, b) => a.step - b.step);
  return kept.slice(Math.max(0, kept.length - Math.max(1, limit)));
}

/**
 * One line per channel through the frames: `[[step, value], ...]` of `key` ("mean", "dead").
 * @param {MonitorFrame[]} history
 * @param {string} layer
 * @param {string} key
 * @returns {number[][][]}
 */
export function channelSeries(history, layer, key) {
  /** @type {number[][][]} */
  const lines = [];
  for (const frame of history) {
    const values = frame.meta.layers?.[layer]?.[key];
    if (!Array.isArray(values)) continue;
    values.forEach((value, channel) => {
      (lines[channel] ??= []).push([frame.step, Number(value)]);
    });
  }
  return lines;
}

/**
 * The logged numbers of every frame, merged by name and step: `{loss: [[step, value], ...]}`.
 * @param {MonitorFrame[]} history
 * @returns {Record<string, number[][]>}
 */
export function loggedNumbers(history) {
  /** @type {Record<string, Map<number, number>>} */
  const merged = {};
  for (const frame of history) {
    for (const [name, pairs] of Object.entries(frame.meta.numbers ?? {})) {
      const points = (merged[name] ??= new Map());
      for (const [step, value] of /** @type {number[][]} */ (pairs)) points.set(step, value);
    }
  }
  return Object.fromEntries(
    Object.entries(merged).map(([name, points]) => [name, [...points].sort((a, b) => a[0] - b[0])]),
  );
}

/**
 * An SVG path through `[x, y]` points scaled into a `width` x `height` box (y up).
 * @param {number[][]} points
 * @param {{x: [number, number], y: [number, number]}} range
 * @param {number} width
 * @param {number} height
 * @returns {string}
 */
export function chartPath(points, range, width, height) {
  const spanX = range.x[1] - range.x[0] || 1;
  const spanY = range.y[1] - range.y[0] || 1;
  return points
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
    .map(([x, y], i) => {
      const px = ((x - range.x[0]) / spanX) * width;
      const py = height - ((y - range.y[0]) / spanY) * height;
      return `${i ? "L" : "M"}${px.toFixed(1)} ${py.toFixed(1)}`;
    })
    .join(" ");
}

// --------------------------------------------------------------------------- scheduling

/**
 * Repaint panels once per animation frame. `mark(trait)` notes the panels that declared the
 * trait; the next frame paints each of them once, in panel order, with the set of traits that
 * changed. Which painter depends on which trait is thus each panel's `traits`, nowhere else.
 * @param {Panel[]} panels
 * @param {{request: (callback: () => void) => number, cancel: (id: number) => void}} frames
 * @param {(error: unknown) => void} [onError]  a painter threw (the others still paint)
 */
export function createScheduler(panels, frames, onError = (error) => console.error(error)) {
  /** @type {Map<string, Panel[]>} */
  const byTrait = new Map();
  for (const panel of panels) {
    for (const trait of panel.traits) byTrait.set(trait, [...(byTrait.get(trait) ?? []), panel]);
  }
  /** @type {Map<Panel, Set<string>>} */
  const dirty = new Map();
  let pending = 0;
  let closed = false;

  /**
   * @param {Panel} panel
   * @param {Set<string>} changed
   */
  function paint(panel, changed) {
    try {
      panel.paint(changed);
    } catch (error) {
      onError(error);
    }
  }

  function flush() {
    pending = 0;
    const work = new Map(dirty);
    dirty.clear();
    for (const panel of panels) {
      const changed = work.get(panel);
      if (changed) paint(panel, changed);
    }
  }

  return {
    /** Every trait and local key some panel declared. */
    traits: [...byTrait.keys()],
    /** @param {string} trait */
    mark(trait) {
      if (closed) return;
      for (const panel of byTrait.get(trait) ?? []) {
        const changed = dirty.get(panel) ?? new Set();
        changed.add(trait);
        dirty.set(panel, changed);
      }
      if (dirty.size && !pending) pending = frames.request(flush);
    },
    /** Paint every panel now, as if all its traits changed (the first paint). */
    paintAll() {
      for (const panel of panels) paint(panel, new Set(panel.traits));
    },
    close() {
      closed = true;
      if (pending) frames.cancel(pending);
      pending = 0;
      dirty.clear();
    },
  };
}

/**
 * Animation frames of the document's window (a short timer where there are none).
 * @param {Window | null} win
 */
function animationFrames(win) {
  if (win && typeof win.requestAnimationFrame === "function") {
    return {
      request: (/** @type {() => void} */ callback) => win.requestAnimationFrame(callback),
      cancel: (/** @type {number} */ id) => win.cancelAnimationFrame(id),
    };
  }
  return {
    request: (/** @type {() => void} */ callback) => Number(setTimeout(callback, 16)),
    cancel: (/** @type {number} */ id) => clearTimeout(id),
  };
}

// --------------------------------------------------------------------------- the context

/**
 * What every panel is given: the model, DOM helpers, browser-only state, and the means to
 * send, schedule and clean up.
 * @typedef {ReturnType<typeof createContext>} Context
 */

/**
 * @param {Model} model
 * @param {HTMLElement} el
 */
function createContext(model, el) {
  const doc = el.ownerDocument;
  const controller = new AbortController();
  /** @type {Set<ReturnType<typeof setTimeout>>} */
  const timers = new Set();
  /** @type {Set<string>} */
  const urls = new Set();
  /** Object URL and bytes of each picture shown. @type {Map<HTMLImageElement, {data: unknown, format: string, url: string}>} */
  const shown = new Map();
  /** @type {Array<() => void>} */
  const finalizers = [];

  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {{className?: string, role?: string, text?: string, attrs?: Record<string, string>}} [options]
   * @param {Array<Node>} [children]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function make(tag, options = {}, children = []) {
    const node = doc.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.role) node.setAttribute("data-role", options.role);
    if (options.text !== undefined) node.textContent = options.text;
    for (const [name, value] of Object.entries(options.attrs ?? {})) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  const ctx = {
    model,
    doc,
    win: doc.defaultView,
    prefix: `cnnw-${++instances}`,
    root: make("div", { className: "cnnw-root", role: "root" }),
    listen: { signal: controller.signal },
    /** Browser-only state: the zoom, an error of the user's input, whether it is closed. */
    local: { zoom: "fit", error: "", closed: false },
    /** A trait or LOCAL key changed: repaint its panels (`render` connects the scheduler). */
    touch: (/** @type {string} */ key) => void key,
    make,
    /**
     * @param {string} name
     * @param {any} value
     */
    send(name, value) {
      model.set(name, value);
      model.save_changes();
    },
    /**
     * Select a channel, clamped to the layer. The detail follows in the next frame from the
     * tile on screen; the kernel's exact picture replaces it when it arrives.
     * @param {number} channel
     */
    selectChannel(channel) {
      const count = Math.max(1, Number(model.get("channel_count") ?? 1));
      const clamped = Math.min(Math.max(0, Math.trunc(channel)), count - 1);
      if (!Number.isFinite(clamped) || clamped === model.get("channel")) return;
      ctx.send("channel", clamped);
      ctx.touch("channel");
    },
    /**
     * Show picture bytes in an img through an object URL (the previous one is revoked); the
     * same bytes keep their URL: one update fires several changes, one load is enough.
     * @param {HTMLImageElement} img
     * @param {DataView | ArrayBuffer | null | undefined} data
     * @param {string} format
     * @returns {boolean} whether there is a picture
     */
    show(img, data, format) {
      const has = Boolean(data && data.byteLength);
      const now = shown.get(img);
      if (!now || now.data !== data || now.format !== format) {
        if (now?.url) URL.revokeObjectURL(now.url);
        const url = has
          ? URL.createObjectURL(
              new Blob([/** @type {BlobPart} */ (data)], { type: `image/${format}` }),
            )
          : "";
        shown.set(img, { data, format, url });
        if (url) img.src = url;
        else img.removeAttribute("src");
      }
      img.hidden = !has;
      return has;
    },
    /**
     * A timer that cleanup clears.
     * @param {() => void} callback
     * @param {number} ms
     */
    later(callback, ms) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        callback();
      }, ms);
      timers.add(timer);
    },
    /** Object URLs of downloads, revoked by cleanup. */
    urls,
    /**
     * Run `finalize` at cleanup (e.g. to free a decoded bitmap).
     * @param {() => void} finalize
     */
    onClose(finalize) {
      finalizers.push(finalize);
    },
    close() {
      ctx.local.closed = true;
      controller.abort();
      for (const finalize of finalizers.splice(0)) finalize();
      for (const { url } of shown.values()) if (url) URL.revokeObjectURL(url);
      shown.clear();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const url of urls) URL.revokeObjectURL(url);
      urls.clear();
      ctx.root.remove();
    },
  };
  return ctx;
}

// --------------------------------------------------------------------------- DOM helpers

/**
 * A focusable control: notebook shortcuts must not fire while it has focus.
 * @template {HTMLElement} T
 * @param {T} node
 * @returns {T}
 */
function focusable(node) {
  node.setAttribute("data-lm-suppress-shortcuts", "");
  return node;
}

/**
 * A focusable `<button type="button">`.
 * @param {Context} ctx
 * @param {string} role
 * @param {string} text
 * @param {string} [className]
 * @param {Record<string, string>} [attrs]
 */
function button(ctx, role, text, className = "cnnw-button", attrs = {}) {
  return focusable(
    ctx.make("button", { className, role, text, attrs: { type: "button", ...attrs } }),
  );
}

/**
 * A control with its `<label for>`.
 * @param {Context} ctx
 * @param {string} label
 * @param {HTMLElement} control  with an id
 * @param {string} [part]  the control group it belongs to
 */
function field(ctx, label, control, part) {
  return ctx.make("span", { className: "cnnw-field", attrs: part ? { "data-part": part } : {} }, [
    ctx.make("label", { className: "cnnw-label", text: label, attrs: { for: control.id } }),
    control,
  ]);
}

/**
 * Enlarge a picture by a whole factor (the browser keeps the pixels sharp).
 * @param {HTMLElement} node
 * @param {number} width
 * @param {number} height
 * @param {number} target
 * @param {string} zoom
 */
function sizePicture(node, width, height, target, zoom) {
  if (!width || !height) {
    node.style.removeProperty("width");
    node.style.removeProperty("height");
    return;
  }
  node.style.width = `${width * displayScale(width, height, target, zoom)}px`;
  node.style.height = "auto";
}

/**
 * Put an overlay over a box of the picture (fractions), or hide it.
 * @param {HTMLElement} node
 * @param {{left: number, top: number, width: number, height: number} | null} box
 */
function place(node, box) {
  node.hidden = box === null;
  if (!box) return;
  node.style.left = `${box.left * 100}%`;
  node.style.top = `${box.top * 100}%`;
  node.style.width = `${box.width * 100}%`;
  node.style.height = `${box.height * 100}%`;
}

/**
 * A labelled `<select>`, the one helper behind every select of the widget: the options come
 * from `choices()` (a list of the `choices` trait, mostly), the value from `value()` (default:
 * the trait), and a pick goes to `pick` (default: send the trait).
 * @param {Context} ctx
 * @param {{role: string, label: string, part?: string, trait?: string,
 *   choices: () => [string, string][], value?: () => string,
 *   pick?: (value: string) => void}} spec
 */
function choiceSelect(ctx, spec) {
  const trait = spec.trait ?? "";
  const select = focusable(
    ctx.make("select", {
      className: `cnnw-select cnnw-${spec.role}`,
      role: spec.role,
      attrs: { id: `${ctx.prefix}-${spec.role}` },
    }),
  );
  const value = spec.value ?? (() => String(ctx.model.get(trait) ?? ""));
  const pick = spec.pick ?? ((/** @type {string} */ chosen) => ctx.send(trait, chosen));
  select.addEventListener("change", () => pick(select.value), ctx.listen);
  let built = "";
  return {
    select,
    wrap: field(ctx, spec.label, select, spec.part),
    paint() {
      const wanted = value();
      const pairs = spec.choices();
      // A value the model holds that the list lacks is listed too: the select never shows
      // another value than the one in use.
      if (wanted && !pairs.some(([choice]) => choice === wanted)) pairs.push([wanted, wanted]);
      const key = JSON.stringify(pairs);
      if (key !== built) {
        built = key;
        select.replaceChildren(
          ...pairs.map(([choice, text]) => ctx.make("option", { text, attrs: { value: choice } })),
        );
      }
      select.value = wanted;
    },
  };
}

/**
 * A number field for a whole-number trait, checked against its limits (`choices.limits`)
 * before it is sent. What the user typed stays in the field, marked invalid, with the reason
 * in the error area; only a new value of the trait replaces it.
 * @param {Context} ctx
 * @param {{role: string, label: string, trait: string, what: string, empty?: number,
 *   attrs?: Record<string, string>}} spec
 */
function settingField(ctx, spec) {
  const empty = spec.empty ?? null;
  const input = focusable(
    ctx.make("input", {
      className: `cnnw-input cnnw-number cnnw-${spec.role}`,
      role: spec.role,
      attrs: { id: `${ctx.prefix}-${spec.role}`, type: "number", step: "1", ...spec.attrs },
    }),
  );
  const limits = () => choiceLimit(ctx.model.get("choices"), spec.trait);
  input.addEventListener(
    "change",
    () => {
      const read = readSetting(input.value, spec.what, limits(), empty);
      input.setAttribute("aria-invalid", String("error" in read));
      if ("error" in read) ctx.local.error = read.error;
      else if (ctx.local.error) ctx.local.error = "";
      ctx.touch(LOCAL.error);
      if ("value" in read && read.value !== ctx.model.get(spec.trait))
        ctx.send(spec.trait, read.value);
    },
    ctx.listen,
  );
  return {
    wrap: field(ctx, spec.label, input),
    /** @param {Set<string>} changed */
    paint(changed) {
      const range = limits();
      if (range) {
        input.min = String(empty ?? range[0]);
        input.max = String(range[1]);
      }
      if (!changed.has(spec.trait)) return; // never overwrite what the user is typing
      const value = Number(ctx.model.get(spec.trait) ?? 0);
      input.value = empty !== null && value === empty ? "" : String(value);
      input.removeAttribute("aria-invalid");
    },
  };
}

// --------------------------------------------------------------------------- panels

/**
 * The view switch, and which control groups the view shows.
 * @param {Context} ctx
 * @returns {Panel}
 */
function viewsPanel(ctx) {
  const { model } = ctx;
  const bar = ctx.make("div", {
    className: "cnnw-views",
    role: "views",
    attrs: { "aria-label": "view" },
  });
  bar.addEventListener(
    "click",
    (event) => {
      const target = /** @type {HTMLElement} */ (event.target).closest?.("[data-view]");
      const view = target?.getAttribute("data-view");
      if (view && view !== model.get("view")) ctx.send("view", view);
    },
    ctx.listen,
  );
  return {
    el: bar,
    traits: ["views", "view", "choices", "layer", "layers", "images_count"],
    paint(changed) {
      const view = String(model.get("view") ?? "");
      if (changed.has("views") || changed.has("choices")) {
        const labels = new Map(choiceList(model.get("choices"), "view"));
        /** @type {string[]} */
        const views = model.get("views") ?? [];
        bar.replaceChildren(
          ...views.map((name) =>
            button(ctx, "view", labels.get(name) ?? name, "cnnw-button cnnw-view-button", {
              "data-view": name,
            }),
          ),
        );
        bar.hidden = views.length < 2;
      }
      for (const node of bar.children)
        node.setAttribute("aria-pressed", String(node.getAttribute("data-view") === view));
      const images = Number(model.get("images_count") ?? 0);
      const parts = shownParts(view, { vector: vectorLayer(model), images });
      for (const node of ctx.root.querySelectorAll("[data-part]")) {
        /** @type {HTMLElement} */ (node).hidden = !parts.has(node.getAttribute("data-part") ?? "");
      }
      ctx.root.setAttribute("data-view", view);
    },
  };
}

/**
 * The layer menu and its search field (filtering needs no kernel).
 * @param {Context} ctx
 * @returns {Panel}
 */
function layerPanel(ctx) {
  const { model, make } = ctx;
  const filter = focusable(
    make("input", {
      className: "cnnw-input cnnw-layer-filter",
      role: "layer-filter",
      attrs: {
        id: `${ctx.prefix}-layer-filter`,
        type: "search",
        placeholder: "filter layers",
        autocomplete: "off",
      },
    }),
  );
  const select = focusable(
    make("select", {
      className: "cnnw-select cnnw-layer",
      role: "layer",
      attrs: { id: `${ctx.prefix}-layer` },
    }),
  );
  const count = make("span", { className: "cnnw-muted", role: "layer-count" });
  const el = make(
    "div",
    { className: "cnnw-row cnnw-layer-row", attrs: { "data-part": "layer" } },
    [
      make("label", { className: "cnnw-label", text: "Layer", attrs: { for: select.id } }),
      select,
      make("label", {
        className: "cnnw-label cnnw-sr-only",
        text: "Filter layers",
        attrs: { for: filter.id },
      }),
      filter,
      count,
    ],
  );
  filter.addEventListener("input", () => ctx.touch(LOCAL.layerFilter), ctx.listen);
  select.addEventListener(
    "change",
    () => {
      if (select.value && select.value !== model.get("layer")) ctx.send("layer", select.value);
    },
    ctx.listen,
  );
  return {
    el,
    traits: ["layers", "layer", "view", LOCAL.layerFilter],
    paint() {
      const view = String(model.get("view") ?? "");
      const current = String(model.get("layer") ?? "");
      /** @type {LayerEntry[]} */
      const all = model.get("layers") ?? [];
      const shown = visibleLayers(all, view, filter.value, current);
      select.replaceChildren(
        ...shown.map((layer) =>
          make("option", {
            className: layer.ran === false ? "cnnw-not-ran" : "",
            text: layerLabel(layer),
            attrs: { value: layer.name },
          }),
        ),
      );
      select.value = current;
      const eligible = visibleLayers(all, view, "", "").length;
      count.textContent = filter.value.trim() ? `${shown.length} of ${eligible}` : "";
    },
  };
}

/**
 * How the pictures are drawn: scale, colours, input channel, activation / vector mode, zoom.
 * @param {Context} ctx
 * @returns {Panel}
 */
function drawingPanel(ctx) {
  const { model } = ctx;
  const listed = (/** @type {string} */ name) => () => choiceList(model.get("choices"), name);
  const inChannels = () => Number((model.get("grid_meta") ?? {}).in_channels ?? 0);
  const selects = [
    ["normalization", "Scale", "drawing", "normalization"],
    ["colormap", "Colors", "drawing", "colormap"],
    ["input-channel", "Input channel", "input-channel", "input_channel"],
    ["activation-mode", "Show", "activation-mode", "activation_mode"],
    ["vector-mode", "Vector as", "vector-mode", "vector_mode"],
  ].map(([role, label, part, trait]) =>
    choiceSelect(ctx, {
      role,
      label,
      part,
      trait,
      choices:
        trait === "input_channel"
          ? () => inputChannelChoices(listed(trait)(), inChannels())
          : listed(trait),
    }),
  );
  // Zoom is the browser's alone: it resizes the pictures and sends nothing.
  const zoom = choiceSelect(ctx, {
    role: "zoom",
    label: "Zoom",
    part: "picture",
    choices: listed("zoom"),
    value: () => ctx.local.zoom,
    pick: (value) => {
      ctx.local.zoom = value;
      ctx.touch(LOCAL.zoom);
    },
  });
  selects.push(zoom);
  return {
    el: ctx.make(
      "div",
      { className: "cnnw-row cnnw-options" },
      selects.map((select) => select.wrap),
    ),
    traits: [
      "choices",
      "normalization",
      "colormap",
      "input_channel",
      "activation_mode",
      "vector_mode",
      "grid_meta",
      LOCAL.zoom,
    ],
    paint() {
      for (const select of selects) select.paint();
    },
  };
}

/**
 * Send a file the user chose or dropped as the input image (its size checked first).
 * @param {Context} ctx
 * @param {File | undefined | null} file
 */
async function sendFile(ctx, file) {
  if (!file) return;
  const limit = choiceLimit(ctx.model.get("choices"), "upload_bytes");
  const mib = (/** @type {number} */ bytes) => Number((bytes / 2 ** 20).toFixed(1));
  ctx.local.error = "";
  if (limit && file.size > limit[1])
    ctx.local.error = `${file.name} is ${mib(file.size)} MiB; the limit is ${mib(limit[1])} MiB`;
  ctx.touch(LOCAL.error);
  if (ctx.local.error) return;
  let bytes;
  try {
    bytes = await readBytes(file);
  } catch (error) {
    ctx.local.error = `cannot read ${file.name}: ${error}`;
    ctx.touch(LOCAL.error);
    return;
  }
  if (ctx.local.closed) return;
  ctx.model.set("upload_name", file.name);
  ctx.model.set("upload", new DataView(bytes));
  ctx.model.save_changes();
}

/**
 * The input image's sources: a bundled sample, a file, or a file dropped on the widget.
 * @param {Context} ctx
 * @returns {Panel}
 */
function imagePanel(ctx) {
  const { model, make, root } = ctx;
  const sample = choiceSelect(ctx, {
    role: "sample",
    label: "Image",
    trait: "sample",
    choices: () => [
      ["", "sample image…"],
      ...(model.get("samples") ?? []).map((/** @type {string} */ name) => [
        String(name),
        String(name),
      ]),
    ],
    pick: (name) => {
      if (name) ctx.send("sample", name);
    },
  });
  const upload = focusable(
    make("input", {
      className: "cnnw-file",
      role: "upload",
      attrs: { id: `${ctx.prefix}-upload`, type: "file", accept: "image/*" },
    }),
  );
  upload.addEventListener(
    "change",
    () => {
      const file = upload.files?.[0];
      upload.value = ""; // the same file may be chosen again
      sendFile(ctx, file);
    },
    ctx.listen,
  );
  // Drop a picture anywhere on the widget (only where an image can be used).
  const acceptsImages = () => (model.get("views") ?? []).includes("activations");
  const drop = (/** @type {DragEvent} */ event) => {
    root.classList.remove("cnnw-dragging");
    if (!acceptsImages()) return;
    event.preventDefault();
    sendFile(ctx, event.dataTransfer?.files?.[0]);
  };
  root.addEventListener(
    "dragover",
    (event) => {
      if (!acceptsImages()) return;
      event.preventDefault();
      root.classList.add("cnnw-dragging");
    },
    ctx.listen,
  );
  root.addEventListener("dragleave", () => root.classList.remove("cnnw-dragging"), ctx.listen);
  root.addEventListener("drop", drop, ctx.listen);
  return {
    el: make("div", { className: "cnnw-row cnnw-image-row", attrs: { "data-part": "image" } }, [
      sample.wrap,
      field(ctx, "or open / drop a file", upload),
    ]),
    traits: ["samples", "sample"],
    paint: () => sample.paint(),
  };
}

/**
 * The input image as the model sees it.
 * @param {Context} ctx
 * @returns {Panel}
 */
function inputPicturePanel(ctx) {
  const image = ctx.make("img", {
    className: "cnnw-input-image cnnw-pixelated",
    role: "input-image",
    attrs: { alt: "input image" },
  });
  image.hidden = true;
  // Its size is known only once decoded (it has no layout of its own). Small inputs (a 28x28
  // digit) are enlarged with sharp pixels; photos are shown smoothly.
  image.addEventListener(
    "load",
    () => {
      const { naturalWidth: width, naturalHeight: height } = image;
      sizePicture(image, width, height, INPUT_TARGET, ctx.local.zoom);
      image.classList.toggle("cnnw-pixelated", Math.max(width, height) < INPUT_TARGET);
    },
    ctx.listen,
  );
  return {
    el: ctx.make("figure", { className: "cnnw-input-figure", attrs: { "data-part": "image" } }, [
      image,
      ctx.make("figcaption", { className: "cnnw-muted", text: "input" }),
    ]),
    traits: ["image_png"],
    paint() {
      ctx.show(image, ctx.model.get("image_png"), "png");
    },
  };
}

/**
 * The feature-visualization settings, Run / Stop and the run's progress.
 * @param {Context} ctx
 * @returns {Panel}
 */
function featureVizPanel(ctx) {
  const { model, make } = ctx;
  const run = button(ctx, "fv-run", "Run gradient ascent", "cnnw-button cnnw-primary");
  const stop = button(ctx, "fv-stop", "Stop");
  const saveGif = button(ctx, "fv-save-gif", "Save GIF", "cnnw-button", {
    title: "download the optimization of the run on screen as an animated GIF",
  });
  // Set by a click: the next fv_gif the kernel sends is downloaded (and only that one).
  let gifWanted = false;
  const steps = settingField(ctx, {
    role: "fv-steps",
    label: "Steps",
    trait: "fv_steps",
    what: "steps",
  });
  const size = settingField(ctx, {
    role: "fv-size",
    label: "Size",
    trait: "fv_size",
    what: "size",
    empty: 0, // automatic
    attrs: { placeholder: "auto", title: "image side in pixels; empty = automatic" },
  });
  const [recipe, objective] = ["fv_recipe", "fv_objective"].map((trait) =>
    choiceSelect(ctx, {
      role: trait.replace("_", "-"),
      label: trait === "fv_recipe" ? "Recipe" : "Objective",
      trait,
      choices: () => choiceList(model.get("choices"), trait),
    }),
  );
  const progress = make("progress", {
    className: "cnnw-progress",
    role: "fv-progress",
    attrs: { max: "1", value: "0", "aria-label": "optimization progress" },
  });
  const progressText = make("span", { className: "cnnw-muted", role: "fv-progress-text" });
  const hint = make("div", {
    className: "cnnw-muted cnnw-fv-hint",
    role: "fv-hint",
    text: "Press “Run gradient ascent” to synthesize the image that excites each channel of this page most.",
  });
  const bump = (/** @type {string} */ name) => ctx.send(name, Number(model.get(name) ?? 0) + 1);
  run.addEventListener("click", () => bump("fv_run"), ctx.listen);
  stop.addEventListener("click", () => bump("fv_stop"), ctx.listen);
  const askForGif = () => {
    gifWanted = true;
    bump("fv_save_gif");
  };
  saveGif.addEventListener("click", askForGif, ctx.listen);
  return {
    el: make("div", { className: "cnnw-fv", attrs: { "data-part": "featureviz" } }, [
      make("div", { className: "cnnw-row cnnw-fv-settings" }, [
        objective.wrap,
        recipe.wrap,
        steps.wrap,
        size.wrap,
      ]),
      make("div", { className: "cnnw-row cnnw-fv-actions" }, [
        run,
        stop,
        saveGif,
        progress,
        progressText,
      ]),
      hint,
    ]),
    traits: [
      "choices",
      "fv_running",
      "fv_progress",
      "fv_steps",
      "fv_size",
      "fv_recipe",
      "fv_objective",
      "fv_meta",
      "fv_image",
      "fv_gif",
      "fv_gif_ready",
    ],
    paint(changed) {
      const running = Boolean(model.get("fv_running"));
      saveGif.disabled = running || !model.get("fv_gif_ready");
      if (gifWanted && changed.has("fv_gif") && model.get("fv_gif")?.byteLength) {
        gifWanted = false;
        downloadGif(ctx);
      }
      steps.paint(changed);
      size.paint(changed);
      recipe.paint();
      objective.paint();
      stop.disabled = !running;
      run.textContent = running ? "Restart" : "Run gradient ascent";
      const done = Number(model.get("fv_progress") ?? 0);
      progress.value = Number.isFinite(done) ? done : 0;
      const meta = model.get("fv_meta") ?? {};
      progressText.textContent = fvProgressText(
        typeof meta.steps === "number" ? meta : null,
        running,
      );
      hint.hidden = model.get("fv_image")?.byteLength > 0 || running;
      ctx.root.classList.toggle("cnnw-fv-running", running);
    },
  };
}

/**
 * The channel slider and number.
 * @param {Context} ctx
 * @returns {Panel}
 */
function channelPanel(ctx) {
  const { model, make } = ctx;
  const slider = focusable(
    make("input", {
      className: "cnnw-slider",
      role: "channel-slider",
      attrs: {
        id: `${ctx.prefix}-channel`,
        type: "range",
        min: "0",
        max: "0",
        step: "1",
        value: "0",
      },
    }),
  );
  const number = focusable(
    make("input", {
      className: "cnnw-input cnnw-number",
      role: "channel-number",
      attrs: {
        type: "number",
        min: "0",
        max: "0",
        step: "1",
        value: "0",
        "aria-label": "channel number",
      },
    }),
  );
  const label = make("label", {
    className: "cnnw-label",
    text: "Channel",
    attrs: { for: slider.id },
  });
  slider.addEventListener("input", () => ctx.selectChannel(Number(slider.value)), ctx.listen);
  number.addEventListener(
    "change",
    () => {
      const value = Number(number.value);
      if (Number.isFinite(value)) ctx.selectChannel(value);
      else ctx.touch("channel");
    },
    ctx.listen,
  );
  return {
    el: make("div", { className: "cnnw-row cnnw-channel-row", attrs: { "data-part": "channel" } }, [
      label,
      slider,
      number,
    ]),
    traits: ["channel", "channel_count", "view", "layer", "layers"],
    paint() {
      const count = Math.max(1, Number(model.get("channel_count") ?? 1));
      const channel = String(model.get("channel") ?? 0);
      // Only what differs is written: this runs in the frame after every slider move.
      for (const input of [slider, number]) {
        if (input.max !== String(count - 1)) input.max = String(count - 1);
        if (input.value !== channel) input.value = channel;
      }
      const view = model.get("view");
      label.textContent = vectorLayer(model) ? "Unit" : view === "filters" ? "Filter" : "Channel";
    },
  };
}

/**
 * Clicks, hover labels and arrow keys on the big picture: mapped to channels with its layout.
 * @param {Context} ctx
 * @param {{grid: HTMLImageElement, wrap: HTMLElement, tooltip: HTMLElement}} parts
 */
function gridPointer(ctx, { grid, wrap, tooltip }) {
  const { model } = ctx;
  /**
   * The channel under a pointer event, or -1.
   * @param {MouseEvent} event
   */
  function channelUnder(event) {
    const { layout } = pictureSource(model);
    const rect = grid.getBoundingClientRect();
    if (!layout || !rect.width || !rect.height) return -1;
    const x = ((event.clientX - rect.left) * layout.width) / rect.width;
    const y = ((event.clientY - rect.top) * layout.height) / rect.height;
    return channelAt(layout, x, y);
  }
  grid.addEventListener(
    "click",
    (event) => {
      const channel = channelUnder(event);
      if (channel >= 0) ctx.selectChannel(channel);
    },
    ctx.listen,
  );
  grid.addEventListener(
    "mousemove",
    (event) => {
      const channel = channelUnder(event);
      tooltip.hidden = channel < 0;
      if (channel < 0) return;
      tooltip.textContent = `${model.get("layer")} · ${pictureSource(model).what} ${channel}`;
      const box = wrap.getBoundingClientRect();
      tooltip.style.left = `${event.clientX - box.left + 12}px`;
      tooltip.style.top = `${event.clientY - box.top + 12}px`;
    },
    ctx.listen,
  );
  grid.addEventListener("mouseleave", () => (tooltip.hidden = true), ctx.listen);
  wrap.addEventListener(
    "keydown",
    (event) => {
      const columns = pictureSource(model).layout?.ncols ?? 1;
      const steps = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns };
      const step = steps[/** @type {keyof typeof steps} */ (event.key)];
      if (step === undefined) return;
      event.preventDefault();
      ctx.selectChannel(Number(model.get("channel")) + step);
    },
    ctx.listen,
  );
}

/**
 * The big picture: grid (or single picture), selection highlight, health marks, hover label,
 * and the predictions of an output layer.
 * @param {Context} ctx
 * @returns {Panel & {tiles: () => Tiles | null}}
 */
function picturePanel(ctx) {
  const { model, make } = ctx;
  const grid = make("img", {
    className: "cnnw-grid cnnw-pixelated",
    role: "grid",
    attrs: { alt: "grid", draggable: "false" },
  });
  grid.hidden = true;
  const flags = make("div", { className: "cnnw-flags", role: "health-flags" });
  const highlight = make("div", { className: "cnnw-highlight", role: "highlight" });
  highlight.hidden = true;
  const tooltip = make("div", {
    className: "cnnw-tooltip",
    role: "tooltip",
    attrs: { "aria-hidden": "true" },
  });
  tooltip.hidden = true;
  const wrap = focusable(
    make(
      "div",
      {
        className: "cnnw-grid-wrap",
        role: "grid-wrap",
        attrs: { tabindex: "0", "aria-label": "channels; arrow keys move the selection" },
      },
      [grid, flags, highlight, tooltip],
    ),
  );
  const predictions = make("ol", { className: "cnnw-predictions", role: "predictions" });
  gridPointer(ctx, { grid, wrap, tooltip });
  const tiles = decodedTiles(ctx, grid);
  return {
    el: make("div", { className: "cnnw-grid-column" }, [wrap, predictions]),
    tiles,
    traits: [...PICTURE_TRAITS, "channel", "layer", "health_flags", LOCAL.zoom],
    paint() {
      const source = pictureSource(model);
      const shown = ctx.show(grid, model.get(source.bytes), source.format);
      sizePicture(grid, source.width, source.height, GRID_TARGET, ctx.local.zoom);
      wrap.classList.toggle("cnnw-clickable", source.layout !== null);
      place(highlight, shown ? tileBox(source.layout, Number(model.get("channel"))) : null);
      // Marks belong to the layer of the picture on screen: after a layer change the flags
      // of the new layer arrive before its picture does.
      const current = shown && source.meta.layer === model.get("layer");
      const marks = current ? flagBoxes(source.layout, model.get("health_flags")) : [];
      flags.replaceChildren(
        ...marks.map(({ channel, kinds, box }) => {
          const words = kinds.map((kind) => kind.replace(/_/g, " ")).join(", ");
          const mark = make(
            "div",
            {
              className: "cnnw-flag",
              role: "health-flag",
              attrs: { "data-channel": String(channel), title: `channel ${channel}: ${words}` },
            },
            [make("span", { className: "cnnw-flag-badge", text: "!" })],
          );
          place(mark, box);
          return mark;
        }),
      );
      flags.hidden = marks.length === 0;
      predictions.replaceChildren(
        ...source.predictions.map((row) =>
          make("li", { text: `${row.label} — ${(row.value * 100).toFixed(1)}%` }),
        ),
      );
      predictions.hidden = source.predictions.length === 0;
    },
  };
}

/**
 * The grid picture on screen, decoded, to cut tiles from.
 * @typedef {{image: CanvasImageSource, width: number, height: number}} Tiles
 */

/**
 * The grid picture as something to cut tiles from, once it is decoded: an ImageBitmap where
 * the browser makes one (drawing from it needs no decode and no style recalculation in the
 * frame that shows the tile), else the img itself.
 * @param {Context} ctx
 * @param {HTMLImageElement} grid
 * @returns {() => Tiles | null}
 */
function decodedTiles(ctx, grid) {
  /** @type {{src: string, bitmap: ImageBitmap} | null} */
  let decoded = null;
  const release = () => {
    decoded?.bitmap.close();
    decoded = null;
  };
  grid.addEventListener(
    "load",
    () => {
      ctx.touch(LOCAL.gridLoaded); // the detail can be cut from the grid now
      const src = grid.getAttribute("src") ?? "";
      ctx.win?.createImageBitmap?.(grid).then(
        (bitmap) => {
          if (ctx.local.closed || grid.getAttribute("src") !== src) return bitmap.close();
          release();
          decoded = { src, bitmap };
        },
        () => {}, // the img itself serves
      );
    },
    ctx.listen,
  );
  ctx.onClose(release);
  return () => {
    if (grid.hidden || !grid.complete || !grid.naturalWidth) return null;
    const { naturalWidth: width, naturalHeight: height } = grid;
    if (decoded && decoded.src === grid.getAttribute("src"))
      return { image: decoded.bitmap, width, height };
    return { image: grid, width, height };
  };
}

/**
 * Draw the tile of `channel` from the decoded grid into `canvas`; false when that tile is not
 * on screen (another page, a picture without tiles, the grid still loading).
 * @param {HTMLCanvasElement} canvas
 * @param {Tiles | null} tiles
 * @param {TileLayout | null} layout
 * @param {number} channel
 */
function drawTile(canvas, tiles, layout, channel) {
  const rect = tileRect(layout, channel);
  if (!rect || !layout || !tiles) return false;
  // The layout must describe the picture decoded in the img, not one still on its way.
  if (tiles.width !== layout.width || tiles.height !== layout.height) return false;
  const context = canvas.getContext("2d");
  if (!context) return false;
  if (canvas.width !== rect.width || canvas.height !== rect.height) {
    canvas.width = rect.width; // also clears it
    canvas.height = rect.height;
  } else context.clearRect(0, 0, rect.width, rect.height);
  context.imageSmoothingEnabled = false;
  const { x, y, width, height } = rect;
  context.drawImage(tiles.image, x, y, width, height, 0, 0, width, height);
  canvas.setAttribute("data-channel", String(channel));
  return true;
}

/**
 * The selected channel alone, enlarged, with its caption. Moving to a channel whose tile is
 * on screen shows that tile at once (state "provisional"); the kernel's exact picture replaces
 * it when it arrives ("exact"). Off-screen channels keep the old picture, dimmed ("stale").
 * @param {Context} ctx
 * @param {() => Tiles | null} tiles  the big picture, decoded, to cut tiles from
 * @returns {Panel}
 */
function detailPanel(ctx, tiles) {
  const { model, make } = ctx;
  const detail = make("img", {
    className: "cnnw-detail cnnw-pixelated",
    role: "detail",
    attrs: { alt: "selected channel" },
  });
  detail.hidden = true;
  const preview = make("canvas", {
    className: "cnnw-detail cnnw-detail-preview cnnw-pixelated",
    role: "detail-preview",
    attrs: { "aria-label": "selected channel, cut from the grid until the exact picture arrives" },
  });
  preview.hidden = true;
  const caption = make("figcaption", { className: "cnnw-stats", role: "detail-stats" });
  const figure = make("figure", { className: "cnnw-detail-figure", role: "detail-figure" }, [
    detail,
    preview,
    caption,
  ]);
  /** The channel that the kernel's detail on screen shows. */
  let exactFor = NaN;
  return {
    el: figure,
    traits: [...PICTURE_TRAITS, ...DETAIL_TRAITS, "channel", LOCAL.zoom, LOCAL.gridLoaded],
    paint(changed) {
      const source = pictureSource(model);
      const channel = Number(model.get("channel"));
      if (changed.has("view") || source.arrivals.some((trait) => changed.has(trait)))
        exactFor = source.detailChannel ?? channel;
      const has = ctx.show(detail, model.get(source.detail), source.detailFormat);
      sizePicture(detail, ...source.detailSize, DETAIL_TARGET, ctx.local.zoom);
      let state = "exact";
      if (exactFor !== channel)
        state = drawTile(preview, tiles(), source.layout, channel) ? "provisional" : "stale";
      if (state === "provisional") {
        sizePicture(preview, preview.width, preview.height, DETAIL_TARGET, ctx.local.zoom);
      }
      detail.hidden = !has || state === "provisional";
      preview.hidden = state !== "provisional";
      const text =
        state === "exact"
          ? source.caption(channel)
          : `${source.label(channel)} · ${state === "provisional" ? "preview" : "updating…"}`;
      caption.textContent = text;
      figure.setAttribute("data-state", state);
      figure.classList.toggle("cnnw-provisional", state !== "exact");
      figure.hidden = state !== "provisional" && !has && !text;
    },
  };
}

/**
 * The images that excite the selected channel most (with an image set).
 * @param {Context} ctx
 * @returns {Panel}
 */
function topPanel(ctx) {
  const { model, make } = ctx;
  const strip = make("img", {
    className: "cnnw-top-strip cnnw-pixelated",
    role: "top-strip",
    attrs: { alt: "images that excite the selected channel most" },
  });
  strip.hidden = true;
  const caption = make("figcaption", { className: "cnnw-stats", role: "top-caption" });
  return {
    el: make("figure", { className: "cnnw-top-figure", attrs: { "data-part": "examples" } }, [
      strip,
      caption,
    ]),
    traits: ["top_strip", "top_meta", "top_format"],
    paint() {
      const shown = ctx.show(strip, model.get("top_strip"), model.get("top_format") || "png");
      const meta = model.get("top_meta") ?? {};
      const width = Number(meta.width ?? 0);
      if (width > 0 && shown) {
        // Enlarged by a whole factor when small; wide strips of big crops shrink to fit.
        const scale = displayScale(width, Number(meta.height ?? 0), STRIP_TARGET);
        strip.style.width = `${Math.min(width * scale, STRIP_TARGET)}px`;
        strip.classList.toggle("cnnw-pixelated", width < STRIP_TARGET);
      }
      strip.classList.toggle("cnnw-stale", meta.state === "computing");
      caption.textContent = topCaption(meta);
      const names = Array.isArray(meta.sources) ? meta.sources.filter(Boolean) : [];
      if (names.length) strip.title = names.join(", ");
      else strip.removeAttribute("title");
    },
  };
}

/**
 * Download the picture on screen through a temporary link.
 * @param {Context} ctx
 */
function downloadPicture(ctx) {
  const { model } = ctx;
  const source = pictureSource(model);
  /** @type {DataView | null} */
  const data = model.get(source.bytes);
  if (!data || !data.byteLength) return;
  const name = safeFileName(`${model.get("layer")}-${model.get("view")}`);
  const extension = source.format === "jpeg" ? "jpg" : source.format;
  saveBytes(ctx, data, `image/${source.format}`, `${name}.${extension}`);
}

/**
 * The feature-visualization run on screen as an animated GIF (``fv_gif``), downloaded.
 * @param {Context} ctx
 */
function downloadGif(ctx) {
  const meta = ctx.model.get("fv_meta") ?? {};
  const name = safeFileName(`${meta.layer ?? ctx.model.get("layer")}-featureviz`);
  saveBytes(ctx, ctx.model.get("fv_gif"), "image/gif", `${name}.gif`);
}

/**
 * Download bytes as a file, through a Blob URL and a temporary `<a download>`.
 * @param {Context} ctx
 * @param {DataView} data
 * @param {string} type MIME type
 * @param {string} fileName
 */
function saveBytes(ctx, data, type, fileName) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  ctx.urls.add(url);
  const link = ctx.make("a", { attrs: { href: url, download: fileName } });
  link.hidden = true;
  ctx.root.append(link);
  link.click();
  link.remove();
  // The download reads the URL after click() returns; free it a little later.
  ctx.later(() => {
    URL.revokeObjectURL(url);
    ctx.urls.delete(url);
  }, 1000);
}

/**
 * The image's top classes as buttons; a click makes that class the target.
 * @param {Context} ctx
 */
function attributionClasses(ctx) {
  const { model, make } = ctx;
  const el = make("div", {
    className: "cnnw-row cnnw-attr-classes",
    role: "attr-classes",
    attrs: { "aria-label": "target class" },
  });
  el.addEventListener(
    "click",
    (event) => {
      const target = /** @type {HTMLElement} */ (event.target).closest?.("[data-class]");
      const index = Number(target?.getAttribute("data-class"));
      if (target && Number.isInteger(index)) ctx.send("attr_target", index);
    },
    ctx.listen,
  );
  return {
    el,
    /** @param {Record<string, any>} meta */
    paint(meta) {
      /** @type {Array<Record<string, any>>} */
      const entries = model.get("attr_classes") ?? [];
      const chosen = Number(model.get("attr_target") ?? -1);
      const shown = chosen >= 0 ? chosen : meta.target;
      el.replaceChildren(
        make("span", { className: "cnnw-label", text: "Target" }),
        ...entries.map((entry) =>
          button(ctx, "attr-class", classText(entry), "cnnw-button cnnw-attr-class", {
            "data-class": String(entry.index),
            "aria-pressed": String(entry.index === shown),
          }),
        ),
      );
      el.hidden = entries.length === 0;
    },
  };
}

/**
 * The map(s) over the image, one caption per tile.
 * @param {Context} ctx
 */
function attributionFigure(ctx) {
  const { model, make } = ctx;
  const picture = make("img", {
    className: "cnnw-attr-picture cnnw-pixelated",
    role: "attr-picture",
    attrs: { alt: "attribution map over the image" },
  });
  picture.hidden = true;
  const captions = make("div", { className: "cnnw-attr-captions", role: "attr-captions" });
  return {
    el: make("figure", { className: "cnnw-attr-figure" }, [picture, captions]),
    /**
     * @param {Record<string, any>} meta
     * @param {boolean} running
     */
    paint(meta, running) {
      const has = ctx.show(picture, model.get("attr_picture"), "png");
      picture.classList.toggle("cnnw-stale", running);
      const tileW = Number(meta.tile_w ?? 0);
      const scale = displayScale(tileW, Number(meta.tile_h ?? 0), DETAIL_TARGET, ctx.local.zoom);
      const width = Number(meta.width ?? 0);
      if (has && width > 0) picture.style.width = `${width * scale}px`;
      /** @type {Array<Record<string, any>>} */
      const tiles = Array.isArray(meta.tiles) && has ? meta.tiles : [];
      captions.replaceChildren(
        ...tiles.map((tile) => {
          const node = make("span", { className: "cnnw-stats", text: attributionCaption(tile) });
          node.style.width = `${tileW * scale}px`;
          node.style.marginRight = `${Number(meta.pad ?? 0) * scale}px`;
          return node;
        }),
      );
    },
  };
}

/**
 * The attribution view: method, CAM layer, opacity, compare mode, the image's top classes as
 * targets, progress with Stop, and the map(s) over the image.
 * @param {Context} ctx
 * @returns {Panel}
 */
function attributionPanel(ctx) {
  const { model, make } = ctx;
  const method = choiceSelect(ctx, {
    role: "attr-method",
    label: "Method",
    trait: "attr_method",
    choices: () => choiceList(model.get("choices"), "attr_method"),
  });
  const layer = choiceSelect(ctx, {
    role: "attr-layer",
    label: "CAM layer",
    trait: "attr_layer",
    choices: () => [
      ["", "automatic"],
      .../** @type {string[]} */ (model.get("attr_layers") ?? []).map(
        (name) => /** @type {[string, string]} */ ([name, name]),
      ),
    ],
  });
  const alpha = focusable(
    make("input", {
      className: "cnnw-slider",
      role: "attr-alpha",
      attrs: { id: `${ctx.prefix}-attr-alpha`, type: "range", min: "0", max: "1", step: "0.05" },
    }),
  );
  alpha.addEventListener("input", () => ctx.send("attr_alpha", Number(alpha.value)), ctx.listen);
  const compare = focusable(
    make("input", {
      role: "attr-compare",
      attrs: { id: `${ctx.prefix}-attr-compare`, type: "checkbox" },
    }),
  );
  compare.addEventListener("change", () => ctx.send("attr_compare", compare.checked), ctx.listen);
  const stop = button(ctx, "attr-stop", "Stop");
  stop.addEventListener(
    "click",
    () => ctx.send("attr_stop", Number(model.get("attr_stop") ?? 0) + 1),
    ctx.listen,
  );
  const progress = make("progress", {
    className: "cnnw-progress",
    role: "attr-progress",
    attrs: { max: "1", value: "0", "aria-label": "attribution progress" },
  });
  const classes = attributionClasses(ctx);
  const line = make("div", { className: "cnnw-muted", role: "attr-line" });
  const figure = attributionFigure(ctx);
  const controls = [method.wrap, layer.wrap, field(ctx, "Opacity", alpha)];
  return {
    el: make("div", { className: "cnnw-attr", attrs: { "data-part": "attribution" } }, [
      make("div", { className: "cnnw-row" }, [
        ...controls,
        field(ctx, "Compare", compare),
        stop,
        progress,
      ]),
      classes.el,
      line,
      figure.el,
    ]),
    traits: [
      "choices",
      ...["attr_method", "attr_layer", "attr_layers", "attr_alpha", "attr_compare"],
      ...["attr_classes", "attr_target", "attr_picture", "attr_meta"],
      ...["attr_running", "attr_progress", LOCAL.zoom],
    ],
    paint(changed) {
      method.paint();
      layer.paint();
      if (changed.has("attr_alpha")) alpha.value = String(model.get("attr_alpha") ?? 0.5);
      compare.checked = Boolean(model.get("attr_compare"));
      method.select.disabled = compare.checked;
      const running = Boolean(model.get("attr_running"));
      stop.hidden = !running;
      progress.hidden = !running;
      progress.value = Number(model.get("attr_progress") ?? 0) || 0;
      const meta = model.get("attr_meta") ?? {};
      if (["attr_classes", "attr_meta", "attr_target"].some((t) => changed.has(t)))
        classes.paint(meta);
      line.textContent = attributionLine(meta);
      figure.paint(meta, running);
    },
  };
}

/**
 * Pages of channels, and Save PNG.
 * @param {Context} ctx
 * @returns {Panel}
 */
function pagerPanel(ctx) {
  const { model } = ctx;
  const prev = button(ctx, "page-prev", "◀ prev");
  const next = button(ctx, "page-next", "next ▶");
  const info = ctx.make("span", { className: "cnnw-page-info", role: "page-info" });
  const save = button(ctx, "save-png", "Save PNG");
  const page = () => Number(model.get("page") ?? 0);
  prev.addEventListener("click", () => ctx.send("page", Math.max(0, page() - 1)), ctx.listen);
  next.addEventListener("click", () => ctx.send("page", page() + 1), ctx.listen);
  save.addEventListener("click", () => downloadPicture(ctx), ctx.listen);
  return {
    el: ctx.make("div", { className: "cnnw-row cnnw-pager", attrs: { "data-part": "pager" } }, [
      prev,
      info,
      next,
      save,
    ]),
    traits: PICTURE_TRAITS,
    paint() {
      const source = pictureSource(model);
      const { page: shown, pages, text } = source.pager;
      info.textContent = pages > 1 ? `${text} · page ${shown + 1} of ${pages}` : text;
      prev.disabled = !(pages > 1 && shown > 0);
      next.disabled = !(pages > 1 && shown < pages - 1);
      save.disabled = !(model.get(source.bytes)?.byteLength > 0);
    },
  };
}

/**
 * The channel health check: its button, summary and findings (the marks are the picture's).
 * @param {Context} ctx
 * @returns {Panel}
 */
function healthPanel(ctx) {
  const { model, make } = ctx;
  const run = button(ctx, "health-run", "Check health", "cnnw-button", {
    title: "look for dead, constant and NaN/Inf channels",
  });
  const summary = make("span", { className: "cnnw-muted", role: "health-summary" });
  const list = make("ul", { className: "cnnw-health-list", role: "health-list" });
  run.addEventListener(
    "click",
    () => ctx.send("health_run", Number(model.get("health_run") ?? 0) + 1),
    ctx.listen,
  );
  return {
    el: make("div", { className: "cnnw-health", attrs: { "data-part": "health" } }, [
      make("div", { className: "cnnw-row" }, [run, summary]),
      list,
    ]),
    traits: ["health_findings", "health_summary", "health_running"],
    paint() {
      /** @type {Array<Record<string, any>>} */
      const rows = model.get("health_findings") ?? [];
      list.replaceChildren(...rows.map((row) => make("li", { text: healthLine(row) })));
      list.hidden = rows.length === 0;
      summary.textContent = model.get("health_summary") ?? "";
      run.disabled = Boolean(model.get("health_running"));
    },
  };
}

/**
 * One row of the layer table; a layer that never ran is marked.
 * @param {Context} ctx
 * @param {Record<string, any>} row  an entry of `table`
 */
function tableRow(ctx, row) {
  const ran = row.ran !== false;
  const cells = [
    String(row.index),
    row.name,
    row.type,
    `${row.shape_text ?? ""}${ran ? "" : " · did not run"}`,
    row.params ?? "",
    Number(row.num_params ?? 0).toLocaleString("en-US"),
    row.has_filters ? "yes" : "",
  ].map((text) => ctx.make("td", { text: String(text) }));
  const attrs = { tabindex: "0", "data-layer": String(row.name) };
  if (!ran) Object.assign(attrs, { "data-ran": "false", title: "did not run in the forward pass" });
  const className = `cnnw-table-row${ran ? "" : " cnnw-not-ran"}`;
  return focusable(ctx.make("tr", { className, role: "table-row", attrs }, cells));
}

/**
 * The layer table; a click (or Enter) on a row shows that layer in a picture view.
 * @param {Context} ctx
 * @returns {Panel}
 */
function tablePanel(ctx) {
  const { model, make } = ctx;
  const table = make("table", { className: "cnnw-table", role: "layer-table" });
  let lastPictureView = "";
  /** @param {Event} event */
  function choose(event) {
    const name = /** @type {HTMLElement} */ (event.target)
      .closest?.("[data-layer]")
      ?.getAttribute("data-layer");
    if (!name) return;
    /** @type {LayerEntry[]} */
    const layers = model.get("layers") ?? [];
    const entry = layers.find((layer) => layer.name === name);
    const view = viewForLayer(entry, model.get("views") ?? [], lastPictureView);
    model.set("layer", name);
    if (view) model.set("view", view);
    model.save_changes();
  }
  table.addEventListener("click", choose, ctx.listen);
  table.addEventListener(
    "keydown",
    (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      event.preventDefault();
      choose(event);
    },
    ctx.listen,
  );
  const titles = ["#", "name", "type", "output", "parameters", "count", "filters"];
  return {
    el: make("div", { className: "cnnw-table-wrap", attrs: { "data-part": "table" } }, [table]),
    traits: ["table", "layer", "view"],
    paint(changed) {
      const view = String(model.get("view") ?? "");
      if (view !== "table") lastPictureView = view;
      if (changed.has("table")) {
        /** @type {Array<Record<string, any>>} */
        const rows = model.get("table") ?? [];
        const head = make(
          "tr",
          {},
          titles.map((text) => make("th", { text, attrs: { scope: "col" } })),
        );
        table.replaceChildren(
          make("thead", {}, [head]),
          make(
            "tbody",
            {},
            rows.map((row) => tableRow(ctx, row)),
          ),
        );
      }
      const current = model.get("layer");
      for (const row of table.querySelectorAll("[data-role='table-row']")) {
        const selected = row.getAttribute("data-layer") === current;
        row.classList.toggle("cnnw-selected", selected);
        row.setAttribute("aria-selected", String(selected));
      }
    },
  };
}

/**
 * The atlas store: how much is there, and "Refresh" to read it again (a run may be writing).
 * @param {Context} ctx
 * @returns {Panel}
 */
function atlasPanel(ctx) {
  const { model, make } = ctx;
  const refresh = button(ctx, "atlas-refresh", "Refresh");
  const summary = make("span", { className: "cnnw-muted", role: "atlas-summary" });
  refresh.addEventListener(
    "click",
    () => ctx.send("atlas_refresh", Number(model.get("atlas_refresh") ?? 0) + 1),
    ctx.listen,
  );
  return {
    el: make("div", { className: "cnnw-row cnnw-atlas", attrs: { "data-part": "atlas" } }, [
      refresh,
      summary,
    ]),
    traits: ["atlas_info"],
    paint() {
      summary.textContent = atlasSummary(model.get("atlas_info") ?? {});
    },
  };
}

/**
 * The status line and the busy spinner.
 * @param {Context} ctx
 * @returns {Panel}
 */
function statusPanel(ctx) {
  const { model, make, root } = ctx;
  const spinner = make("span", { className: "cnnw-spinner", attrs: { "aria-hidden": "true" } });
  const text = make("span", { className: "cnnw-status-text", role: "status-text" });
  return {
    el: make(
      "div",
      {
        className: "cnnw-status",
        role: "status",
        attrs: { role: "status", "aria-live": "polite" },
      },
      [spinner, text],
    ),
    traits: ["status", "busy", "fv_running"],
    paint() {
      const busy = Boolean(model.get("busy")) || Boolean(model.get("fv_running"));
      text.textContent = model.get("status") ?? "";
      spinner.hidden = !busy;
      root.setAttribute("aria-busy", String(busy));
      root.classList.toggle("cnnw-busy", busy);
    },
  };
}

/**
 * Python's error, or the browser's own about the user's input.
 * @param {Context} ctx
 * @returns {Panel}
 */
function errorPanel(ctx) {
  const box = ctx.make("div", { className: "cnnw-error", role: "error", attrs: { role: "alert" } });
  let shownLocal = "";
  return {
    el: box,
    traits: ["error", LOCAL.error],
    paint(changed) {
      // A new message from Python replaces the browser's own once that has been shown.
      if (changed.has("error") && ctx.local.error === shownLocal) ctx.local.error = "";
      shownLocal = ctx.local.error;
      const text = ctx.model.get("error") || ctx.local.error;
      box.textContent = text;
      box.hidden = !text;
    },
  };
}

/**
 * A small line chart (SVG): one line per series, a cursor at a step, marked lines drawn on
 * top in the accent colour of trouble.
 * @param {Context} ctx
 * @param {string} role
 * @param {string} title
 */
function lineChart(ctx, role, title) {
  const ns = "http://www.w3.org/2000/svg";
  const [width, height] = [240, 90];
  const svg = ctx.doc.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "cnnw-chart");
  svg.setAttribute("role", "img");
  const caption = ctx.make("figcaption", { className: "cnnw-muted", text: title });
  const figure = ctx.make("figure", { className: "cnnw-chart-figure", role }, [svg, caption]);
  return {
    el: figure,
    /**
     * @param {number[][][]} lines
     * @param {{cursor?: number, marked?: Set<number>, text?: string}} [options]
     */
    draw(lines, options = {}) {
      const points = lines.flat();
      const xs = points.map((p) => p[0]);
      const ys = points.map((p) => p[1]).filter(Number.isFinite);
      const range = {
        /** @type {[number, number]} */ x: [Math.min(...xs, 0), Math.max(...xs, 1)],
        /** @type {[number, number]} */ y: [Math.min(...ys, 0), Math.max(...ys, 1e-9)],
      };
      const paths = lines.map((line, index) => {
        const path = ctx.doc.createElementNS(ns, "path");
        path.setAttribute("d", chartPath(line, range, width, height));
        path.setAttribute(
          "class",
          options.marked?.has(index) ? "cnnw-line cnnw-marked" : "cnnw-line",
        );
        return path;
      });
      paths.sort(
        (a, b) =>
          Number(a.classList.contains("cnnw-marked")) - Number(b.classList.contains("cnnw-marked")),
      );
      const cursor = ctx.doc.createElementNS(ns, "line");
      const x = (((options.cursor ?? 0) - range.x[0]) / (range.x[1] - range.x[0] || 1)) * width;
      for (const [name, value] of [
        ["x1", x],
        ["x2", x],
        ["y1", 0],
        ["y2", height],
      ])
        cursor.setAttribute(String(name), String(value));
      cursor.setAttribute("class", "cnnw-cursor");
      svg.replaceChildren(...paths, cursor);
      const span = points.length
        ? ` · ${formatNumber(range.y[0])} … ${formatNumber(range.y[1])}`
        : "";
      caption.textContent = `${title}${options.text ? ` (${options.text})` : ""}${span}`;
    },
  };
}

/**
 * The training monitor: the frames the kernel sends while a model trains are kept here, so
 * the timeline scrubs through them while the kernel is busy (it could answer nothing).
 * @param {Context} ctx
 * @returns {Panel}
 */
function monitorPanel(ctx) {
  const { model, make } = ctx;
  /** @type {MonitorFrame[]} */
  let history = [];
  let index = -1; // the frame shown; -1: follow the newest
  const slider = focusable(
    make("input", {
      className: "cnnw-slider",
      role: "monitor-timeline",
      attrs: { id: `${ctx.prefix}-timeline`, type: "range", min: "0", max: "0", step: "1" },
    }),
  );
  const stepText = make("span", { className: "cnnw-muted", role: "monitor-step" });
  const filters = make("img", { className: "cnnw-pixelated", role: "monitor-filters" });
  const maps = make("img", { className: "cnnw-pixelated", role: "monitor-maps" });
  const mapsText = make("figcaption", { className: "cnnw-muted", role: "monitor-maps-text" });
  const [mean, dead, numbers] = [
    lineChart(ctx, "monitor-mean", "mean activation per channel"),
    lineChart(ctx, "monitor-dead", "share of units ≤ 0 per channel"),
    lineChart(ctx, "monitor-numbers", "logged numbers"),
  ];
  const deadText = make("div", { className: "cnnw-muted", role: "monitor-dead-list" });
  slider.addEventListener(
    "input",
    () => {
      const chosen = Number(slider.value);
      index = chosen >= history.length - 1 ? -1 : chosen;
      ctx.touch(LOCAL.monitor);
    },
    ctx.listen,
  );
  /** @param {Record<string, any>} meta @param {DataView | ArrayBuffer | null | undefined} data */
  function keep(meta, data) {
    if (!meta || typeof meta.step !== "number" || !data) return;
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    history = addFrame(
      history,
      { step: meta.step, meta, bytes: bytes.slice() },
      Number(model.get("monitor_history") ?? 200),
    );
    ctx.touch(LOCAL.monitor);
  }
  /** @param {any} message @param {DataView[]} [buffers] */
  function onMessage(message, buffers) {
    if (message?.type === "frame") keep(message.meta, buffers?.[0]);
  }
  // Every frame is kept as it arrives: several may come within one animation frame.
  const arrived = () => keep(model.get("monitor_meta"), model.get("monitor_frame"));
  if (model.get("views")?.includes("monitor")) {
    model.on("msg:custom", onMessage);
    model.on("change:monitor_frame", arrived);
    ctx.onClose(() => {
      model.off("msg:custom", onMessage);
      model.off("change:monitor_frame", arrived);
    });
    arrived();
    /** @type {any} */ (model).send?.({ type: "history" });
  }
  /**
   * @param {HTMLImageElement} img
   * @param {MonitorFrame} frame
   * @param {number[] | null} where  [offset, length, width, height] in the frame's bytes
   * @param {number} target
   */
  function showPart(img, frame, where, target) {
    const data = where ? frame.bytes.subarray(where[0], where[0] + where[1]) : null;
    ctx.show(img, data, "png");
    if (where) sizePicture(img, where[2], where[3], target, "fit");
  }
  return {
    el: make("div", { className: "cnnw-monitor", attrs: { "data-part": "monitor" } }, [
      make("div", { className: "cnnw-row" }, [field(ctx, "Step", slider), stepText]),
      make("div", { className: "cnnw-pictures" }, [
        make("figure", {}, [
          filters,
          make("figcaption", { className: "cnnw-muted", text: "filters" }),
        ]),
        make("figure", {}, [maps, mapsText]),
      ]),
      make("div", { className: "cnnw-row cnnw-charts" }, [mean.el, dead.el, numbers.el]),
      deadText,
    ]),
    traits: ["monitor_frame", "monitor_meta", "monitor_history", "layer", LOCAL.monitor],
    paint() {
      if (!history.length) return;
      const shown = index < 0 ? history.length - 1 : Math.min(index, history.length - 1);
      const frame = history[shown];
      const layer = String(model.get("layer") ?? "");
      const facts = frame.meta.layers?.[layer] ?? {};
      slider.max = String(history.length - 1);
      slider.value = String(shown);
      stepText.textContent = `step ${frame.step} · frame ${shown + 1} of ${history.length}${index < 0 ? " · live" : ""}`;
      showPart(filters, frame, facts.filters ?? null, DETAIL_TARGET);
      showPart(maps, frame, facts.maps ?? null, GRID_TARGET);
      mapsText.textContent = facts.maps_text ? `probe feature maps · ${facts.maps_text}` : "";
      const deadNow = new Set(
        (facts.dead ?? []).flatMap((/** @type {number} */ v, /** @type {number} */ c) =>
          v >= 1 ? [c] : [],
        ),
      );
      mean.draw(channelSeries(history, layer, "mean"), { cursor: frame.step, marked: deadNow });
      dead.draw(channelSeries(history, layer, "dead"), { cursor: frame.step, marked: deadNow });
      const logged = loggedNumbers(history);
      const names = Object.keys(logged);
      numbers.draw(
        names.map((name) => logged[name]),
        { cursor: frame.step, text: names.join(", ") },
      );
      deadText.textContent = deadNow.size
        ? `dead on the probe at step ${frame.step}: channel ${[...deadNow].join(", ")}`
        : "";
    },
  };
}

// --------------------------------------------------------------------------- render

/**
 * Draw the widget into `el`.
 * @param {{model: Model, el: HTMLElement, signal?: AbortSignal}} props
 * @returns {() => void} cleanup
 */
function render({ model, el, signal }) {
  const ctx = createContext(model, el);
  const picture = picturePanel(ctx);
  const panels = {
    views: viewsPanel(ctx),
    layer: layerPanel(ctx),
    drawing: drawingPanel(ctx),
    image: imagePanel(ctx),
    featureViz: featureVizPanel(ctx),
    attribution: attributionPanel(ctx),
    channel: channelPanel(ctx),
    input: inputPicturePanel(ctx),
    picture,
    detail: detailPanel(ctx, picture.tiles),
    top: topPanel(ctx),
    pager: pagerPanel(ctx),
    health: healthPanel(ctx),
    table: tablePanel(ctx),
    monitor: monitorPanel(ctx),
    atlas: atlasPanel(ctx),
    status: statusPanel(ctx),
    error: errorPanel(ctx),
  };
  const pictures = ctx.make(
    "div",
    { className: "cnnw-pictures", attrs: { "data-part": "picture" } },
    [panels.input.el, panels.picture.el, panels.detail.el, panels.top.el],
  );
  const { views, layer, drawing, image, featureViz, attribution, channel } = panels;
  const { pager, health, table } = panels;
  ctx.root.append(
    ...[views, layer, drawing, image, featureViz, attribution, channel].map((panel) => panel.el),
    pictures,
    ...[pager, health, table, panels.monitor, panels.atlas, panels.status, panels.error].map(
      (p) => p.el,
    ),
  );
  el.append(ctx.root);

  const scheduler = createScheduler(Object.values(panels), animationFrames(ctx.win));
  ctx.touch = scheduler.mark;
  /** @type {Array<[string, () => void]>} */
  const subscriptions = scheduler.traits
    .filter((trait) => !trait.startsWith("@"))
    .map((trait) => [`change:${trait}`, () => scheduler.mark(trait)]);
  for (const [event, callback] of subscriptions) model.on(event, callback);
  scheduler.paintAll();

  let closed = false;
  function cleanup() {
    if (closed) return;
    closed = true;
    for (const [event, callback] of subscriptions) model.off(event, callback);
    scheduler.close();
    ctx.close();
  }
  // anywidget >= 0.11 also passes an AbortSignal that fires when the view goes away.
  signal?.addEventListener("abort", cleanup, { once: true });
  return cleanup;
}

export default { render };
