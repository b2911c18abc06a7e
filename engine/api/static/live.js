// The live stream (server-sent events) and the watch on the engine: whether it answers and is ready (/readyz),
// when the page last had good contact with it, and when data last came in. A dead or unready engine turns the
// whole page into a banner state: the board greyed, every action disabled, the time of the last good contact.
import { $, age, api, hhmmss, now, state, utc } from "./common.js";

let stream = null;
let streamOpen = false;
let streamLostAt = null;   // when the stream last broke (page clock, ms)
let lastGood = null;       // when the engine last answered well (engine clock, s)
let readiness = null;      // /readyz's body, or null when it did not answer
let listeners = { incident: [], resync: [], change: [] };
const STREAM_GRACE_MS = 4000;  // a stream that reconnects within this is a blip, not a dead engine

export function on(kind, fn) { listeners[kind].push(fn); }

function setStatus(text, cls, title = "") {
  const pill = $("#status");
  pill.textContent = text;
  pill.className = `status ${cls}`;
  pill.title = title;
}

// What /readyz says is wrong, in words.
function whyUnready(r) {
  const parts = [];
  if (r.mqtt_connected === false) parts.push("no broker connection");
  if (r.store_ok === false) parts.push("the store is out (actions are held)");
  if (r.wedged) {
    const cams = r.camera_stage_running_s || 0, step = r.step_running_s || 0;
    parts.push(cams > step ? `the camera stage has been busy ${age(cams)}` : `a processing step has run ${age(step)}`);
  }
  if (r.fleet_silent) parts.push(`no reading from any device for ${age(r.seconds_since_last_reading)}`);
  if ((r.tasks_failing || []).length) parts.push(`failing: ${r.tasks_failing.join(", ")}`);
  if (r.checkpoint_error) parts.push("checkpoints fail");
  if ((r.detectors_failing || []).length) parts.push(`detectors failing: ${r.detectors_failing.join(", ")}`);
  return parts.join("; ") || "not ready";
}

// The engine's state from the stream and /readyz: live, unready (answers, 503) or down (no answer).
function judge() {
  const watching = state.role && state.role !== "reporter";
  const streamDown = watching && !streamOpen && streamLostAt !== null && Date.now() - streamLostAt > STREAM_GRACE_MS;
  let engine = "live";
  if (readiness === null || streamDown) engine = "down";
  else if (!readiness.ok) engine = "unready";
  const changed = engine !== state.engine;
  state.engine = engine;
  const contact = lastGood ? `last good contact ${hhmmss(lastGood)}` : "no contact yet";
  const banner = $("#banner");
  if (engine === "live") {
    if (watching && !streamOpen) setStatus("connecting…", "retry", contact);
    else setStatus(watching ? "live" : "connected", "live", contact);
    banner.hidden = true;
  } else {
    const what = engine === "down" ? "The engine does not answer" : `The engine is not ready: ${whyUnready(readiness)}`;
    banner.innerHTML = "";
    banner.append(Object.assign(document.createElement("strong"), { textContent: what }));
    banner.append(`. The board below may be out of date and actions are disabled until it is back; ${contact}` +
      (lastGood ? ` (${age(now() - lastGood)} ago)` : "") + ". Retrying by itself.");
    banner.className = `banner ${engine}`;
    banner.hidden = false;
    setStatus(engine === "down" ? "no contact" : "not ready", engine === "down" ? "down" : "retry", contact);
  }
  document.body.classList.toggle("engine-down", engine !== "live");
  for (const b of document.querySelectorAll("main button, main input[type=submit]")) b.disabled = engine !== "live";
  renderClock();
  if (changed) for (const fn of listeners.change) fn(engine);
}

export async function checkReady() {
  try {
    const res = await fetch("/readyz", { cache: "no-store" });
    readiness = await res.json();
    if (readiness.ok) lastGood = now();
  } catch (_) {
    readiness = null;
  }
  judge();
}

export function openStream() {
  if (stream) stream.close();
  stream = new EventSource(`/api/stream?token=${encodeURIComponent(state.token)}`);
  stream.addEventListener("incident", (msg) => {
    lastGood = now();
    const e = JSON.parse(msg.data);
    for (const fn of listeners.incident) fn(e);
  });
  stream.addEventListener("resync", () => { for (const fn of listeners.resync) fn(); });
  stream.onopen = () => {
    const wasDown = streamLostAt !== null;
    streamOpen = true;
    streamLostAt = null;
    checkReady();
    if (wasDown) for (const fn of listeners.resync) fn();  // what happened while it was away
  };
  stream.onerror = () => {
    streamOpen = false;
    if (streamLostAt === null) streamLostAt = Date.now();
    // EventSource retries by itself and errors again each time: once the engine is judged down the pill keeps
    // saying so (a retry's "reconnecting…" overwrote the banner's "no contact").
    if (state.engine === "down") judge();
    else setStatus("reconnecting…", "retry");
    setTimeout(judge, STREAM_GRACE_MS + 100);
  };
}

document.addEventListener("gridwatch:unreachable", () => { readiness = null; judge(); });
document.addEventListener("gridwatch:contact", () => { if (readiness && readiness.ok) lastGood = now(); });

// ---- a new RED: the tab's title says so until the page is looked at, and a short tone sounds ----------------

let unseenRed = 0;
export function alertRed(e) {
  unseenRed += 1;
  document.title = `(${unseenRed}) RED ${e.hazard} at ${e.site} — gridwatch`;
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.4);
  } catch (_) { /* no audio here: the title still says it */ }
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) { unseenRed = 0; document.title = "gridwatch"; }
});

// ---- the data clock: when data last came in --------------------------------------------------------------

let dataClock = null;

export async function loadStatus() {
  const s = await api("/api/status");
  state.clockOffset = s.now - Date.now() / 1000;
  state.zone = s.timezone || "UTC";
  dataClock = { received: s.last_received_at, reading: s.last_reading_ts };
  renderClock();
}

export function renderClock() {
  const pill = $("#last-data");
  if (!dataClock) return;
  if (dataClock.received == null) {
    pill.textContent = "no data received";
    pill.className = "status off";
    return;
  }
  const ago = Math.max(0, now() - dataClock.received);
  pill.textContent = `last data ${utc(dataClock.received)}, ${age(ago)} ago`;
  pill.title = `readings up to ${utc(dataClock.reading)} (their own time)`;
  // amber: nothing for a quarter of an hour; grey: the engine is not there to say
  pill.className = `status ${state.engine === "down" ? "off" : ago > 900 ? "retry" : "live"}`;
}
