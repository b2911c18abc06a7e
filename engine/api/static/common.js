// What every view of the operator page shares: the state, the API client, times in the city's zone, numbers.

export const $ = (sel, el = document) => el.querySelector(sel);
export const LEVELS = ["blue", "yellow", "orange", "red"];
export const COLOURS = { blue: "#1f6fd1", yellow: "#e0b400", orange: "#ef7d00", red: "#d4202a" };
export const SVG = "http://www.w3.org/2000/svg";

// One object, so that every module (and a test, through window.gridwatch) sees the same values.
export const state = {
  token: "",
  role: null,
  incidents: new Map(),  // incident id → the newest event of it
  board: new Map(),      // incident id → what /api/board says beside it (time to act, confirmation, muting)
  sites: [],
  zone: "UTC",           // the city's time zone (config `timezone`, from /api/status)
  clockOffset: 0,        // the engine's clock minus the page's, in seconds
  engine: "unknown",     // live | unready | down | unknown: see live.js
  openIncident: "",      // the incident a link in a message names (#incident=<id>): shown once signed in
};

export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

// The engine's answer, or an Error that says what happened in words. A request that reaches no engine (the
// browser's bare "Failed to fetch") is told to the connection watch (live.js), which turns the page grey.
export class Unreachable extends Error {}
export async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...options,
      headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json", ...(options.headers || {}) },
    });
  } catch (_) {
    document.dispatchEvent(new CustomEvent("gridwatch:unreachable"));
    throw new Unreachable("the engine does not answer: nothing was changed; the page retries by itself");
  }
  document.dispatchEvent(new CustomEvent("gridwatch:contact"));
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? res.statusText);
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

// The engine's clock now (its answers carry its time; the page's clock may be off).
export const now = () => Date.now() / 1000 + state.clockOffset;

// Call ``fn`` at most every ``waitMs``; a burst of calls runs it once at the end of the wait, never later than
// ``maxWaitMs`` after the first call of the burst (a debounce that a steady stream of events cannot starve).
export function throttled(fn, waitMs, maxWaitMs) {
  let timer = null, first = 0;
  const run = () => { timer = null; first = 0; fn(); };
  return () => {
    const t = Date.now();
    if (!first) first = t;
    clearTimeout(timer);
    timer = setTimeout(run, Math.max(0, Math.min(waitMs, first + maxWaitMs - t)));
  };
}

// ---- times: every time on the page is in the city's zone and says it --------------------------------------

export function clockParts(ts) {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: state.zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "shortOffset",
  }).formatToParts(new Date(ts * 1000));
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  p.offset = p.timeZoneName.replace("GMT", "UTC");  // "UTC", "UTC+8"
  return p;
}
// Seconds the city's clock is ahead of UTC at ``ts`` (+28800 in Chongqing).
export function zoneOffset(ts) {
  const p = clockParts(ts);
  const local = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000;
  return Math.round((local - Math.floor(ts)) / 60) * 60;
}
export function utc(ts) {
  const p = clockParts(ts);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${p.offset}`;
}
export function hhmm(ts) { const p = clockParts(ts); return `${p.hour}:${p.minute}`; }
export function hhmmss(ts) { const p = clockParts(ts); return `${p.hour}:${p.minute}:${p.second}`; }

// A duration in words: "45 s", "12 min", "1 h 30 min", "2 d 3 h".
export function age(seconds) {
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.round(s / 60);  // round once, then split: never "1 d 24 h" or "2 h 60 min"
  if (m < 60) return `${m} min`;
  if (m < 24 * 60) return `${Math.floor(m / 60)} h ${m % 60} min`;
  const h = Math.round(s / 3600);
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function fmt(v) {
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.1 ? v.toFixed(2) : a === 0 ? "0" : v.toPrecision(2);
}

// A metric's unit from its name's suffix (DESIGN.md: the suffix is the unit).
const UNITS = [["_mm_h", "mm/h"], ["_per_day", "/day"], ["_per_min", "/min"], ["_mm", "mm"], ["_deg", "°"],
  ["_pct", "%"], ["_kpa", "kPa"], ["_m", "m"], ["_c", "°C"], ["_px", "px"], ["_s", "s"], ["_h", "h"]];
export function unitOf(name) {
  const hit = UNITS.find(([suffix]) => String(name).endsWith(suffix));
  return hit ? hit[1] : "";
}

export function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
