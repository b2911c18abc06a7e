// Grid reports: a person's report (by position, or a site chosen from the list when the phone gives no
// position), and the completion rate per tier.
import { $, api, esc, state } from "./common.js";
import { renderBoard, upsert } from "./board.js";

export async function loadCategories() {
  const form = $("#report-form");
  if (form.category.options.length) return;
  const cats = await api("/api/reports/categories");
  form.category.innerHTML = Object.entries(cats).map(([c, h]) => `<option value="${esc(c)}">${esc(c)} (${esc(h)})</option>`).join("");
}

// Every site a report can be filed at (reporters may list them too: a phone that denies its position still
// files at a site chosen by name).
export async function loadReportSites() {
  const form = $("#report-form");
  const list = await api("/api/report-sites");
  const known = new Set([...form.site.options].map((o) => o.value));
  for (const s of list) {
    if (!known.has(s.id)) form.site.insertAdjacentHTML("beforeend", `<option value="${esc(s.id)}">${esc(s.id)} ${esc(s.name)}${s.town ? ` (${esc(s.town)})` : ""}</option>`);
  }
  await positionAvailable();
}

// Where the browser will not give a position, the list is the way: say so before the first try fails.
async function positionAvailable() {
  const form = $("#report-form");
  const nearest = form.site.querySelector("option[value='']");
  let denied = !navigator.geolocation;
  try {
    if (!denied && navigator.permissions) denied = (await navigator.permissions.query({ name: "geolocation" })).state === "denied";
  } catch (_) { /* no permissions API: try when filing */ }
  if (denied) noPosition(nearest);
}
function noPosition(nearest) {
  const form = $("#report-form");
  nearest.textContent = "no position from this phone: choose the site";
  nearest.disabled = true;
  form.site.required = true;
  if (!form.site.value) form.site.value = "";
}

export async function loadReports() {
  const [done] = await Promise.all([api("/api/reports/completion"), loadCategories(), loadReportSites()]);
  $("#completion tbody").innerHTML = Object.entries(done).map(([tier, t]) => `<tr><td>${esc(tier)}</td>
    <td>${t.cases}</td><td>${t.resolved}</td><td>${(100 * t.completion).toFixed(1)} %</td></tr>`).join("");
}

function position() {
  return new Promise((resolve, reject) => {
    const fail = () => {
      noPosition($("#report-form").site.querySelector("option[value='']"));
      $("#report-form").site.focus();
      reject(new Error("no position from the browser: choose the site from the list, then Report again"));
    };
    if (!navigator.geolocation) { fail(); return; }
    // The browser's own timeout starts only once the position is allowed: a question nobody answers (or a
    // phone that never asks) would wait for ever.
    let done = false;
    const once = (fn) => (arg) => { if (!done) { done = true; fn(arg); } };
    setTimeout(once(fail), 8000);
    navigator.geolocation.getCurrentPosition(once((p) => resolve(p.coords)), once(fail), { timeout: 8000 });
  });
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1]);
    r.onerror = () => reject(new Error(`could not read ${file.name}`));
    r.readAsDataURL(file);
  });
}

export async function fileReport(form) {
  const body = { category: form.category.value, text: form.text.value };
  if (form.level.value) body.level = form.level.value;
  if (form.site.value) body.site = form.site.value;
  else {
    const c = await position();
    body.lat = c.latitude;
    body.lon = c.longitude;
  }
  if (form.photo.files.length) body.photo = await base64Of(form.photo.files[0]);
  const res = await api("/api/reports", { method: "POST", body: JSON.stringify(body) });
  for (const e of res.events) upsert(e);
  const cur = res.incident_id && state.incidents.get(res.incident_id);
  if (cur) cur.reported = true;
  const reporter = state.role === "reporter";
  $("#report-result").textContent = `report ${res.report_id} filed at ${res.site} (${res.hazard}, ${res.level})`
    + (res.incident_id && !reporter ? `: incident ${res.incident_id}` : "") + (res.note ? `; ${res.note}` : "");
  form.text.value = "";
  form.photo.value = "";
  if (reporter) return;
  renderBoard();
  await loadReports();
}
