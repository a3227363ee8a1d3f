// The map: the 20 arrondissements (paris-geo.js), the Seine, the streets the counters
// stand on, and the counters placed by their latitude/longitude.

import { ARRONDISSEMENTS } from "./paris-geo.js";

const SVG = "http://www.w3.org/2000/svg";
// Approximate (lat, lon) of the Seine, for orientation only.
const SEINE = [[48.822, 2.409], [48.829, 2.388], [48.836, 2.377], [48.843, 2.366],
  [48.849, 2.359], [48.853, 2.349], [48.857, 2.338], [48.861, 2.326], [48.864, 2.312],
  [48.863, 2.301], [48.858, 2.292], [48.853, 2.284], [48.846, 2.276], [48.838, 2.266],
  [48.831, 2.252]];
// Fixed limits (bikes/h), the same every day and hour, so a colour always means the
// same count: Paris counters range from a few bikes at night to ~1,500 at peak.
export const TRAFFIC_BREAKS = [25, 75, 150, 300];
export const TRAFFIC_COLOURS = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"];
export const BUSY_COLOURS = { 1: "#d7301f", 0: "#6baed6", unknown: "#bbbbbb" };
// Compared with usual: predicted / usual at that hour and kind of day.
export const USUAL_CLASSES = [
  { colour: "#2166ac", text: "much quieter than usual (under 2/3)" },
  { colour: "#92c5de", text: "quieter than usual" },
  { colour: "#f7f7f7", text: "as usual (within 10 %)" },
  { colour: "#f4a582", text: "busier than usual" },
  { colour: "#b2182b", text: "much busier than usual (over 1.5x)" },
];
// Above this many streets the labels would cover the map: only the selected one shows.
const MAX_STREET_LABELS = 24;

