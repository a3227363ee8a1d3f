// The counter's charts: its predicted day (busy hours, usual profile, 80 % band when
// the answers carry lower/upper, the measured hours when counts are stored) and the
// next 7 days as small curves.

import { el } from "./forecast-map.js";

const W = 640;
const H = 300;
const M = { left: 48, right: 12, top: 20, bottom: 30 };

// The axis top: the first of 1, 2, 4, 8 x 10^k above the value, so quarters are round.
function niceMax(value) {
  if (!(value > 0)) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 4, 8, 10].map((m) => m * power).find((top) => top >= value);
}

// day: {values[24], lower?, upper?, busy?[24], usual[24], measured?[24] (null: an hour
// not counted)}; hour: the chosen hour.
export function drawDay(svg, day, hour) {
  svg.replaceChildren();
  const all = [...day.values, ...day.usual, ...(day.upper || []), ...(day.measured || [])];
  const top = niceMax(Math.max(...all.filter(Number.isFinite)));
  const x = (h) => M.left + (h * (W - M.left - M.right)) / 23;
  const y = (v) => H - M.bottom - (v / top) * (H - M.top - M.bottom);
  const step = (W - M.left - M.right) / 23;
  const grid = el("g", { class: "grid axis" }, svg);
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    el("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }, grid);
    el("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, grid).textContent = String(v);
  }
  for (let h = 0; h < 24; h += 3) {
    el("text", { x: x(h), y: H - 10, "text-anchor": "middle" }, grid).textContent = `${h}h`;
  }
  el("text", { class: "chart-label", x: W - M.right, y: M.top - 2, "text-anchor": "end" }, svg)
    .textContent = "bikes per hour";
  const busyLayer = el("g", { id: "busy-hours" }, svg);
  (day.busy || []).forEach((b, h) => {
    if (b === 1) {
      el("rect", { class: "busy-hour", "data-hour": h, x: x(h) - step / 2, y: M.top,
        width: step, height: H - M.top - M.bottom }, busyLayer);
    }
  });
  if (day.lower && day.upper) {
    const upper = day.upper.map((v, h) => `${x(h).toFixed(1)},${y(v).toFixed(1)}`);
    const lower = day.lower.map((v, h) => `${x(h).toFixed(1)},${y(v).toFixed(1)}`).reverse();
    el("polygon", { id: "band", class: "band", points: [...upper, ...lower].join(" "),
      "data-lower": JSON.stringify(day.lower), "data-upper": JSON.stringify(day.upper) }, svg);
  }
  const line = (values) => values.map((v, h) => `${x(h).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  el("polyline", { id: "usual-curve", class: "usual", points: line(day.usual),
    "data-values": JSON.stringify(day.usual) }, svg);
  el("polyline", { id: "day-curve", class: "curve", points: line(day.values),
    "data-values": JSON.stringify(day.values) }, svg);
  if (day.measured) {
    // Gaps where an hour was not counted: one path, a new segment after each gap.
    const d = day.measured.map((v, h) => (v === null ? "" : `${h && day.measured[h - 1] !== null
      ? "L" : "M"}${x(h).toFixed(1)},${y(v).toFixed(1)}`)).join("");
    el("path", { id: "measured-curve", class: "measured", d,
      "data-values": JSON.stringify(day.measured) }, svg);
  }
  const points = el("g", { id: "day-points" }, svg);
  day.values.forEach((v, h) => {
    const busy = day.busy ? String(day.busy[h]) : "";
    const p = el("circle", { class: "point", cx: x(h), cy: y(v), r: 3, "data-hour": h,
      "data-value": v, "data-busy": busy }, points);
    el("title", {}, p).textContent = `${h}:00 ${v} bikes/h${busy === "1" ? " (busy)" : ""}`;
  });
  el("line", { class: "hour-marker", x1: x(hour), x2: x(hour), y1: M.top,
    y2: H - M.bottom }, svg);
  const value = day.values[hour];
  el("text", { id: "hour-label", class: "chart-label", x: x(hour) + (hour > 18 ? -4 : 4),
    y: M.top + 10, "text-anchor": hour > 18 ? "end" : "start" }, svg).textContent =
    `${String(hour).padStart(2, "0")}:00: ${Math.round(value).toLocaleString("en")} bikes/h`;
}

export function drawChartLegend(box, hasBand, hasBusy, hasMeasured) {
  box.replaceChildren();
  const item = (cls, style, text) => {
    const span = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${cls}`;
    Object.assign(swatch.style, style);
    span.append(swatch, text);
    box.appendChild(span);
  };
  item("line", { borderColor: "#0b63c5" }, "forecast");
  if (hasMeasured) item("line", { borderColor: "#1a7f37" }, "counted");
  item("line dashed", { borderColor: "#444" }, "usual for this hour on this kind of day");
  if (hasBand) item("", { background: "rgba(11,99,197,0.15)" }, "80 % interval");
  if (hasBusy) item("", { background: "rgba(215,48,31,0.25)" }, "busy hours (forte)");
}

// days: [{day, label, values[24], busy?[24]}]; onPick(day) when one is chosen.
export function drawWeek(box, days, onPick) {
  box.replaceChildren();
  const top = niceMax(Math.max(...days.flatMap((d) => d.values)));
  for (const d of days) {
    const total = Math.round(d.values.reduce((a, b) => a + b, 0));
    const item = document.createElement("li");
    const button = item.appendChild(document.createElement("button"));
    button.type = "button";
    button.dataset.date = d.day;
    button.dataset.total = String(total);
    button.dataset.values = JSON.stringify(d.values);
    button.title = "Show this day";
    const title = document.createElement("span");
    title.textContent = d.label;
    const svg = el("svg", { viewBox: "0 0 96 40", "aria-hidden": "true" });
    (d.busy || []).forEach((b, h) => {
      if (b === 1) el("rect", { class: "spark-busy", x: (h * 96) / 24, y: 0, width: 4, height: 40 }, svg);
    });
    el("polyline", { class: "spark", points: d.values.map((v, h) =>
      `${((h * 95) / 23).toFixed(1)},${(38 - (v / top) * 36).toFixed(1)}`).join(" ") }, svg);
    const sum = document.createElement("span");
    sum.className = "total";
    sum.textContent = `${total.toLocaleString("en")} bikes`;
    button.append(title, svg, sum);
    button.addEventListener("click", () => onPick(d.day));
    box.appendChild(item);
  }
}
