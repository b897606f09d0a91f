// @ts-check
/**
 * cnn_widgets front end: one plain ES module for FilterViewer, ActivationViewer and Explorer.
 *
 * Python owns the state and renders the pictures; this module draws the controls, shows the
 * picture bytes it is sent, and writes the user's choices back to the model. Work that needs
 * no kernel stays here: filtering the layer menu, hover labels, zoom, mapping a click on the
 * grid to a channel (the grid's tile layout comes with the picture).
 *
 * Rules this file keeps: text from the model (layer names, labels, file names, errors) reaches
 * the DOM only through `textContent` or attributes; every focusable control carries
 * `data-lm-suppress-shortcuts` so notebook shortcuts do not fire while it has focus; DOM
 * listeners hang off one AbortController; `render` returns a cleanup that also unsubscribes
 * from the model and revokes object URLs.
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
 * Grid geometry sent with every grid picture (`grid_layout`).
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
 */

/**
 * The views and the control groups ("parts") each one shows. A new view is one entry here
 * plus its renderer in Python; views Python offers that are missing here get DEFAULT_VIEW.
 * @type {Record<string, {label: string, parts: string[]}>}
 */
export const VIEWS = {
  filters: {
    label: "Filters",
    parts: [
      "layer",
      "drawing",
      "input-channel",
      "channel",
      "picture",
      "examples",
      "pager",
      "health",
    ],
  },
  activations: {
    label: "Feature maps",
    parts: [
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
  },
  featureviz: {
    label: "Feature viz",
    parts: ["layer", "featureviz", "channel", "picture", "examples", "pager", "health"],
  },
  table: { label: "Layer table", parts: ["table"] },
};
const DEFAULT_VIEW = { label: "", parts: ["layer", "channel", "picture"] };

/** Display size targets in CSS pixels; pictures are enlarged by whole factors up to these. */
const GRID_TARGET = 480;
const DETAIL_TARGET = 240;
const INPUT_TARGET = 128;
const STRIP_TARGET = 300;
/** Bigger files are refused in the browser before they travel to the kernel. */
export const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;

const NORMALIZATIONS = [
  ["layer", "layer (one scale)"],
  ["channel", "per channel"],
  ["symmetric", "symmetric (zero = middle)"],
  ["std", "std (mean ± 5σ)"],
];
const COLORMAPS = [
  ["gray", "gray"],
  ["viridis", "viridis"],
  ["diverging", "diverging (blue–white–red)"],
];
/** The activation mode that shows one filter applied to each input channel. */
export const KERNEL_MODE = "kernel x image";
const ACTIVATION_MODES = [
  ["grid", "grid of channels"],
  ["sum", "sum over channels"],
  ["mean", "mean over channels"],
  [KERNEL_MODE, "kernel × image (selected filter)"],
];
const VECTOR_MODES = [
  ["auto", "auto"],
  ["dense", "values + histogram"],
  ["probabilities", "top-k probabilities"],
];
const FV_RECIPES = [
  ["lucid", "lucid (interpretable)"],
  ["naive", "naive (pixel ascent)"],
];
const FV_OBJECTIVES = [
  ["channel", "channel (mean)"],
  ["neuron", "neuron (centre)"],
  ["layer", "layer (DeepDream)"],
  ["class", "class logit"],
];
const ZOOMS = [
  ["fit", "fit"],
  ["1", "1×"],
  ["2", "2×"],
  ["4", "4×"],
  ["8", "8×"],
];

let instances = 0;

// --------------------------------------------------------------------------- pure helpers

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
 * Box of the tile showing `channel`, as fractions of the picture, or null.
 * @param {TileLayout | null | undefined} layout
 * @param {number} channel
 * @returns {{left: number, top: number, width: number, height: number} | null}
 */
export function tileBox(layout, channel) {
  if (!layout || !layout.ncols || !layout.width || !layout.height) return null;
  const index = Array.isArray(layout.channels)
    ? layout.channels.indexOf(channel)
    : channel - (layout.offset ?? 0);
  if (index < 0 || index >= layout.count) return null;
  const col = index % layout.ncols;
  const row = Math.floor(index / layout.ncols);
  return {
    left: (col * (layout.tile_w + layout.pad)) / layout.width,
    top: (row * (layout.tile_h + layout.pad)) / layout.height,
    width: layout.tile_w / layout.width,
    height: layout.tile_h / layout.height,
  };
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
 * "name — type (shape)", the text of a layer menu entry.
 * @param {LayerEntry} layer
 * @returns {string}
 */
export function layerLabel(layer) {
  const shape = Array.isArray(layer.shape) ? `(${layer.shape.join(", ")})` : "(—)";
  return `${layer.name} — ${layer.type} ${shape}`;
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
    if (view === "filters" && !layer.has_filters) return false;
    if ((view === "activations" || view === "featureviz") && !layer.shape) return false;
    if (!q) return true;
    return layer.name.toLowerCase().includes(q) || layer.type.toLowerCase().includes(q);
  });
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

// --------------------------------------------------------------------------- render

/**
 * Draw the widget into `el`.
 * @param {{model: Model, el: HTMLElement, signal?: AbortSignal}} props
 * @returns {() => void} cleanup
 */
function render({ model, el, signal }) {
  const doc = el.ownerDocument;
  const controller = new AbortController();
  const listen = { signal: controller.signal };
  const prefix = `cnnw-${++instances}`;
  /** @type {Array<[string, () => void]>} */
  const subscriptions = [];
  /** @type {Map<HTMLImageElement, string>} */
  const shownUrls = new Map();
  /**
   * The bytes (and format) each img shows now: one update fires several change events that
   * each repaint, and the same bytes must not become a new URL, load and decode every time.
   * @type {Map<HTMLImageElement, {data: unknown, format: string}>}
   */
  const shownData = new Map();
  /** @type {Set<string>} */
  const downloadUrls = new Set();
  /** @type {Set<ReturnType<typeof setTimeout>>} */
  const timers = new Set();
  let zoom = "fit";
  let localError = "";
  let lastPictureView = "";
  let closed = false;

  // -- DOM helpers ---------------------------------------------------------------------

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
   * @param {string} role
   * @param {string} text
   * @param {string} className
   */
  function button(role, text, className = "cnnw-button") {
    return focusable(make("button", { className, role, text, attrs: { type: "button" } }));
  }

  /**
   * A `<select>` with a `<label for>`.
   * @param {string} role
   * @param {string} label
   * @param {string[][]} choices  [value, text] pairs
   * @param {string} part
   */
  function labelledSelect(role, label, choices, part) {
    const id = `${prefix}-${role}`;
    const select = focusable(
      make("select", { className: `cnnw-select cnnw-${role}`, role, attrs: { id } }),
    );
    setOptions(select, choices);
    const wrap = make("span", { className: "cnnw-field", attrs: { "data-part": part } }, [
      make("label", { className: "cnnw-label", text: label, attrs: { for: id } }),
      select,
    ]);
    return { select, wrap };
  }

  /**
   * @param {HTMLSelectElement} select
   * @param {string[][]} choices
   */
  function setOptions(select, choices) {
    select.replaceChildren(
      ...choices.map(([value, text]) => {
        const option = doc.createElement("option");
        option.value = value;
        option.textContent = text;
        return option;
      }),
    );
  }

  /**
   * @param {string} name
   * @param {any} value
   */
  function send(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  /**
   * @param {string} event
   * @param {() => void} callback
   */
  function subscribe(event, callback) {
    model.on(event, callback);
    subscriptions.push([event, callback]);
  }

  // -- the controls --------------------------------------------------------------------

  const root = make("div", { className: "cnnw-root", role: "root" });

  const viewBar = make("div", {
    className: "cnnw-views",
    role: "views",
    attrs: { "aria-label": "view" },
  });

  const layerFilterId = `${prefix}-layer-filter`;
  const layerFilter = focusable(
    make("input", {
      className: "cnnw-input cnnw-layer-filter",
      role: "layer-filter",
      attrs: {
        id: layerFilterId,
        type: "search",
        placeholder: "filter layers",
        autocomplete: "off",
      },
    }),
  );
  const layerSelectId = `${prefix}-layer`;
  const layerSelect = focusable(
    make("select", {
      className: "cnnw-select cnnw-layer",
      role: "layer",
      attrs: { id: layerSelectId },
    }),
  );
  const layerCount = make("span", { className: "cnnw-muted", role: "layer-count" });
  const layerPart = make(
    "div",
    { className: "cnnw-row cnnw-layer-row", attrs: { "data-part": "layer" } },
    [
      make("label", { className: "cnnw-label", text: "Layer", attrs: { for: layerSelectId } }),
      layerSelect,
      make("label", {
        className: "cnnw-label cnnw-sr-only",
        text: "Filter layers",
        attrs: { for: layerFilterId },
      }),
      layerFilter,
      layerCount,
    ],
  );

  const normalization = labelledSelect("normalization", "Scale", NORMALIZATIONS, "drawing");
  const colormap = labelledSelect("colormap", "Colors", COLORMAPS, "drawing");
  const inputChannel = labelledSelect(
    "input-channel",
    "Input channel",
    [["auto", "auto"]],
    "input-channel",
  );
  const activationMode = labelledSelect(
    "activation-mode",
    "Show",
    ACTIVATION_MODES,
    "activation-mode",
  );
  const vectorMode = labelledSelect("vector-mode", "Vector as", VECTOR_MODES, "vector-mode");
  const zoomSelect = labelledSelect("zoom", "Zoom", ZOOMS, "picture");
  const optionsRow = make("div", { className: "cnnw-row cnnw-options" }, [
    normalization.wrap,
    colormap.wrap,
    inputChannel.wrap,
    activationMode.wrap,
    vectorMode.wrap,
    zoomSelect.wrap,
  ]);

  const sample = labelledSelect("sample", "Image", [], "image");
  const uploadId = `${prefix}-upload`;
  const upload = focusable(
    make("input", {
      className: "cnnw-file",
      role: "upload",
      attrs: { id: uploadId, type: "file", accept: "image/*" },
    }),
  );
  const inputImage = make("img", {
    className: "cnnw-input-image cnnw-pixelated",
    role: "input-image",
    attrs: { alt: "input image" },
  });
  inputImage.hidden = true;
  const imageRow = make(
    "div",
    { className: "cnnw-row cnnw-image-row", attrs: { "data-part": "image" } },
    [
      sample.wrap,
      make("span", { className: "cnnw-field" }, [
        make("label", {
          className: "cnnw-label",
          text: "or open / drop a file",
          attrs: { for: uploadId },
        }),
        upload,
      ]),
    ],
  );

  const sliderId = `${prefix}-channel`;
  const channelSlider = focusable(
    make("input", {
      className: "cnnw-slider",
      role: "channel-slider",
      attrs: { id: sliderId, type: "range", min: "0", max: "0", step: "1", value: "0" },
    }),
  );
  const channelNumber = focusable(
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
  const channelLabel = make("label", {
    className: "cnnw-label",
    text: "Channel",
    attrs: { for: sliderId },
  });
  const channelRow = make(
    "div",
    { className: "cnnw-row cnnw-channel-row", attrs: { "data-part": "channel" } },
    [channelLabel, channelSlider, channelNumber],
  );

  /**
   * A number field with a label; the value is written on "change" (Enter or leaving it).
   * @param {string} role
   * @param {string} label
   * @param {Record<string, string>} attrs
   */
  function labelledNumber(role, label, attrs) {
    const id = `${prefix}-${role}`;
    const input = focusable(
      make("input", {
        className: `cnnw-input cnnw-number cnnw-${role}`,
        role,
        attrs: { id, type: "number", step: "1", ...attrs },
      }),
    );
    const wrap = make("span", { className: "cnnw-field" }, [
      make("label", { className: "cnnw-label", text: label, attrs: { for: id } }),
      input,
    ]);
    return { input, wrap };
  }

  const fvRun = button("fv-run", "Run gradient ascent", "cnnw-button cnnw-primary");
  const fvStop = button("fv-stop", "Stop");
  const fvSteps = labelledNumber("fv-steps", "Steps", { min: "1", max: "100000" });
  const fvSize = labelledNumber("fv-size", "Size", {
    min: "0",
    max: "1024",
    placeholder: "auto",
    title: "image side in pixels; 0 = automatic",
  });
  const fvRecipe = labelledSelect("fv-recipe", "Recipe", FV_RECIPES, "featureviz");
  const fvObjective = labelledSelect("fv-objective", "Objective", FV_OBJECTIVES, "featureviz");
  const fvProgress = make("progress", {
    className: "cnnw-progress",
    role: "fv-progress",
    attrs: { max: "1", value: "0", "aria-label": "optimization progress" },
  });
  const fvProgressLabel = make("span", { className: "cnnw-muted", role: "fv-progress-text" });
  const fvHint = make("div", {
    className: "cnnw-muted cnnw-fv-hint",
    role: "fv-hint",
    text: "Press “Run gradient ascent” to synthesize the image that excites each channel of this page most.",
  });
  const fvPart = make("div", { className: "cnnw-fv", attrs: { "data-part": "featureviz" } }, [
    make("div", { className: "cnnw-row cnnw-fv-settings" }, [
      fvObjective.wrap,
      fvRecipe.wrap,
      fvSteps.wrap,
      fvSize.wrap,
    ]),
    make("div", { className: "cnnw-row cnnw-fv-actions" }, [
      fvRun,
      fvStop,
      fvProgress,
      fvProgressLabel,
    ]),
    fvHint,
  ]);

  const grid = make("img", {
    className: "cnnw-grid cnnw-pixelated",
    role: "grid",
    attrs: { alt: "grid", draggable: "false" },
  });
  grid.hidden = true;
  // Marks of flagged channels: boxes positioned over their tiles (filled in paintFlags).
  const flagLayer = make("div", { className: "cnnw-flags", role: "health-flags" });
  const highlight = make("div", { className: "cnnw-highlight", role: "highlight" });
  highlight.hidden = true;
  const tooltip = make("div", {
    className: "cnnw-tooltip",
    role: "tooltip",
    attrs: { "aria-hidden": "true" },
  });
  tooltip.hidden = true;
  const gridWrap = focusable(
    make(
      "div",
      {
        className: "cnnw-grid-wrap",
        role: "grid-wrap",
        attrs: { tabindex: "0", "aria-label": "channels; arrow keys move the selection" },
      },
      [grid, flagLayer, highlight, tooltip],
    ),
  );
  const predictions = make("ol", { className: "cnnw-predictions", role: "predictions" });
  const detail = make("img", {
    className: "cnnw-detail cnnw-pixelated",
    role: "detail",
    attrs: { alt: "selected channel" },
  });
  detail.hidden = true;
  const detailStats = make("figcaption", { className: "cnnw-stats", role: "detail-stats" });
  const detailFigure = make("figure", { className: "cnnw-detail-figure" }, [detail, detailStats]);
  const topStrip = make("img", {
    className: "cnnw-top-strip cnnw-pixelated",
    role: "top-strip",
    attrs: { alt: "images that excite the selected channel most" },
  });
  topStrip.hidden = true;
  const topCaptionText = make("figcaption", { className: "cnnw-stats", role: "top-caption" });
  const topFigure = make(
    "figure",
    { className: "cnnw-top-figure", attrs: { "data-part": "examples" } },
    [topStrip, topCaptionText],
  );
  const inputFigure = make(
    "figure",
    { className: "cnnw-input-figure", attrs: { "data-part": "image" } },
    [inputImage, make("figcaption", { className: "cnnw-muted", text: "input" })],
  );
  const pictureRow = make(
    "div",
    { className: "cnnw-pictures", attrs: { "data-part": "picture" } },
    [
      inputFigure,
      make("div", { className: "cnnw-grid-column" }, [gridWrap, predictions]),
      detailFigure,
      topFigure,
    ],
  );

  const prev = button("page-prev", "◀ prev");
  const next = button("page-next", "next ▶");
  const pageInfo = make("span", { className: "cnnw-page-info", role: "page-info" });
  const save = button("save-png", "Save PNG");
  const pager = make("div", { className: "cnnw-row cnnw-pager", attrs: { "data-part": "pager" } }, [
    prev,
    pageInfo,
    next,
    save,
  ]);

  const healthRun = focusable(
    make("button", {
      className: "cnnw-button",
      role: "health-run",
      text: "Check health",
      attrs: { type: "button", title: "look for dead, constant and NaN/Inf channels" },
    }),
  );
  const healthSummary = make("span", { className: "cnnw-muted", role: "health-summary" });
  const healthList = make("ul", { className: "cnnw-health-list", role: "health-list" });
  const healthPart = make("div", { className: "cnnw-health", attrs: { "data-part": "health" } }, [
    make("div", { className: "cnnw-row" }, [healthRun, healthSummary]),
    healthList,
  ]);

  const table = make("table", { className: "cnnw-table", role: "layer-table" });
  const tableWrap = make("div", { className: "cnnw-table-wrap", attrs: { "data-part": "table" } }, [
    table,
  ]);

  const spinner = make("span", { className: "cnnw-spinner", attrs: { "aria-hidden": "true" } });
  const statusText = make("span", { className: "cnnw-status-text", role: "status-text" });
  const status = make(
    "div",
    { className: "cnnw-status", role: "status", attrs: { role: "status", "aria-live": "polite" } },
    [spinner, statusText],
  );
  const error = make("div", { className: "cnnw-error", role: "error", attrs: { role: "alert" } });

  root.append(
    viewBar,
    layerPart,
    optionsRow,
    imageRow,
    fvPart,
    channelRow,
    pictureRow,
    pager,
    healthPart,
    tableWrap,
    status,
    error,
  );
  el.append(root);

  // -- reading the model ---------------------------------------------------------------

  /** @returns {LayerEntry[]} */
  const layers = () => model.get("layers") ?? [];
  /** @returns {LayerEntry | undefined} */
  const currentLayer = () => layers().find((layer) => layer.name === model.get("layer"));
  const featureViz = () => model.get("view") === "featureviz";
  /** @returns {TileLayout | null} */
  const layout = () => {
    const value = model.get(featureViz() ? "fv_layout" : "grid_layout");
    return value && value.ncols ? value : null;
  };
  /**
   * Which traits the big picture shows: the view's grid, or the feature visualizations.
   * @returns {{bytes: string, format: string, width: number, height: number}}
   */
  const gridSource = () => {
    if (featureViz()) {
      const geometry = model.get("fv_layout") ?? {};
      return {
        bytes: "fv_image",
        format: model.get("fv_format"),
        width: geometry.width,
        height: geometry.height,
      };
    }
    const meta = model.get("grid_meta") ?? {};
    return {
      bytes: "grid",
      format: model.get("grid_format"),
      width: meta.width,
      height: meta.height,
    };
  };

  // -- painting ------------------------------------------------------------------------

  /**
   * Show picture bytes in an `<img>` through an object URL; the previous URL is revoked.
   * @param {HTMLImageElement} img
   * @param {string} bytesName
   * @param {string} format
   */
  function showBytes(img, bytesName, format) {
    /** @type {DataView | ArrayBuffer | null} */
    const data = model.get(bytesName);
    const shown = shownData.get(img);
    if (shown && shown.data === data && shown.format === format && shownUrls.has(img)) return;
    shownData.set(img, { data, format });
    const old = shownUrls.get(img);
    if (old) URL.revokeObjectURL(old);
    shownUrls.delete(img);
    if (!data || !data.byteLength) {
      img.removeAttribute("src");
      img.hidden = true;
      return;
    }
    const url = URL.createObjectURL(new Blob([data], { type: `image/${format || "png"}` }));
    shownUrls.set(img, url);
    img.src = url;
    img.hidden = false;
  }

  /**
   * Enlarge a picture by a whole factor.
   * @param {HTMLImageElement} img
   * @param {number} width
   * @param {number} height
   * @param {number} target
   */
  function sizePicture(img, width, height, target) {
    if (!width || !height) {
      img.style.removeProperty("width");
      img.style.removeProperty("height");
      return;
    }
    const scale = displayScale(width, height, target, zoom);
    img.style.width = `${width * scale}px`;
    img.style.height = "auto";
  }

  function paintGrid() {
    const source = gridSource();
    showBytes(grid, source.bytes, source.format);
    sizePicture(grid, source.width, source.height, GRID_TARGET);
    gridWrap.classList.toggle("cnnw-clickable", layout() !== null);
    paintHighlight();
    paintFlags();
    paintPager();
  }

  function paintFlags() {
    // Marks belong to the layer of the picture on screen: after a layer change the flags
    // of the new layer arrive before its picture does.
    const meta = model.get(featureViz() ? "fv_meta" : "grid_meta") ?? {};
    const current = !grid.hidden && meta.layer === model.get("layer");
    const marks = current ? flagBoxes(layout(), model.get("health_flags")) : [];
    flagLayer.replaceChildren(
      ...marks.map(({ channel, kinds, box }) => {
        const words = kinds.map((kind) => kind.replace(/_/g, " ")).join(", ");
        const mark = make("div", {
          className: "cnnw-flag",
          role: "health-flag",
          attrs: { "data-channel": String(channel), title: `channel ${channel}: ${words}` },
        });
        mark.style.left = `${box.left * 100}%`;
        mark.style.top = `${box.top * 100}%`;
        mark.style.width = `${box.width * 100}%`;
        mark.style.height = `${box.height * 100}%`;
        mark.append(make("span", { className: "cnnw-flag-badge", text: "!" }));
        return mark;
      }),
    );
    flagLayer.hidden = marks.length === 0;
  }

  function paintHealth() {
    /** @type {Array<Record<string, any>>} */
    const rows = model.get("health_findings") ?? [];
    healthList.replaceChildren(...rows.map((row) => make("li", { text: healthLine(row) })));
    healthList.hidden = rows.length === 0;
    const running = Boolean(model.get("health_running"));
    healthSummary.textContent = model.get("health_summary") ?? "";
    healthRun.disabled = running;
    paintFlags();
  }

  function paintTop() {
    showBytes(topStrip, "top_strip", model.get("top_format"));
    const meta = model.get("top_meta") ?? {};
    const width = Number(meta.width ?? 0);
    if (width > 0 && !topStrip.hidden) {
      // Enlarged by a whole factor when small; wide strips of big crops shrink to fit.
      const scale = displayScale(width, Number(meta.height ?? 0), STRIP_TARGET);
      topStrip.style.width = `${Math.min(width * scale, STRIP_TARGET)}px`;
      topStrip.classList.toggle("cnnw-pixelated", width < STRIP_TARGET);
    }
    topStrip.classList.toggle("cnnw-stale", meta.state === "computing");
    topCaptionText.textContent = topCaption(meta);
    const names = Array.isArray(meta.sources) ? meta.sources.filter(Boolean) : [];
    if (names.length) topStrip.title = names.join(", ");
    else topStrip.removeAttribute("title");
  }

  function paintHighlight() {
    const box = tileBox(layout(), model.get("channel"));
    highlight.hidden = box === null || grid.hidden;
    if (box) {
      highlight.style.left = `${box.left * 100}%`;
      highlight.style.top = `${box.top * 100}%`;
      highlight.style.width = `${box.width * 100}%`;
      highlight.style.height = `${box.height * 100}%`;
    }
  }

  function paintDetail() {
    if (featureViz()) {
      paintFvDetail();
      return;
    }
    showBytes(detail, "detail", model.get("detail_format"));
    const stats = model.get("detail_stats") ?? {};
    const shape = Array.isArray(stats.shape) ? stats.shape : [];
    const [height, width] = shape.length >= 2 ? shape.slice(-2) : [0, 0];
    sizePicture(detail, width, height, DETAIL_TARGET);
    const parts = [];
    if (typeof stats.value === "number") {
      const label = stats.label !== undefined ? ` “${stats.label}”` : "";
      parts.push(`unit ${stats.index}${label}`, `value ${formatNumber(stats.value)}`);
      if (typeof stats.probability === "number")
        parts.push(`p ${(stats.probability * 100).toFixed(1)}%`);
    } else if (shape.length) {
      const what = model.get("view") === "filters" ? "filter" : "channel";
      if (typeof stats.sum_of === "number")
        parts.push(`Σ of ${stats.sum_of} inputs × filter ${model.get("channel")} (before bias)`);
      else parts.push(`${what} ${model.get("channel")}`);
      parts.push(
        `min ${formatNumber(stats.min)}`,
        `max ${formatNumber(stats.max)}`,
        `mean ${formatNumber(stats.mean)}`,
      );
      if (stats.nonfinite) parts.push(`${stats.nonfinite} NaN/Inf`);
      if (typeof stats.bias === "number") parts.push(`bias ${formatNumber(stats.bias)}`);
    }
    detailStats.textContent = parts.join(" · ");
    detailFigure.hidden = parts.length === 0;
  }

  function paintFvDetail() {
    showBytes(detail, "fv_detail", "png");
    const meta = model.get("fv_meta") ?? {};
    const size = Array.isArray(meta.size) ? meta.size : [0, 0];
    sizePicture(detail, size[1], size[0], DETAIL_TARGET);
    const channel = Number(model.get("channel"));
    /** @type {number[]} */
    const channels = Array.isArray(meta.channels) ? meta.channels : [];
    const index = channels.indexOf(channel);
    const parts = [];
    if (!detail.hidden && index >= 0) {
      const what = meta.objective === "class" ? "class" : "channel";
      parts.push(`${what} ${channel}`);
      const values = Array.isArray(meta.values) ? meta.values : [];
      if (typeof values[index] === "number") parts.push(`objective ${formatNumber(values[index])}`);
    }
    detailStats.textContent = parts.join(" · ");
    detailFigure.hidden = detail.hidden;
  }

  function paintFeatureViz() {
    const running = Boolean(model.get("fv_running"));
    const meta = model.get("fv_meta") ?? {};
    fvSteps.input.value = String(model.get("fv_steps") ?? "");
    const size = Number(model.get("fv_size") ?? 0);
    fvSize.input.value = size > 0 ? String(size) : "";
    fvRecipe.select.value = model.get("fv_recipe");
    fvObjective.select.value = model.get("fv_objective");
    fvStop.disabled = !running;
    fvRun.textContent = running ? "Restart" : "Run gradient ascent";
    const progress = Number(model.get("fv_progress") ?? 0);
    fvProgress.value = Number.isFinite(progress) ? progress : 0;
    fvProgressLabel.textContent = fvProgressText(
      typeof meta.steps === "number" ? meta : null,
      running,
    );
    const empty = !(model.get("fv_image")?.byteLength > 0);
    fvHint.hidden = !empty || running;
    root.classList.toggle("cnnw-fv-running", running);
  }

  function paintInputImage() {
    showBytes(inputImage, "image_png", "png");
  }

  function paintPredictions() {
    /** @type {{index: number, label: string, value: number}[]} */
    const rows = model.get("predictions") ?? [];
    predictions.replaceChildren(
      ...rows.map((row) => make("li", { text: `${row.label} — ${(row.value * 100).toFixed(1)}%` })),
    );
    predictions.hidden = rows.length === 0 || featureViz();
  }

  function paintPager() {
    let meta = model.get("grid_meta") ?? {};
    if (featureViz()) {
      // The feature-viz page is the layer's page of channels (what a run optimizes).
      const total = Math.max(1, Number(model.get("channel_count") ?? 1));
      const size = Math.max(1, Number(model.get("page_size") ?? 1));
      const page = Number(model.get("page") ?? 0);
      const first = page * size;
      const last = Math.min(total, first + size) - 1;
      meta = {
        page,
        pages: Math.ceil(total / size),
        text: `channels ${first}–${last} of ${total}`,
      };
    }
    const page = Number(meta.page ?? model.get("page") ?? 0);
    const pages = Number(meta.pages ?? 1);
    const text = meta.text ?? "";
    pageInfo.textContent = pages > 1 ? `${text} · page ${page + 1} of ${pages}` : text;
    prev.disabled = !(pages > 1 && page > 0);
    next.disabled = !(pages > 1 && page < pages - 1);
    save.disabled = !(model.get(gridSource().bytes)?.byteLength > 0);
  }

  function paintLayers() {
    const view = model.get("view");
    const current = model.get("layer");
    const all = layers();
    const shown = visibleLayers(all, view, layerFilter.value, current);
    layerSelect.replaceChildren(
      ...shown.map((layer) => {
        const option = doc.createElement("option");
        option.value = layer.name;
        option.textContent = layerLabel(layer);
        return option;
      }),
    );
    layerSelect.value = current;
    const eligible = visibleLayers(all, view, "", "").length;
    layerCount.textContent = layerFilter.value.trim() ? `${shown.length} of ${eligible}` : "";
  }

  function paintChannel() {
    const count = Math.max(1, Number(model.get("channel_count") ?? 1));
    const channel = String(model.get("channel") ?? 0);
    for (const input of [channelSlider, channelNumber]) {
      input.max = String(count - 1);
      input.value = channel;
    }
    const vector = (currentLayer()?.shape?.length ?? 3) === 1;
    channelLabel.textContent = vector
      ? "Unit"
      : model.get("view") === "filters"
        ? "Filter"
        : "Channel";
    paintHighlight();
  }

  function paintSelects() {
    normalization.select.value = model.get("normalization");
    colormap.select.value = model.get("colormap");
    activationMode.select.value = model.get("activation_mode");
    vectorMode.select.value = model.get("vector_mode");
    zoomSelect.select.value = zoom;
    const inChannels = Number((model.get("grid_meta") ?? {}).in_channels ?? 0);
    /** @type {string[][]} */
    const choices = [["auto", "auto"]];
    if (inChannels === 3) choices.push(["rgb", "RGB"]);
    choices.push(["mean", "mean"]);
    for (let i = 0; i < inChannels; i++) choices.push([String(i), String(i)]);
    const wanted = String(model.get("input_channel"));
    if (!choices.some(([value]) => value === wanted)) choices.push([wanted, wanted]);
    setOptions(inputChannel.select, choices);
    inputChannel.select.value = wanted;
  }

  function paintSamples() {
    /** @type {string[]} */
    const names = model.get("samples") ?? [];
    setOptions(sample.select, [["", "sample image…"], ...names.map((name) => [name, name])]);
    sample.select.value = model.get("sample") ?? "";
  }

  function paintViews() {
    /** @type {string[]} */
    const views = model.get("views") ?? [];
    const view = model.get("view");
    viewBar.replaceChildren(
      ...views.map((name) => {
        const button = focusable(
          make("button", {
            className: "cnnw-button cnnw-view-button",
            role: "view",
            text: VIEWS[name]?.label || name,
            attrs: { type: "button", "data-view": name, "aria-pressed": String(name === view) },
          }),
        );
        return button;
      }),
    );
    viewBar.hidden = views.length < 2;
    if (view !== "table") lastPictureView = view;
    const parts = (VIEWS[view] ?? DEFAULT_VIEW).parts;
    const vector = (currentLayer()?.shape?.length ?? 3) === 1;
    for (const node of root.querySelectorAll("[data-part]")) {
      const part = node.getAttribute("data-part") ?? "";
      let visible =
        parts.includes(part) || (part === "vector-mode" && parts.includes("activation-mode"));
      if (part === "activation-mode") visible = visible && !vector;
      if (part === "vector-mode") visible = visible && vector;
      if (part === "drawing" && vector && view === "activations") visible = false;
      if (part === "examples") visible = visible && Number(model.get("images_count") ?? 0) > 0;
      /** @type {HTMLElement} */ (node).hidden = !visible;
    }
    root.setAttribute("data-view", view);
  }

  function paintTable() {
    /** @type {Array<Record<string, any>>} */
    const rows = model.get("table") ?? [];
    const current = model.get("layer");
    const head = make("thead", {}, [
      make(
        "tr",
        {},
        ["#", "name", "type", "output", "parameters", "count", "filters"].map((title) =>
          make("th", { text: title, attrs: { scope: "col" } }),
        ),
      ),
    ]);
    const body = make(
      "tbody",
      {},
      rows.map((row) => {
        const cells = [
          String(row.index),
          row.name,
          row.type,
          row.shape_text ?? "",
          row.params ?? "",
          Number(row.num_params ?? 0).toLocaleString("en-US"),
          row.has_filters ? "yes" : "",
        ].map((text) => make("td", { text: String(text) }));
        const tr = focusable(
          make(
            "tr",
            {
              className: "cnnw-table-row",
              role: "table-row",
              attrs: { tabindex: "0", "data-layer": row.name },
            },
            cells,
          ),
        );
        const selected = row.name === current;
        tr.classList.toggle("cnnw-selected", selected);
        tr.setAttribute("aria-selected", String(selected));
        return tr;
      }),
    );
    table.replaceChildren(head, body);
  }

  function paintStatus() {
    const busy = Boolean(model.get("busy")) || Boolean(model.get("fv_running"));
    statusText.textContent = model.get("status") ?? "";
    spinner.hidden = !busy;
    root.setAttribute("aria-busy", String(busy));
    root.classList.toggle("cnnw-busy", busy);
  }

  function paintError() {
    const text = model.get("error") || localError;
    error.textContent = text;
    error.hidden = !text;
  }

  // -- user input ----------------------------------------------------------------------

  /**
   * The point of a pointer event in the grid picture's own pixels.
   * @param {MouseEvent} event
   * @param {TileLayout} geometry
   */
  function picturePoint(event, geometry) {
    const rect = grid.getBoundingClientRect();
    if (!rect.width || !rect.height) return null;
    return {
      x: ((event.clientX - rect.left) * geometry.width) / rect.width,
      y: ((event.clientY - rect.top) * geometry.height) / rect.height,
    };
  }

  /** @param {number} channel */
  function selectChannel(channel) {
    const count = Math.max(1, Number(model.get("channel_count") ?? 1));
    const clamped = Math.min(Math.max(0, Math.trunc(channel)), count - 1);
    if (!Number.isFinite(clamped) || clamped === model.get("channel")) return;
    send("channel", clamped);
  }

  /** @param {File | undefined | null} file */
  async function sendFile(file) {
    if (!file) return;
    if (file.size > MAX_UPLOAD_BYTES) {
      localError = `${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MiB; the limit is ${MAX_UPLOAD_BYTES / 2 ** 20} MiB`;
      paintError();
      return;
    }
    const bytes = await readBytes(file);
    if (closed) return;
    localError = "";
    model.set("upload_name", file.name);
    model.set("upload", new DataView(bytes));
    model.save_changes();
  }

  function downloadGrid() {
    const source = gridSource();
    /** @type {DataView | null} */
    const data = model.get(source.bytes);
    if (!data || !data.byteLength) return;
    const format = source.format || "png";
    const url = URL.createObjectURL(new Blob([data], { type: `image/${format}` }));
    downloadUrls.add(url);
    const link = make("a", {
      attrs: {
        href: url,
        download: `${safeFileName(`${model.get("layer")}-${model.get("view")}`)}.${format === "jpeg" ? "jpg" : format}`,
      },
    });
    link.hidden = true;
    root.append(link);
    link.click();
    link.remove();
    // The download reads the URL after click() returns; free it a little later.
    const timer = setTimeout(() => {
      timers.delete(timer);
      URL.revokeObjectURL(url);
      downloadUrls.delete(url);
    }, 1000);
    timers.add(timer);
  }

  viewBar.addEventListener(
    "click",
    (event) => {
      const button = /** @type {HTMLElement} */ (event.target).closest?.("[data-view]");
      const view = button?.getAttribute("data-view");
      if (view && view !== model.get("view")) send("view", view);
    },
    listen,
  );
  layerFilter.addEventListener("input", paintLayers, listen);
  layerSelect.addEventListener(
    "change",
    () => {
      if (layerSelect.value && layerSelect.value !== model.get("layer"))
        send("layer", layerSelect.value);
    },
    listen,
  );
  normalization.select.addEventListener(
    "change",
    () => send("normalization", normalization.select.value),
    listen,
  );
  colormap.select.addEventListener("change", () => send("colormap", colormap.select.value), listen);
  inputChannel.select.addEventListener(
    "change",
    () => send("input_channel", inputChannel.select.value),
    listen,
  );
  activationMode.select.addEventListener(
    "change",
    () => send("activation_mode", activationMode.select.value),
    listen,
  );
  vectorMode.select.addEventListener(
    "change",
    () => send("vector_mode", vectorMode.select.value),
    listen,
  );
  zoomSelect.select.addEventListener(
    "change",
    () => {
      zoom = zoomSelect.select.value;
      paintGrid();
      paintDetail();
    },
    listen,
  );
  sample.select.addEventListener(
    "change",
    () => {
      if (sample.select.value) send("sample", sample.select.value);
    },
    listen,
  );
  upload.addEventListener(
    "change",
    () => {
      const file = upload.files?.[0];
      upload.value = ""; // the same file may be chosen again
      sendFile(file);
    },
    listen,
  );
  channelSlider.addEventListener("input", () => selectChannel(Number(channelSlider.value)), listen);
  channelNumber.addEventListener(
    "change",
    () => {
      const value = Number(channelNumber.value);
      if (Number.isFinite(value)) selectChannel(value);
      else paintChannel();
    },
    listen,
  );
  grid.addEventListener(
    "click",
    (event) => {
      const geometry = layout();
      const point = geometry && picturePoint(event, geometry);
      if (!geometry || !point) return;
      const channel = channelAt(geometry, point.x, point.y);
      if (channel >= 0) selectChannel(channel);
    },
    listen,
  );
  grid.addEventListener(
    "mousemove",
    (event) => {
      const geometry = layout();
      const point = geometry && picturePoint(event, geometry);
      const channel = geometry && point ? channelAt(geometry, point.x, point.y) : -1;
      if (channel < 0) {
        tooltip.hidden = true;
        return;
      }
      const what = model.get("view") === "filters" ? "filter" : "channel";
      tooltip.textContent = `${model.get("layer")} · ${what} ${channel}`;
      const box = gridWrap.getBoundingClientRect();
      tooltip.style.left = `${event.clientX - box.left + 12}px`;
      tooltip.style.top = `${event.clientY - box.top + 12}px`;
      tooltip.hidden = false;
    },
    listen,
  );
  grid.addEventListener("mouseleave", () => (tooltip.hidden = true), listen);
  // The input image's size is known only once decoded (it has no layout of its own). Small
  // inputs (a 28x28 digit) are enlarged with sharp pixels; photos are shown smoothly.
  inputImage.addEventListener(
    "load",
    () => {
      const { naturalWidth: width, naturalHeight: height } = inputImage;
      sizePicture(inputImage, width, height, INPUT_TARGET);
      inputImage.classList.toggle("cnnw-pixelated", Math.max(width, height) < INPUT_TARGET);
    },
    listen,
  );
  gridWrap.addEventListener(
    "keydown",
    (event) => {
      const geometry = layout();
      const steps = {
        ArrowLeft: -1,
        ArrowRight: 1,
        ArrowUp: -(geometry?.ncols ?? 1),
        ArrowDown: geometry?.ncols ?? 1,
      };
      const step = steps[/** @type {keyof typeof steps} */ (event.key)];
      if (step === undefined) return;
      event.preventDefault();
      selectChannel(Number(model.get("channel")) + step);
    },
    listen,
  );
  prev.addEventListener(
    "click",
    () => send("page", Math.max(0, Number(model.get("page")) - 1)),
    listen,
  );
  next.addEventListener("click", () => send("page", Number(model.get("page")) + 1), listen);
  save.addEventListener("click", downloadGrid, listen);
  healthRun.addEventListener(
    "click",
    () => send("health_run", Number(model.get("health_run") ?? 0) + 1),
    listen,
  );
  fvRun.addEventListener(
    "click",
    () => send("fv_run", Number(model.get("fv_run") ?? 0) + 1),
    listen,
  );
  fvStop.addEventListener(
    "click",
    () => send("fv_stop", Number(model.get("fv_stop") ?? 0) + 1),
    listen,
  );
  for (const [field, name] of /** @type {const} */ ([
    [fvSteps, "fv_steps"],
    [fvSize, "fv_size"],
  ])) {
    field.input.addEventListener(
      "change",
      () => {
        const text = field.input.value;
        // An empty size field means "automatic".
        const value = name === "fv_size" && !text.trim() ? 0 : parseWhole(text);
        if (value === null) {
          localError = `${name === "fv_steps" ? "steps" : "size"} must be a whole number`;
          paintError();
          paintFeatureViz();
        } else if (value !== model.get(name)) send(name, value);
      },
      listen,
    );
  }
  fvRecipe.select.addEventListener(
    "change",
    () => send("fv_recipe", fvRecipe.select.value),
    listen,
  );
  fvObjective.select.addEventListener(
    "change",
    () => send("fv_objective", fvObjective.select.value),
    listen,
  );

  /** @param {Event} event */
  function chooseRow(event) {
    const row = /** @type {HTMLElement} */ (event.target).closest?.("[data-layer]");
    const name = row?.getAttribute("data-layer");
    if (!name) return;
    const entry = layers().find((layer) => layer.name === name);
    /** @type {string[]} */
    const views = model.get("views") ?? [];
    let view = lastPictureView || (views.includes("activations") ? "activations" : "filters");
    if (view === "filters" && !entry?.has_filters && views.includes("activations"))
      view = "activations";
    model.set("layer", name);
    if (views.includes(view)) model.set("view", view);
    model.save_changes();
  }
  table.addEventListener("click", chooseRow, listen);
  table.addEventListener(
    "keydown",
    (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        chooseRow(event);
      }
    },
    listen,
  );

  // Drop a picture anywhere on the widget (only where an image can be used).
  const acceptsImages = () => (model.get("views") ?? []).includes("activations");
  root.addEventListener(
    "dragover",
    (event) => {
      if (!acceptsImages()) return;
      event.preventDefault();
      root.classList.add("cnnw-dragging");
    },
    listen,
  );
  root.addEventListener("dragleave", () => root.classList.remove("cnnw-dragging"), listen);
  root.addEventListener(
    "drop",
    (event) => {
      root.classList.remove("cnnw-dragging");
      if (!acceptsImages()) return;
      event.preventDefault();
      sendFile(event.dataTransfer?.files?.[0]);
    },
    listen,
  );

  // -- model changes -------------------------------------------------------------------

  subscribe("change:grid", paintGrid);
  subscribe("change:grid_layout", paintGrid);
  subscribe("change:grid_meta", () => {
    paintGrid();
    paintSelects();
  });
  subscribe("change:detail", paintDetail);
  subscribe("change:detail_stats", paintDetail);
  subscribe("change:image_png", paintInputImage);
  subscribe("change:predictions", paintPredictions);
  subscribe("change:channel", () => {
    paintChannel();
    paintDetail();
  });
  subscribe("change:channel_count", paintChannel);
  subscribe("change:page", paintPager);
  subscribe("change:layers", paintLayers);
  subscribe("change:layer", () => {
    paintLayers();
    paintViews();
    paintChannel();
    paintTable();
  });
  subscribe("change:view", () => {
    paintViews();
    paintLayers();
    paintChannel();
    paintGrid();
    paintDetail();
    paintPredictions();
  });
  for (const name of ["fv_image", "fv_layout"]) {
    subscribe(`change:${name}`, () => {
      if (featureViz()) paintGrid();
      paintFeatureViz();
    });
  }
  subscribe("change:fv_detail", paintDetail);
  subscribe("change:fv_meta", () => {
    paintFeatureViz();
    paintDetail();
  });
  for (const name of [
    "fv_running",
    "fv_progress",
    "fv_steps",
    "fv_size",
    "fv_recipe",
    "fv_objective",
  ]) {
    subscribe(`change:${name}`, paintFeatureViz);
  }
  subscribe("change:fv_running", paintStatus);
  subscribe("change:channel_count", paintPager);
  subscribe("change:views", paintViews);
  subscribe("change:table", paintTable);
  for (const name of [
    "normalization",
    "colormap",
    "input_channel",
    "activation_mode",
    "vector_mode",
  ]) {
    subscribe(`change:${name}`, paintSelects);
  }
  for (const name of ["health_flags", "health_findings", "health_summary", "health_running"]) {
    subscribe(`change:${name}`, paintHealth);
  }
  for (const name of ["top_strip", "top_meta", "top_format"]) subscribe(`change:${name}`, paintTop);
  subscribe("change:images_count", paintViews);
  subscribe("change:samples", paintSamples);
  subscribe("change:sample", paintSamples);
  subscribe("change:status", paintStatus);
  subscribe("change:busy", paintStatus);
  subscribe("change:error", () => {
    localError = "";
    paintError();
  });

  paintViews();
  paintLayers();
  paintSelects();
  paintSamples();
  paintChannel();
  paintInputImage();
  paintGrid();
  paintDetail();
  paintPredictions();
  paintTable();
  paintFeatureViz();
  paintHealth();
  paintTop();
  paintStatus();
  paintError();

  function cleanup() {
    if (closed) return;
    closed = true;
    controller.abort();
    for (const [event, callback] of subscriptions) model.off(event, callback);
    subscriptions.length = 0;
    for (const url of shownUrls.values()) URL.revokeObjectURL(url);
    shownUrls.clear();
    shownData.clear();
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const url of downloadUrls) URL.revokeObjectURL(url);
    downloadUrls.clear();
    root.remove();
  }
  // anywidget >= 0.11 also passes an AbortSignal that fires when the view goes away.
  signal?.addEventListener("abort", cleanup, { once: true });
  return cleanup;
}

export default { render };