export function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// "Totem 73 boulevard de Sébastopol S-N" -> "boulevard de Sébastopol".
export function streetOf(name) {
  return name.replace(/^(totem\s+)?\d+\s*(bis|ter)?\s+/i, "")
    .replace(/\s+[NSEO]{1,2}\s*-\s*[NSEO]{1,2}$/i, "").trim();
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

function ordinal(n) {
  return n === 1 ? "1er" : `${n}e`;
}

// Draws the map and its marks; onSelect(name) on click, Enter or Space.
export function drawMap(svg, counters, onSelect) {
  svg.replaceChildren();
  const [width, height] = [640, 480];
  const outline = ARRONDISSEMENTS.flatMap((a) => a.ring);
  const project = projection([...outline, ...counters.map((c) => [c.latitude, c.longitude])],
    width, height, 12);
  const areas = el("g", { id: "arrondissements" }, svg);
  for (const a of ARRONDISSEMENTS) {
    el("path", { class: "arrondissement", d: path(a.ring, project, true) }, areas);
  }
  el("path", { class: "seine", d: path(SEINE, project, false) }, svg);
  const labels = el("g", { class: "area-labels", "aria-hidden": "true" }, svg);
  for (const a of ARRONDISSEMENTS) {
    const [x, y] = project(a.label);
    const text = el("text", { class: "area-label", x: x.toFixed(1), y: y.toFixed(1),
      "text-anchor": "middle", "data-arrondissement": a.number }, labels);
    text.textContent = ordinal(a.number);
    el("title", {}, text).textContent = a.name;
  }
  drawStreets(svg, counters, project);
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
    const mark = el("g", { class: "mark", "data-counter": c.name, "data-street": streetOf(c.name),
      tabindex: "0", role: "button", "aria-pressed": "false", "aria-label": c.name }, layer);
    el("circle", { class: "hit", cx: x.toFixed(1), cy: y.toFixed(1), r: 12 }, mark);
    el("circle", { class: "dot", cx: x.toFixed(1), cy: y.toFixed(1), r: 7,
      fill: BUSY_COLOURS.unknown }, mark);
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

// One label per street, beside its first counter: the street names the map's places.
function drawStreets(svg, counters, project) {
  const streets = new Map();
  for (const c of counters) {
    const street = streetOf(c.name);
    if (!streets.has(street)) streets.set(street, project([c.latitude, c.longitude]));
  }
  const layer = el("g", { id: "streets", "data-all": String(streets.size <= MAX_STREET_LABELS) }, svg);
  for (const [street, [x, y]] of streets) {
    const right = x < 470;
    const text = el("text", { class: "street-label", "data-street": street,
      x: (x + (right ? 12 : -12)).toFixed(1), y: (y - 9).toFixed(1),
      "text-anchor": right ? "start" : "end" }, layer);
    text.textContent = street;
  }
}

export function markSelected(svg, name) {
  for (const mark of svg.querySelectorAll(".mark")) {
    mark.setAttribute("aria-pressed", String(mark.dataset.counter === name));
  }
  const street = name ? streetOf(name) : null;
  for (const label of svg.querySelectorAll(".street-label")) {
    label.classList.toggle("selected", label.dataset.street === street);
  }
}

export function trafficClass(value) {
  let i = 0;
  while (i < TRAFFIC_BREAKS.length && value >= TRAFFIC_BREAKS[i]) i++;
  return i;
}

// Predicted against usual at the same hour and kind of day; near-empty hours (both
// under 5 bikes) are "as usual": a ratio of 2 bikes to 1 says nothing.
export function usualClass(value, usual) {
  if (!Number.isFinite(value) || !Number.isFinite(usual)) return null;
  if (Math.max(value, usual) < 5) return 2;
  const ratio = value / Math.max(usual, 1);
  if (ratio < 2 / 3) return 0;
  if (ratio < 0.9) return 1;
  if (ratio <= 1.1) return 2;
  return ratio <= 1.5 ? 3 : 4;
}

// at: name -> {value, usual, busy} at the chosen hour (any may be missing).
export function colourMarks(svg, mode, at) {
  for (const mark of svg.querySelectorAll(".mark")) {
    const name = mark.dataset.counter;
    const { value, usual, busy } = at.get(name) || {};
    const isBusy = busy === undefined || busy === null ? null : busy;
    const compared = usualClass(value, usual);
    let colour = BUSY_COLOURS.unknown;
    if (mode === "busy" && isBusy !== null) colour = BUSY_COLOURS[isBusy];
    if (mode === "usual" && compared !== null) colour = USUAL_CLASSES[compared].colour;
    if (mode === "traffic" && value !== undefined) colour = TRAFFIC_COLOURS[trafficClass(value)];
    mark.querySelector(".dot").setAttribute("fill", colour);
    mark.dataset.value = value === undefined ? "" : String(value);
    mark.dataset.busy = isBusy === null ? "" : String(isBusy);
    mark.dataset.usual = compared === null ? "" : String(compared);
    const words = value === undefined ? "no prediction" : [`${Math.round(value)} bikes/h`,
      compared === null ? "" : USUAL_CLASSES[compared].text.replace(/ \(.*\)$/, ""),
      isBusy === null ? "" : isBusy ? "busy" : "not busy"].filter(Boolean).join(", ");
    mark.setAttribute("aria-label", `${name}: ${words}`);
    mark.querySelector("title").textContent = `${name}: ${words}`;
  }
}

export function drawLegend(box, mode, busyAvailable) {
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
    item(BUSY_COLOURS[1], "busy (forte)");
    item(BUSY_COLOURS[0], "not busy (faible)");
    item(BUSY_COLOURS.unknown, busyAvailable ? "no answer" : "classify not reachable");
    return;
  }
  if (mode === "usual") {
    for (const c of USUAL_CLASSES) item(c.colour, c.text);
    return;
  }
  const limits = [0, ...TRAFFIC_BREAKS];
  TRAFFIC_COLOURS.forEach((colour, i) => {
    item(colour, i < TRAFFIC_BREAKS.length ? `${limits[i]}–${limits[i + 1]} bikes/h`
      : `${limits[i]}+ bikes/h`);
  });
}
