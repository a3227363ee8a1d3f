// The forecast page: state, loading, the states shown to the person, the model panel.

import { ApiError, addDays, call, dayType, endpoints, predict, records, setKey,
  todayInParis } from "./forecast-api.js";
import { colourMarks, drawLegend, drawMap, markSelected, trafficBreaks } from "./forecast-map.js";
import { drawChartLegend, drawDay, drawWeek } from "./forecast-chart.js";

const $ = (id) => document.getElementById(id);
const api = endpoints();
const state = { counters: [], holidays: new Set(), day: null, selected: null, dayLoad: 0,
  weekLoad: 0 };

function setStatus(kind, text, retry) {
  const box = $("status");
  box.dataset.state = kind;
  box.replaceChildren(text);
  if (retry) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Retry";
    button.addEventListener("click", retry);
    box.appendChild(button);
  }
}

// Every failure ends here: one clear state, and the key form for 401/403.
function showError(error, retry) {
  if (!(error instanceof ApiError)) {
    setStatus("error", `Unexpected error: ${error.message}`, retry);
    throw error;
  }
  const form = $("key-form");
  if (error.kind === "auth") {
    setStatus("auth", error.status === 401 ? "An API key is needed." : "This API key was refused.");
    $("key-reason").textContent = `${error.where} answered ${error.status}: ${error.message}`;
    form.hidden = false;
    $("api-key").focus();
  } else if (error.kind === "no_model") {
    setStatus("no-model", `No model yet: ${error.message}. Publish one (make train, or make ` +
      "publish in the cloud), then retry.", retry);
  } else if (error.kind === "network") {
    setStatus("network", `Network error: ${error.message}.`, retry);
  } else {
    setStatus("error", `Error ${error.status}: ${error.message}`, retry);
  }
}

