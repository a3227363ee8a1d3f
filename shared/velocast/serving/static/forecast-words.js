// What the page says in words: dates, the day's error, the notes on far dates, what the
// models are, and the CSV of the shown day.

import { addDays } from "./forecast-api.js";

export const BUSY_MEANS = "Busy (classify's “forte”) means more bikes than this counter's " +
  "own average hour over the whole week; not busy (“faible”) means fewer. Most daytime " +
  "hours are busy, so “compared with usual” shows whether an hour is unusual.";
export const USUAL_MEANS = "Usual: this counter's typical count at that hour on the same " +
  "kind of day (working day, Saturday, or Sunday and public holiday) in the models' " +
  "training data.";

const MODEL_WORDS = { gbdt: "gradient-boosted trees", rf: "a random forest",
  nn: "a small neural network", affluence: "a busy-hour classifier" };

// "Tue 20 May 2025": a day is always a Paris day, written with its year.
export function dayLabel(day) {
  return new Date(`${day}T12:00:00Z`).toLocaleDateString("en-GB", { weekday: "short",
    day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
}

export function hourLabel(h) {
  return `${String(h).padStart(2, "0")}:00 Paris time`;
}

function daysBetween(a, b) {
  return Math.round((Date.parse(`${b}T00:00:00Z`) - Date.parse(`${a}T00:00:00Z`)) / 86400000);
}

// The notes a date deserves: past what the models were checked on, or past the
// published school calendar. [] when the forecast stands on checked ground.
export function farNotes(day, info) {
  const notes = [];
  const trainedTo = info.model && info.model.trained_to;
  const horizon = info.checked_horizon_days;
  if (trainedTo && horizon) {
    const ahead = daysBetween(trainedTo, day);
    if (ahead > horizon) {
      notes.push(`${dayLabel(day)} is ${ahead.toLocaleString("en")} days after the newest ` +
        `training data (${dayLabel(trainedTo)}); forecasts were checked up to ${horizon} days ` +
        "ahead. Read this as the usual pattern for such a day, not a forecast of events.");
    }
  }
  if (info.school_calendar_until && day >= info.school_calendar_until) {
    notes.push(`School holidays are published up to ${dayLabel(addDays(
      info.school_calendar_until, -1))}; for this date they are guessed.`);
  }
  return notes;
}

// "forecast 1,792, counted 1,650: 9 % high" over the hours that were counted.
export function errorInWords(values, measured) {
  const hours = measured.map((v, h) => (v === null ? null : h)).filter((h) => h !== null);
  if (!hours.length) return "no hour of this day was counted";
  const forecast = Math.round(hours.reduce((a, h) => a + values[h], 0));
  const counted = Math.round(hours.reduce((a, h) => a + measured[h], 0));
  const over = hours.length < 24 ? ` over the ${hours.length} counted hours` : "";
  if (!counted) return `forecast ${forecast.toLocaleString("en")}, counted 0${over}`;
  const error = Math.round((100 * (forecast - counted)) / counted);
  const side = error === 0 ? "on target" : `${Math.abs(error)} % ${error > 0 ? "high" : "low"}`;
  return `forecast ${forecast.toLocaleString("en")}, counted ${counted.toLocaleString("en")}` +
    `${over}: ${side}`;
}

// One sentence per function, in words; the raw metrics stay behind a toggle.
export function modelInWords(fn, model) {
  const what = MODEL_WORDS[model.model_type] || model.model_type;
  const data = `trained on counts from ${dayLabel(model.trained_from)} to ` +
    `${dayLabel(model.trained_to)}`;
  const m = model.metrics;
  if (fn === "regress") {
    const error = Number.isFinite(m.mae) ? `; typical error ±${Math.round(m.mae)} bikes/h ` +
      "on the recent days held out from training" : "";
    return `Bikes per hour: ${what}, ${data}${error}.`;
  }
  const right = Number.isFinite(m.accuracy) ? `; right about busy or not for ` +
    `${Math.round(100 * m.accuracy)} % of the held-out hours` : "";
  return `Busy or not: ${what}, ${data}${right}.`;
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// The shown day, every counter x 24 hours, as a data: URL (no blob: in the page's CSP).
export function dayCsv(day, perCounter, measured) {
  const rows = [["counter", "date", "hour_paris_time", "forecast", "lower_80", "upper_80",
    "usual", "busy", "counted"]];
  for (const [name, p] of perCounter) {
    const counted = measured && measured.name === name ? measured.values : null;
    for (let h = 0; h < 24; h++) {
      rows.push([name, day, `${String(h).padStart(2, "0")}:00`, p.values[h],
        p.lower ? p.lower[h] : "", p.upper ? p.upper[h] : "", p.usual[h],
        p.busy ? p.busy[h] : "", counted ? counted[h] : ""]);
    }
  }
  const text = rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
  return `data:text/csv;charset=utf-8,${encodeURIComponent(text)}`;
}
