// Calls to the two functions: the API key (sessionStorage only), chunked predictions,
// and errors sorted into the states the page shows.

const KEY = "velocast.apiKey";
// Requests stay under a function's MAX_RECORDS (10,000 by default; tests use less).
const CHUNK = 400;

function loopback(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" && ["localhost", "127.0.0.1"].includes(u.hostname);
  } catch (e) {
    return false;
  }
}

// regress: where this page came from. classify: the URL the server configured
// (CLASSIFY_URL), or a loopback ?classify= on a page itself served from loopback (never
// another host: the key goes there; the page's CSP enforces the same rule).
export function endpoints() {
  const regress = new URL(".", location.href).href;
  const asked = new URLSearchParams(location.search).get("classify");
  const configured = document.documentElement.dataset.classifyUrl || "";
  const classify = asked && loopback(asked) && loopback(location.href) ? asked : configured;
  return { regress, classify: classify ? classify.replace(/\/?$/, "/") : "" };
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// kind: "auth" (401/403), "no_model" (503), "network" (no answer), "http" (other).
export class ApiError extends Error {
  constructor(kind, status, message, where) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.where = where;
  }
}

// What a counter counted on a day (GET /counts), or null when this function cannot
// say (an older server without the route).
export async function measured(base, name, day) {
  const query = new URLSearchParams({ counter: name, date: day });
  try {
    return await call(base, `counts?${query}`);
  } catch (error) {
    if (error instanceof ApiError && error.kind === "http" && error.status === 404) return null;
    throw error;
  }
}

export async function call(base, path, body) {
  const headers = {};
  const key = getKey();
  if (key) headers["X-API-Key"] = key;
  const init = { method: body ? "POST" : "GET", headers, credentials: "omit", mode: "cors" };
  if (body) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const url = new URL(path, base).href;
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError("network", 0, `cannot reach ${url}`, base);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (response.ok) return data;
  const message = (data && data.error && data.error.message) || `HTTP ${response.status}`;
  const kind = response.status === 401 || response.status === 403 ? "auth"
    : response.status === 503 ? "no_model" : "http";
  throw new ApiError(kind, response.status, message, base);
}

// One record per (counter, local Paris hour): a timestamp without an offset is read
// as Europe/Paris by the service. Each carries the counter's coordinates, so a counter
// one function does not know is predicted from its nearest known ones (a warning)
// instead of failing its whole chunk with a 422.
export function records(counters, days) {
  const out = [];
  for (const c of counters) {
    const where = `${c.latitude}, ${c.longitude}`;
    for (const day of days) {
      for (let h = 0; h < 24; h++) {
        out.push({ nom_du_compteur: c.name, coordonnées_géographiques: where,
          date_et_heure_de_comptage: `${day}T${String(h).padStart(2, "0")}:00:00` });
      }
    }
  }
  return out;
}

// POST /predict in chunks; the answers' arrays concatenated in order.
export async function predict(base, recs) {
  const chunks = [];
  for (let i = 0; i < recs.length; i += CHUNK) chunks.push(recs.slice(i, i + CHUNK));
  const answers = await Promise.all(chunks.map((c) => call(base, "predict", { records: c })));
  const merged = { model: answers.length ? answers[0].model : null };
  for (const field of ["predictions", "lower", "upper", "probabilities", "label"]) {
    if (answers.length && answers.every((a) => Array.isArray(a[field]))) {
      merged[field] = answers.flatMap((a) => a[field]);
    }
  }
  return merged;
}

// Dates as "YYYY-MM-DD", computed in UTC so no local clock shifts them.
export function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

export function todayInParis() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/Paris", year: "numeric",
    month: "2-digit", day: "2-digit" }).format(new Date());
  return parts.slice(0, 10);
}

// 0 working day, 1 Saturday, 2 Sunday or public holiday (as the model card's profile).
export function dayType(day, holidays) {
  const weekday = new Date(`${day}T00:00:00Z`).getUTCDay();
  if (weekday === 0 || holidays.has(day)) return 2;
  return weekday === 6 ? 1 : 0;
}