function hour() {
  return Number($("hour").value);
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function dayLabel(day) {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString("en-GB", { weekday: "short",
    day: "numeric", month: "short", timeZone: "UTC" });
}

// ---------------------------------------------------------------- the chosen day, all counters
async function loadDay() {
  const ticket = ++state.dayLoad;
  const day = $("date").value;
  if (!day || !state.counters.length) return;
  setStatus("loading", `Loading the forecast for ${dayLabel(day)}…`);
  const names = state.counters.map((c) => c.name);
  const recs = records(names, [day]);
  const [traffic, busy] = await Promise.all([predict(api.regress, recs), loadBusy(recs)]);
  if (ticket !== state.dayLoad) return; // a newer date was chosen meanwhile
  const perCounter = new Map();
  names.forEach((name, i) => {
    const slice = (a) => (a ? a.slice(i * 24, (i + 1) * 24) : null);
    perCounter.set(name, { values: slice(traffic.predictions), lower: slice(traffic.lower),
      upper: slice(traffic.upper), busy: busy ? slice(busy.predictions) : null });
  });
  state.day = { day, perCounter, busyAvailable: Boolean(busy),
    breaks: trafficBreaks(traffic.predictions), model: traffic.model };
  const note = busy ? "" : " Busy hours unavailable: classify is not configured or not reachable.";
  setStatus("ready", `Forecast for ${dayLabel(day)} by ${traffic.model.type} ` +
    `${traffic.model.version}.${note}`);
  recolour();
  if (state.selected) await showCounter(state.selected);
}

// classify's answers, or null when it is not configured or not reachable (the page
// still shows traffic); a wrong key there is the same problem as on regress.
async function loadBusy(recs) {
  if (!api.classify) return null;
  try {
    return await predict(api.classify, recs);
  } catch (error) {
    if (error instanceof ApiError && error.kind === "auth") throw error;
    return null;
  }
}

// The URL says what is shown, so a view can be bookmarked or sent (no key in it).
function remember() {
  const params = new URLSearchParams(location.search);
  params.set("date", $("date").value);
  params.set("hour", String(hour()));
  if (state.selected) params.set("counter", state.selected);
  history.replaceState(null, "", `?${params}`);
}

function recolour() {
  const h = hour();
  remember();
  $("hour-value").value = `${String(h).padStart(2, "0")}:00`;
  $("map-when").textContent = state.day ? `${dayLabel(state.day.day)}, ${h}:00` : "";
  if (!state.day) return;
  const values = new Map();
  const busy = new Map();
  for (const [name, p] of state.day.perCounter) {
    values.set(name, p.values[h]);
    if (p.busy) busy.set(name, p.busy[h]);
  }
  colourMarks($("map"), mode(), values, busy, state.day.breaks);
  drawLegend($("legend"), mode(), state.day.breaks, state.day.busyAvailable);
  if (state.selected) drawSelectedDay();
}

// ------------------------------------------------------------------------ one counter
function drawSelectedDay() {
  const counter = state.counters.find((c) => c.name === state.selected);
  const p = state.day.perCounter.get(state.selected);
  const usual = counter.usual[dayType(state.day.day, state.holidays)];
  drawDay($("day-chart"), { ...p, usual }, hour());
  drawChartLegend($("chart-legend"), Boolean(p.lower && p.upper), Boolean(p.busy));
  const total = Math.round(p.values.reduce((a, b) => a + b, 0));
  const busyHours = p.busy ? p.busy.map((b, h) => (b ? `${h}h` : "")).filter(Boolean) : [];
  $("detail-summary").textContent = `${dayLabel(state.day.day)}: ${total.toLocaleString("en")} ` +
    `bikes predicted (usually ${Math.round(usual.reduce((a, b) => a + b, 0)).toLocaleString("en")}` +
    ` on such a day); ${p.busy ? `busy hours: ${busyHours.join(", ") || "none"}` : "busy hours unknown"}.`;
}

async function showCounter(name) {
  state.selected = name;
  remember();
  $("counter-select").value = name;
  markSelected($("map"), name);
  $("detail-title").textContent = name;
  $("detail-panel").dataset.counter = name;
  if (!state.day) return;
  drawSelectedDay();
  const ticket = ++state.weekLoad;
  const days = Array.from({ length: 7 }, (_, i) => addDays(state.day.day, i + 1));
  const recs = records([name], days);
  try {
    const [traffic, busy] = await Promise.all([predict(api.regress, recs), loadBusy(recs)]);
    if (ticket !== state.weekLoad) return;
    drawWeek($("week"), days.map((day, i) => ({ day, label: dayLabel(day),
      values: traffic.predictions.slice(i * 24, (i + 1) * 24),
      busy: busy ? busy.predictions.slice(i * 24, (i + 1) * 24) : null })), pickDay);
  } catch (error) {
    showError(error, () => showCounter(name));
  }
}

function pickDay(day) {
  $("date").value = day;
  run(loadDay);
  $("date").focus();
}

// --------------------------------------------------------------------- models panel
async function loadModels() {
  const box = $("models");
  const rows = [];
  for (const [fn, base] of [["regress", api.regress], ["classify", api.classify]]) {
    if (!base) {
      rows.push([fn, "not configured (CLASSIFY_URL)", "", "", "", ""]);
      continue;
    }
    try {
      const [health, listed] = await Promise.all([call(base, "health").catch((e) => {
        if (e instanceof ApiError && e.kind === "no_model") return { models: [] };
        throw e;
      }), call(base, "models")]);
      const served = new Set(health.models.map((m) => m.version));
      if (!listed.models.length) rows.push([fn, "no model published yet", "", "", "", ""]);
      for (const m of listed.models) {
        const metrics = Object.entries(m.metrics).map(([k, v]) =>
          `${k} ${Number(v).toPrecision(4)}`).join(", ");
        const role = [served.has(m.version) ? "served" : "",
          listed.default && listed.default.version === m.version ? "default" : ""]
          .filter(Boolean).join(", ");
        rows.push([fn, m.model_type, m.version, role, `${m.trained_from} → ${m.trained_to}`, metrics]);
      }
    } catch (error) {
      const what = error instanceof ApiError ? `${error.kind}: ${error.message}` : error.message;
      rows.push([fn, `unavailable (${what})`, "", "", "", ""]);
    }
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of ["function", "type", "version", "", "trained on", "holdout metrics"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.function = r[0];
    for (const cell of r) tr.insertCell().textContent = cell;
  }
  box.replaceChildren(table);
}

// ---------------------------------------------------------------------------- start
async function run(step) {
  try {
    await step();
  } catch (error) {
    showError(error, () => run(step));
  }
}

async function start() {
  $("key-form").hidden = true;
  setStatus("loading", "Loading the counters…");
  const answer = await call(api.regress, "counters");
  state.counters = answer.counters;
  state.holidays = new Set(answer.public_holidays);
  if (!state.counters.some((c) => c.name === state.selected)) state.selected = null;
  const select = $("counter-select");
  select.replaceChildren(new Option("choose…", ""));
  for (const c of state.counters) select.appendChild(new Option(c.name, c.name));
  drawMap($("map"), state.counters, (name) => run(() => showCounter(name)));
  loadModels();
  await loadDay();
}

function wire() {
  const params = new URLSearchParams(location.search);
  const day = params.get("date") || "";
  $("date").value = /^\d{4}-\d{2}-\d{2}$/.test(day) ? day : todayInParis();
  if (/^([01]?\d|2[0-3])$/.test(params.get("hour") || "")) $("hour").value = params.get("hour");
  state.selected = params.get("counter");
  $("hour").addEventListener("input", recolour);
  $("date").addEventListener("change", () => run(loadDay));
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", recolour);
  }
  $("counter-select").addEventListener("change", (event) => {
    if (event.target.value) run(() => showCounter(event.target.value));
  });
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("api-key").value.trim());
    $("api-key").value = "";
    run(start);
  });
  recolour();
  run(start);
}

wire();
