// The map: counters placed by their latitude/longitude on an outline of Paris.

const SVG = "http://www.w3.org/2000/svg";
// Approximate (lat, lon) of the boulevard périphérique's portes and of the Seine, for
// orientation only: the counters' own coordinates place the marks.
const PERIPHERIQUE = [[48.878, 2.283], [48.888, 2.298], [48.894, 2.313], [48.899, 2.340],
  [48.898, 2.359], [48.897, 2.386], [48.886, 2.399], [48.876, 2.407], [48.864, 2.409],
  [48.847, 2.410], [48.836, 2.404], [48.830, 2.398], [48.821, 2.374], [48.816, 2.360],
  [48.818, 2.344], [48.822, 2.325], [48.827, 2.302], [48.831, 2.288], [48.838, 2.257],
  [48.848, 2.256], [48.861, 2.266], [48.871, 2.274]];
const SEINE = [[48.822, 2.409], [48.829, 2.388], [48.836, 2.377], [48.843, 2.366],
  [48.849, 2.359], [48.853, 2.349], [48.857, 2.338], [48.861, 2.326], [48.864, 2.312],
  [48.863, 2.301], [48.858, 2.292], [48.853, 2.284], [48.846, 2.276], [48.838, 2.266],
  [48.831, 2.252]];
export const TRAFFIC_COLOURS = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"];
export const BUSY_COLOURS = { 1: "#d7301f", 0: "#6baed6", unknown: "#bbbbbb" };

export function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function projection(points, width, height, pad) {
  const lats = points.map((p) => p[0]);
  const lons = points.map((p) => p[1]);
  const [lat0, lat1, lon0, lon1] = [Math.min(...lats), Math.max(...lats), Math.min(...lons),
    Math.max(...lons)];
  // Equirectangular with the longitude shrunk by cos(latitude): true shape at Paris' scale.
  const k = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
  const scale = Math.min((width - 2 * pad) / ((lon1 - lon0) * k || 1),
    (height - 2 * pad) / ((lat1 - lat0) || 1));
  const dx = (width - (lon1 - lon0) * k * scale) / 2;
  const dy = (height - (lat1 - lat0) * scale) / 2;
  return ([lat, lon]) => [dx + (lon - lon0) * k * scale, height - dy - (lat - lat0) * scale];
}

function path(points, project, close) {
  const d = points.map((p, i) => `${i ? "L" : "M"}${project(p).map((v) => v.toFixed(1)).join(",")}`);
  return d.join("") + (close ? "Z" : "");
}

// Draws the map and its marks; onSelect(name) on click, Enter or Space.
export function drawMap(svg, counters, onSelect) {
  svg.replaceChildren();
  const [width, height] = [640, 480];
  const project = projection([...PERIPHERIQUE, ...counters.map((c) => [c.latitude, c.longitude])],
    width, height, 16);
  el("path", { class: "paris", d: path(PERIPHERIQUE, project, true) }, svg);
  el("path", { class: "seine", d: path(SEINE, project, false) }, svg);
  const layer = el("g", { class: "marks" }, svg);
  // Both directions of a street share one place: spread such marks side by side.
  const groups = new Map();
  for (const c of counters) {
    const key = project([c.latitude, c.longitude]).map((v) => Math.round(v / 4)).join(",");
    groups.set(key, [...(groups.get(key) || []), c]);
  }
  const spread = new Map();
  for (const members of groups.values()) {
    members.forEach((c, i) => {
      const [x0, y0] = project([members[0].latitude, members[0].longitude]);
      const angle = (2 * Math.PI * i) / members.length;
      const r = members.length > 1 ? 8 : 0;
      spread.set(c.name, [x0 + r * Math.cos(angle), y0 + r * Math.sin(angle)]);
    });
  }
  for (const c of counters) {
    const [x, y] = spread.get(c.name);
    const mark = el("g", { class: "mark", "data-counter": c.name, tabindex: "0", role: "button",
      "aria-pressed": "false", "aria-label": c.name }, layer);
    el("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 7, fill: BUSY_COLOURS.unknown }, mark);
    el("title", {}, mark).textContent = c.name;
    mark.addEventListener("click", () => onSelect(c.name));
    mark.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect(c.name);
      }
    });
  }
}

export function markSelected(svg, name) {
  for (const mark of svg.querySelectorAll(".mark")) {
    mark.setAttribute("aria-pressed", String(mark.dataset.counter === name));
  }
}

// Class limits from the day's predictions (all counters, all hours): a colour keeps
// its meaning while the hour changes.
export function trafficBreaks(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!sorted.length) return [];
  return [0.2, 0.4, 0.6, 0.8].map((q) => Math.round(sorted[Math.floor(q * (sorted.length - 1))]));
}

function trafficClass(value, breaks) {
  let i = 0;
  while (i < breaks.length && value >= breaks[i]) i++;
  return i;
}

// values/busy: name -> number at the chosen hour (busy may be missing).
export function colourMarks(svg, mode, values, busy, breaks) {
  for (const mark of svg.querySelectorAll(".mark")) {
    const name = mark.dataset.counter;
    const value = values.get(name);
    const isBusy = busy.has(name) ? busy.get(name) : null;
    let colour;
    if (mode === "busy") colour = isBusy === null ? BUSY_COLOURS.unknown : BUSY_COLOURS[isBusy];
    else colour = value === undefined ? BUSY_COLOURS.unknown
      : TRAFFIC_COLOURS[trafficClass(value, breaks)];
    mark.querySelector("circle").setAttribute("fill", colour);
    mark.dataset.value = value === undefined ? "" : String(value);
    mark.dataset.busy = isBusy === null ? "" : String(isBusy);
    const text = value === undefined ? "no prediction"
      : `${value} bikes/h${isBusy === null ? "" : isBusy ? ", busy" : ", not busy"}`;
    mark.setAttribute("aria-label", `${name}: ${text}`);
    mark.querySelector("title").textContent = `${name}: ${text}`;
  }
}

export function drawLegend(box, mode, breaks, busyAvailable) {
  box.replaceChildren();
  const item = (colour, text) => {
    const span = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    span.append(swatch, text);
    box.appendChild(span);
  };
  if (mode === "busy") {
    item(BUSY_COLOURS[1], "busy (above its usual level)");
    item(BUSY_COLOURS[0], "not busy");
    item(BUSY_COLOURS.unknown, busyAvailable ? "no answer" : "classify not reachable");
    return;
  }
  const limits = [0, ...breaks];
  TRAFFIC_COLOURS.forEach((colour, i) => {
    item(colour, i < breaks.length ? `${limits[i]}–${limits[i + 1]} bikes/h`
      : `${limits[i]}+ bikes/h`);
  });
}
