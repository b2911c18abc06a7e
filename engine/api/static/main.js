// gridwatch operator page: signs in, loads every view, and wires the live stream to them. Plain JavaScript
// modules, no libraries and no build step: board.js (the incident board), incident.js (an incident's detail),
// map.js (the site map), charts.js (device charts), reports.js (grid reports), silences.js, live.js (the
// stream and the watch on the engine), common.js (what they share).
import { $, api, showError, state } from "./common.js";
import { act, loadBoard, renderBoard, scheduleBoardExtras, tickBoard, upsert } from "./board.js";
import { loadChart } from "./charts.js";
import { showDetail } from "./incident.js";
import { alertRed, checkReady, loadStatus, on, openStream, renderClock } from "./live.js";
import { centreOn, drawMap, holdSites, loadSites, mapState, scheduleSites, wireMapGestures } from "./map.js";
import { fileReport, loadCategories, loadReports, loadReportSites } from "./reports.js";
import { createSilence, expireSilence, loadSilences, schedulePreview } from "./silences.js";

function guard(fn) {
  return (...args) => Promise.resolve(fn(...args)).then(() => showError("")).catch((err) => showError(err.message));
}

async function connect() {
  // A viewer's token reads; the page shows a viewer no buttons it could not use.
  const me = await api("/api/me");
  state.role = me.role;
  document.body.classList.toggle("viewer", me.role !== "operator");
  document.body.classList.toggle("reporter", me.role === "reporter");
  $("#whoami").textContent = `${me.name} (${me.role})`;
  await checkReady();
  if (me.role === "reporter") {  // a grid worker's or a resident's token: the report form only
    await Promise.all([loadCategories(), loadReportSites()]);
    return;
  }
  await loadStatus();  // the city's time zone first: every time on the page is shown in it
  await loadBoard();
  await Promise.all([loadSites(), loadSilences()]);
  await loadReports();
  openStream();
  if (state.openIncident) {
    const id = state.openIncident;
    state.openIncident = "";
    await showDetail(id);
    $("#detail").scrollIntoView();
  }
}

on("incident", (e) => {
  upsert(e);
  renderBoard();
  scheduleBoardExtras();
  scheduleSites();
  if (e.level === "red" && (e.action === "fired" || e.action === "raised" || e.action === "reopened")) alertRed(e);
});
on("resync", () => loadBoard().catch((err) => showError(err.message)));
on("change", (engine) => {
  renderBoard();
  if (engine === "live") {
    showError("");
    loadStatus().catch(() => {});
  }
});

// What a test (or a curious operator's console) may reach; the page works without it.
window.gridwatch = { state, map: { draw: drawMap, hold: holdSites, view: mapState, schedule: scheduleSites }, renderBoard };

document.addEventListener("DOMContentLoaded", () => {
  const linked = new URLSearchParams(location.hash.slice(1));
  const fromLink = linked.get("token");
  // A message to a person (SMS, e-mail, chat) links to its incident: #incident=<id> opens it once signed in.
  const linkedIncident = linked.get("incident") || "";
  state.openIncident = /^[A-Za-z0-9_-]{1,64}$/.test(linkedIncident) ? linkedIncident : "";
  state.token = fromLink || localStorage.getItem("gridwatch-token") || "";
  // A token that came in the link leaves the address bar (and the history, a shared screen, a screenshot) at once.
  // It is kept as a typed one is, so a reload stays signed in.
  if (fromLink) {
    history.replaceState(null, "", location.pathname + location.search);
    localStorage.setItem("gridwatch-token", fromLink);
  }
  $("#token").value = state.token;
  $("#login").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("gridwatch-token", state.token);
    await connect();
  }));
  $("#show-resolved").addEventListener("change", renderBoard);
  $("#board tbody").addEventListener("click", guard(async (ev) => {
    const row = ev.target.closest("tr[data-incident-id]");
    if (!row) return;
    const action = ev.target.dataset.act;
    if (action) {
      await act(row.dataset.incidentId, action);
      if ($("#detail").dataset.id === row.dataset.incidentId) await showDetail(row.dataset.incidentId);
    } else await showDetail(row.dataset.incidentId);
  }));
  $("#detail").addEventListener("click", (ev) => {
    const a = ev.target.closest("a.locate");
    if (!a) return;
    ev.preventDefault();
    centreOn(Number(a.dataset.lat), Number(a.dataset.lon), "reported here");
  });
  $("#map-reset").addEventListener("click", () => { mapState.view = null; drawMap(); });
  wireMapGestures();
  $("#site-panel").addEventListener("click", guard(async (ev) => {
    const b = ev.target.closest("button[data-device]");
    if (b) await loadChart($("#site-panel").dataset.site, b.dataset.device, b.dataset.metric);
  }));
  $("#silences tbody").addEventListener("click", guard(async (ev) => {
    const id = ev.target.dataset.expire;
    if (id) await expireSilence(id);
  }));
  $("#report-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await fileReport(ev.target);
  }));
  $("#silence-form").addEventListener("input", schedulePreview);
  $("#silence-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await createSilence(ev.target);
  }));
  setInterval(tickBoard, 5000);  // ages and countdowns move on
  setInterval(renderClock, 1000);
  setInterval(() => { if (state.role) checkReady(); }, 5000);
  setInterval(() => { if (state.role && state.role !== "reporter") loadStatus().catch(() => {}); }, 10000);
  if (state.token) guard(connect)();
});
