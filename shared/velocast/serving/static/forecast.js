// The forecast page: state, loading, the URL and history, the states shown to the person.

import { ApiError, addDays, call, dayType, endpoints, measured, predict, records, setKey,
  todayInParis } from "./forecast-api.js";
import { colourMarks, drawLegend, drawMap, markSelected } from "./forecast-map.js";
import { drawChartLegend, drawDay, drawWeek } from "./forecast-chart.js";
import { loadModels } from "./forecast-models.js";
import { BUSY_MEANS, USUAL_MEANS, dayCsv, dayLabel, errorInWords, farNotes,
  hourLabel } from "./forecast-words.js";

const $ = (id) => document.getElementById(id);
const api = endpoints();
const state = { counters: [], info: {}, holidays: new Set(), day: null, selected: null,
  measured: null, dayLoad: 0, weekLoad: 0, countsLoad: 0 };

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

const hour = () => Number($("hour").value);
const mode = () => document.querySelector('input[name="mode"]:checked').value;

function usualOf(counter, day) {
  return counter.usual[dayType(day, state.holidays)];
}

// ---------------------------------------------------------------- the chosen day, all counters
async function loadDay() {
  const ticket = ++state.dayLoad;
  const day = $("date").value;
  if (!day || !state.counters.length) return;
  setStatus("loading", `Loading the forecast for ${dayLabel(day)}…`);
  const notes = farNotes(day, state.info);
  $("far-note").hidden = !notes.length;
  $("far-note").textContent = notes.join(" ");
  const recs = records(state.counters, [day]);
  const [traffic, busy] = await Promise.all([predict(api.regress, recs), loadBusy(recs)]);
  if (ticket !== state.dayLoad) return; // a newer date was chosen meanwhile
  const perCounter = new Map();
  state.counters.forEach((c, i) => {
    const slice = (a) => (a ? a.slice(i * 24, (i + 1) * 24) : null);
    perCounter.set(c.name, { values: slice(traffic.predictions), lower: slice(traffic.lower),
      upper: slice(traffic.upper), busy: busy ? slice(busy.predictions) : null,
      usual: usualOf(c, day) });
  });
  state.day = { day, perCounter, busyAvailable: Boolean(busy) };
  state.measured = null;
  const note = busy ? "" : " Busy hours unavailable: classify is not configured or not reachable.";
  setStatus("ready", `Forecast for ${dayLabel(day)} (Paris time).${note}`);
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

// ------------------------------------------------------------------- URL and history
// The URL says what is shown, so a view can be bookmarked, sent, and gone back to
// (no key in it). A new date, counter or colouring is a history entry; the hour
// slider only updates the current one (one entry per step would bury Back).
function viewParams() {
  const params = new URLSearchParams(location.search);
  params.set("date", $("date").value);
  params.set("hour", String(hour()));
  params.set("mode", mode());
  if (state.selected) params.set("counter", state.selected);
  else params.delete("counter");
  return `?${params}`;
}

function remember(push) {
  const url = viewParams();
  if (url === location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function applyParams() {
  const params = new URLSearchParams(location.search);
  const day = params.get("date") || "";
  $("date").value = /^\d{4}-\d{2}-\d{2}$/.test(day) ? day : todayInParis();
  if (/^([01]?\d|2[0-3])$/.test(params.get("hour") || "")) $("hour").value = params.get("hour");
  const chosen = document.querySelector(`input[name="mode"][value="${params.get("mode")}"]`);
  (chosen || document.querySelector('input[name="mode"][value="traffic"]')).checked = true;
  state.selected = params.get("counter");
}

async function restore() {
  const before = { day: state.day && state.day.day, selected: state.selected };
  applyParams();
  if (!state.counters.length) return;
  if (!state.counters.some((c) => c.name === state.selected)) state.selected = null;
  if (!state.selected && before.selected) clearCounter();
  if ($("date").value !== before.day) return loadDay();
  recolour(false);
  if (state.selected) return showCounter(state.selected, false);
  clearCounter();
}

// ------------------------------------------------------------------------- colours
function recolour(push = false) {
  const h = hour();
  remember(push);
  $("hour-value").value = `${String(h).padStart(2, "0")}:00`;
  $("map-when").textContent = state.day ? `${dayLabel(state.day.day)}, ${hourLabel(h)}` : "";
  const m = mode();
  $("mode-help").textContent = m === "busy" ? BUSY_MEANS : m === "usual" ? USUAL_MEANS
    : "Predicted bikes per hour; the limits stay the same every day and hour.";
  if (!state.day) return;
  const at = new Map();
  for (const [name, p] of state.day.perCounter) {
    at.set(name, { value: p.values[h], usual: p.usual[h], busy: p.busy ? p.busy[h] : null });
  }
  colourMarks($("map"), m, at);
  drawLegend($("legend"), m, state.day.busyAvailable);
  if (state.selected) drawSelectedDay();
  updateCsv();
}

function updateCsv() {
  const link = $("csv-link");
  link.hidden = !state.day;
  if (!state.day) return;
  link.href = dayCsv(state.day.day, state.day.perCounter, state.measured);
  link.download = `velocast-${state.day.day}.csv`;
}

// ------------------------------------------------------------------------ one counter
function drawSelectedDay() {
  const p = state.day.perCounter.get(state.selected);
  const counted = state.measured && state.measured.name === state.selected &&
    state.measured.day === state.day.day ? state.measured.values : null;
  drawDay($("day-chart"), { ...p, measured: counted }, hour());
  const hasBand = Boolean(p.lower && p.upper);
  drawChartLegend($("chart-legend"), hasBand, Boolean(p.busy), Boolean(counted));
  $("band-help").hidden = !hasBand;
  const total = Math.round(p.values.reduce((a, b) => a + b, 0));
  const usual = Math.round(p.usual.reduce((a, b) => a + b, 0));
  const busyHours = p.busy ? p.busy.map((b, h) => (b ? `${h}h` : "")).filter(Boolean) : [];
  $("detail-panel").dataset.date = state.day.day;
  $("detail-summary").textContent = `${dayLabel(state.day.day)}: ${total.toLocaleString("en")} ` +
    `bikes forecast (usually ${usual.toLocaleString("en")} on such a day); ` +
    `${p.busy ? `busy hours: ${busyHours.join(", ") || "none"}` : "busy hours unknown"}.`;
}

function clearCounter() {
  state.selected = null;
  markSelected($("map"), null);
  $("counter-select").value = "";
  $("detail-title").textContent = "Choose a counter";
  delete $("detail-panel").dataset.counter;
  $("day-chart").replaceChildren();
  $("chart-legend").replaceChildren();
  $("week").replaceChildren();
  $("measured-note").hidden = true;
}

async function showCounter(name, push = true) {
  state.selected = name;
  remember(push);
  $("counter-select").value = name;
  markSelected($("map"), name);
  $("detail-title").textContent = name;
  $("detail-panel").dataset.counter = name;
  if (!state.day) return;
  drawSelectedDay();
  loadMeasured(name, state.day.day);
  const ticket = ++state.weekLoad;
  const days = Array.from({ length: 7 }, (_, i) => addDays(state.day.day, i + 1));
  const recs = records(state.counters.filter((c) => c.name === name), days);
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

// The measured hours for past days and today; the page says when none are stored.
async function loadMeasured(name, day) {
  const note = $("measured-note");
  const ticket = ++state.countsLoad;
  if (day > todayInParis()) {
    note.hidden = true;
    return;
  }
  let answer;
  try {
    answer = await measured(api.regress, name, day);
  } catch (error) {
    answer = { error: error.message };
  }
  if (ticket !== state.countsLoad) return;
  note.hidden = false;
  note.dataset.state = answer && answer.counts ? "counted" : "none";
  if (!answer || answer.error) {
    note.textContent = `Measured counts could not be read${answer ? `: ${answer.error}` : ""}.`;
  } else if (answer.counts) {
    state.measured = { name, day, values: answer.counts };
    note.textContent = `Counted on this day: ${errorInWords(
      state.day.perCounter.get(name).values, answer.counts)}.`;
    drawSelectedDay();
    updateCsv();
  } else {
    note.textContent = !answer.ingested ? "No measured counts are stored here (no ingest " +
      "has run: make ingest), so the forecast cannot be compared with this day."
      : `No measured counts are stored for this counter on ${dayLabel(day)}.`;
  }
}

function pickDay(day) {
  $("date").value = day;
  remember(true);
  run(loadDay);
  $("date").focus();
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
  state.info = answer;
  state.holidays = new Set(answer.public_holidays);
  if (!state.counters.some((c) => c.name === state.selected)) state.selected = null;
  const select = $("counter-select");
  select.replaceChildren(new Option("choose…", ""));
  for (const c of state.counters) select.appendChild(new Option(c.name, c.name));
  drawMap($("map"), state.counters, (name) => run(() => showCounter(name)));
  loadModels($("models"), api);
  await loadDay();
}

function wire() {
  applyParams();
  $("model-panel").open = window.matchMedia("(min-width: 900px)").matches;
  $("hour").addEventListener("input", () => recolour(false));
  $("date").addEventListener("change", () => {
    remember(true);
    run(loadDay);
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => recolour(true));
  }
  $("counter-select").addEventListener("change", (event) => {
    if (event.target.value) run(() => showCounter(event.target.value));
  });
  window.addEventListener("popstate", () => run(restore));
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("api-key").value.trim());
    $("api-key").value = "";
    run(start);
  });
  recolour(false);
  run(start);
}

wire();
