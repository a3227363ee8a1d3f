// The models panel: what serves each function in plain words, every published version
// with its raw holdout metrics behind a toggle.

import { ApiError, call } from "./forecast-api.js";
import { modelInWords } from "./forecast-words.js";

function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.function = r[0];
    for (const cell of r) tr.insertCell().textContent = cell;
  }
  const wrap = document.createElement("div");
  wrap.className = "table-wrap";  // scrolls by itself: never widens the page
  wrap.tabIndex = 0;
  wrap.setAttribute("role", "region");
  wrap.setAttribute("aria-label", "Published model versions");
  wrap.appendChild(t);
  return wrap;
}

export async function loadModels(box, api) {
  const words = [];
  const rows = [];
  for (const [fn, base] of [["regress", api.regress], ["classify", api.classify]]) {
    if (!base) {
      words.push(`Busy or not: classify is not configured here (CLASSIFY_URL).`);
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
      if (listed.default) words.push(modelInWords(fn, listed.default));
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
      words.push(`${fn}: unavailable (${what}).`);
      rows.push([fn, `unavailable (${what})`, "", "", "", ""]);
    }
  }
  const list = document.createElement("ul");
  list.id = "model-words";
  for (const w of words) list.appendChild(document.createElement("li")).textContent = w;
  const raw = document.createElement("details");
  raw.id = "raw-metrics";
  const summary = document.createElement("summary");
  summary.textContent = "Every published version and its raw holdout metrics";
  raw.append(summary, table(["function", "type", "version", "role", "trained on",
    "holdout metrics"], rows));
  box.replaceChildren(list, raw);
}
