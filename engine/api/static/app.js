// gridwatch operator page: the incident board (live over server-sent events), the site map, device
// charts with their detectors' thresholds, incident details, silences. Plain JavaScript, no libraries.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const LEVELS = ["blue", "yellow", "orange", "red"];
const COLOURS = { blue: "#1f6fd1", yellow: "#e0b400", orange: "#ef7d00", red: "#d4202a" };
const SVG = "http://www.w3.org/2000/svg";
const incidents = new Map();
let token = "";
let stream = null;
let sites = [];
let sitesTimer = null;

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? res.statusText);
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

function setStatus(text, cls) {
  const el = $("#status");
  el.textContent = text;
  el.className = `status ${cls}`;
}

// ---- the board -------------------------------------------------------------------------------------

function age(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.round(s / 60);  // round once, then split: never "1 d 24 h" or "2 h 60 min"
  if (m < 60) return `${m} min`;
  if (m < 24 * 60) return `${Math.floor(m / 60)} h ${m % 60} min`;
  const h = Math.round(s / 3600);
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// Every time on the page is in the city's time zone (config `timezone`, from /api/status) and says it.
let zone = "UTC";
function clockParts(ts) {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23", timeZoneName: "shortOffset",
  }).formatToParts(new Date(ts * 1000));
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  p.offset = p.timeZoneName.replace("GMT", "UTC");  // "UTC", "UTC+8"
  return p;
}
function utc(ts) {
  const p = clockParts(ts);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${p.offset}`;
}

function upsert(e) {
  const cur = incidents.get(e.incident_id) || {};
  incidents.set(e.incident_id, {
    ...cur,
    incident_id: e.incident_id, site: e.site, hazard: e.hazard, level: e.level, state: e.state,
    opened_at: e.opened_at, updated_at: e.updated_at, acknowledged_by: e.acknowledged_by,
    assigned_to: e.assigned_to, tier: e.tier || cur.tier,
    // what the newest event says of muting; dispatch and fusion's confirmation stay once they happened
    silenced_by: e.silenced_by || null, inhibited_by: e.inhibited_by || null,
    dispatched: cur.dispatched || e.action === "dispatched", confidence: e.confidence || cur.confidence,
    reported: cur.reported || e.reported || (e.findings || []).some((f) => f.detector === "grid_report"),
  });
}

function renderBoard() {
  const showResolved = $("#show-resolved").checked;
  const rows = [...incidents.values()]
    .filter((i) => showResolved || i.state !== "resolved")
    .sort((a, b) => (a.state === "resolved") - (b.state === "resolved")
      || LEVELS.indexOf(b.level) - LEVELS.indexOf(a.level) || b.updated_at - a.updated_at);
  const now = Date.now() / 1000;
  $("#board tbody").innerHTML = rows.map((i) => {
    const open = i.state !== "resolved";
    const buttons = [
      i.state === "firing" ? `<button data-act="ack">Acknowledge</button>` : "",
      open ? `<button data-act="assign">Assign</button>` : "",
      open ? `<button data-act="dispatch">Dispatch</button>` : "",
      open ? `<button data-act="resolve">Resolve</button>` : "",
    ].join("");
    return `<tr data-incident-id="${esc(i.incident_id)}" class="state-${esc(i.state)}">
      <td><span class="badge lvl-${esc(i.level)}">${esc(i.level)}</span></td><td>${esc(i.hazard)}</td>
      <td>${esc(i.site)}</td><td title="opened ${new Date(i.opened_at * 1000).toISOString()}">${age(now - i.opened_at)}</td>
      <td class="state">${esc(i.state)}${tags(i)}</td><td>${esc(i.tier || "")}</td><td class="acked">${esc(i.acknowledged_by || "")}</td>
      <td>${esc(i.assigned_to || "")}</td><td class="actions">${buttons}</td></tr>`;
  }).join("");
}

// Badges that tell a muted or special incident from a live one at a glance.
function tags(i) {
  const t = [];
  if (i.silenced_by) t.push(`<span class="tag silenced" title="silenced by ${esc(i.silenced_by)}: recorded, not sent">silenced</span>`);
  if (i.inhibited_by) t.push(`<span class="tag inhibited" title="inhibited by ${esc(i.inhibited_by)}">inhibited</span>`);
  if (i.dispatched) t.push(`<span class="tag dispatched" title="one-key dispatch sent">dispatched</span>`);
  if (i.reported) t.push(`<span class="tag reported" title="a person reported it: it stays open until a person resolves it">reported</span>`);
  if (i.confidence === "confirmed") t.push(`<span class="tag confirmed" title="confirmed by fusion of independent evidence">confirmed</span>`);
  return t.length ? ` ${t.join(" ")}` : "";
}

async function loadBoard() {
  const list = await api("/api/incidents?limit=500");
  incidents.clear();
  for (const inc of list) incidents.set(inc.incident_id, inc);
  renderBoard();
}

async function act(id, action) {
  let body = {};
  const inc = incidents.get(id) || {};
  const what = `${inc.level || ""} ${inc.hazard || ""} at ${inc.site || id}`;
  if (action === "assign") {
    const to = window.prompt(`Assign the ${what} to (person or crew)`);
    if (!to) return;
    body = { to };
  } else if (action === "dispatch" || action === "resolve" || action === "ack") {
    // Actions that reach people or end an incident are confirmed, with an optional comment for the audit trail.
    const verb = { dispatch: "Dispatch the plan for", resolve: "Resolve", ack: "Acknowledge" }[action];
    const comment = window.prompt(`${verb} the ${what}? Comment for the audit trail (optional):`, "");
    if (comment === null) return;  // cancelled
    if (action !== "dispatch") body = { comment };
  }
  const res = await api(`/api/incidents/${id}/${action}`, { method: "POST", body: JSON.stringify(body) });
  if (action === "dispatch") {
    const cur = incidents.get(id);
    if (cur) cur.dispatched = true;
    if (!res.events.length) window.alert("Every receiver of the plan has it already: nothing sent.");
  }
  for (const e of res.events) upsert(e);
  renderBoard();
  if ($("#detail").dataset.id === id) showDetail(id);
}

async function showDetail(id) {
  const inc = await api(`/api/incidents/${id}`);
  const box = $("#detail");
  box.dataset.id = id;
  const plan = inc.plan || {};
  const steps = (plan.steps || []).map((s) => `<li>${esc(s)}</li>`).join("");
  const checklist = (plan.checklist || []).map((s) => `<li>${esc(s)}</li>`).join("");
  const findings = inc.findings.map((f) => `<tr><td>${esc(f.detector)}</td><td>${esc(f.device)}</td>
    <td>${utc(f.ts)}</td><td><span class="badge lvl-${esc(f.level)}">${esc(f.level)}</span></td>
    <td>${f.score.toPrecision(3)}</td><td class="evidence">${esc(evidenceText(f.evidence))}</td></tr>`).join("");
  const fc = newestForecast(inc.findings);
  const audit = collapseReminders(inc.audit).map((a) => `<tr><td>${utc(a.at)}</td><td>${esc(a.actor)}</td>
    <td>${a.detail.level ? `<span class="badge lvl-${esc(a.detail.level)}">${esc(a.detail.level)}</span>` : ""}</td>
    <td>${esc(a.detail.assigned_to || "")}</td>
    <td>${esc(a.action)}${a.times > 1 ? ` ×${a.times} (to ${utc(a.last)})` : ""}</td>
    <td>${esc((a.detail.receivers || []).join(", "))}</td>
    <td>${esc(a.detail.comment || (a.detail.silenced_by ? `silenced by ${a.detail.silenced_by}` : "")
      || (a.detail.inhibited_by ? `inhibited by ${a.detail.inhibited_by}` : ""))}</td></tr>`).join("");
  box.innerHTML = `<h3><span class="badge lvl-${esc(inc.level)}">${esc(inc.level)}</span> ${esc(inc.hazard)} at ${esc(inc.site)}
      — ${esc(inc.state)}, confidence ${esc(inc.confidence)}</h3>
    ${fc ? `<p class="forecast">${esc(forecastText(fc, inc.updated_at))}</p>` : ""}
    <p>Route: ${esc((inc.route || []).join(" → "))}</p>
    ${plan.title ? `<h4>Plan: ${esc(plan.title)} (${esc(plan.role)})</h4><ol>${steps}</ol>
      ${checklist ? `<p>Checklist:</p><ul>${checklist}</ul>` : ""}` : ""}
    ${snapshots(inc.findings)}${reportPhotos(inc.findings)}
    <h4>Findings</h4><table><tr><th>detector</th><th>device</th><th>time</th><th>level</th><th>score</th><th>evidence</th></tr>${findings}</table>
    <h4>Audit trail</h4><table><tr><th>time</th><th>actor</th><th>level</th><th>assigned to</th><th>action</th><th>receivers</th><th>note</th></tr>${audit}</table>`;
  box.hidden = false;
}

// Reminders repeat every few minutes until someone acknowledges: one line per run of them.
function collapseReminders(audit) {
  const out = [];
  for (const a of audit) {
    const prev = out[out.length - 1];
    const same = prev && prev.action === "reminder" && a.action === "reminder"
      && (prev.detail.receivers || []).join() === (a.detail.receivers || []).join();
    if (same) {
      prev.times += 1;
      prev.last = a.at;
    } else out.push({ ...a, times: 1, last: a.at });
  }
  return out;
}

// A camera finding may carry its snapshot (an image URL or data: URL) and the detected region as
// fractions of the frame [x, y, w, h]; draw the frame with the region outlined.
function snapshots(findings) {
  return findings.filter((f) => f.evidence && f.evidence.snapshot).map((f) => {
    const [x, y, w, h] = f.evidence.region || [0, 0, 0, 0];
    return `<svg class="snapshot" viewBox="0 0 100 56.25" preserveAspectRatio="none" width="480">
      <image href="${esc(f.evidence.snapshot)}?token=${encodeURIComponent(token)}" x="0" y="0" width="100" height="56.25" preserveAspectRatio="none"/>
      <rect x="${x * 100}" y="${y * 56.25}" width="${w * 100}" height="${h * 56.25}" fill="none" stroke="red" stroke-width="0.6"/>
    </svg>`;
  }).join("");
}

// A grid report's photo, served by the engine (the token as ?token= for <img>).
function reportPhotos(findings) {
  return findings.filter((f) => f.evidence && f.evidence.photo).map((f) =>
    `<img class="report-photo" alt="photo reported by ${esc(f.device)}" title="${esc(f.evidence.text || "")}"
      src="${esc(f.evidence.photo)}?token=${encodeURIComponent(token)}">`).join("");
}

// ---- grid reports: a person's report, and the completion rate per tier ---------------------------------

async function loadCategories() {
  const form = $("#report-form");
  if (form.category.options.length) return;
  const cats = await api("/api/reports/categories");
  form.category.innerHTML = Object.entries(cats).map(([c, h]) => `<option value="${esc(c)}">${esc(c)} (${esc(h)})</option>`).join("");
}

async function loadReports() {
  const [, done] = await Promise.all([loadCategories(), api("/api/reports/completion")]);
  const form = $("#report-form");
  const known = new Set([...form.site.options].map((o) => o.value));
  for (const s of sites) if (!known.has(s.id)) form.site.insertAdjacentHTML("beforeend", `<option value="${esc(s.id)}">${esc(s.id)} ${esc(s.name)}</option>`);
  $("#completion tbody").innerHTML = Object.entries(done).map(([tier, t]) => `<tr><td>${esc(tier)}</td>
    <td>${t.cases}</td><td>${t.resolved}</td><td>${(100 * t.completion).toFixed(1)} %</td></tr>`).join("");
}

function position() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) reject(new Error("this browser gives no position: choose the site"));
    navigator.geolocation.getCurrentPosition((p) => resolve(p.coords),
      () => reject(new Error("no position from the browser: choose the site")), { timeout: 10000 });
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

async function fileReport(form) {
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
  const cur = res.incident_id && incidents.get(res.incident_id);
  if (cur) cur.reported = true;
  const reporter = document.body.classList.contains("reporter");
  $("#report-result").textContent = `report ${res.report_id} filed at ${res.site} (${res.hazard}, ${res.level})`
    + (res.incident_id && !reporter ? `: incident ${res.incident_id}` : "");
  if (reporter) return;
  renderBoard();
  form.text.value = "";
  form.photo.value = "";
  await loadReports();
}

// ---- live stream -----------------------------------------------------------------------------------

// A new RED: the tab's title says so until the page is looked at, and a short tone sounds (once the operator has
// interacted with the page, as browsers require).
let unseenRed = 0;
function alertRed(e) {
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

function openStream() {
  if (stream) stream.close();
  stream = new EventSource(`/api/stream?token=${encodeURIComponent(token)}`);
  stream.addEventListener("incident", (msg) => {
    const e = JSON.parse(msg.data);
    upsert(e);
    renderBoard();
    scheduleSites();
    if (e.level === "red" && (e.action === "fired" || e.action === "raised" || e.action === "reopened")) alertRed(e);
  });
  stream.addEventListener("resync", () => loadBoard().catch((err) => showError(err.message)));
  stream.onopen = () => setStatus("live", "live");
  stream.onerror = () => setStatus("reconnecting…", "retry");
}

// ---- the map ---------------------------------------------------------------------------------------

function scheduleSites() {
  clearTimeout(sitesTimer);
  sitesTimer = setTimeout(() => loadSites().catch((err) => showError(err.message)), 500);
}

async function loadSites() {
  const [list, layers] = await Promise.all([api("/api/sites"), basemap ? basemap : api("/api/basemap")]);
  sites = list;
  basemap = layers;
  drawMap();
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// The map: the city's own background layers (api.basemap, GeoJSON, served by the engine: no tiles from the
// internet), a scale bar and north arrow; sites drawn by the hazard of their worst open incident, coloured by
// its level; cameras beside their sites. Many sites (a city has thousands) are clustered on a 36-pixel grid:
// a cluster shows its count and worst level, and a click zooms into it.
let basemap = null;
let mapView = null;  // [lat0, lat1, lon0, lon1] when zoomed in, else null: the whole city
const CLUSTER_FROM = 150;  // sites in view above which nearby ones are clustered
const HAZARD_SHAPE = { landslide: "triangle", fire: "diamond", waterlogging: "drop", flood: "drop", rainstorm: "drop",
  device_fault: "square" };

function shapePath(shape, x, y, r) {
  if (shape === "triangle") return `M${x},${y - r * 1.2} L${x + r * 1.1},${y + r * 0.8} L${x - r * 1.1},${y + r * 0.8} Z`;
  if (shape === "diamond") return `M${x},${y - r * 1.25} L${x + r},${y} L${x},${y + r * 1.25} L${x - r},${y} Z`;
  if (shape === "square") return `M${x - r * 0.9},${y - r * 0.9} h${r * 1.8} v${r * 1.8} h${-r * 1.8} Z`;
  if (shape === "drop") return `M${x},${y - r * 1.3} Q${x + r * 1.2},${y + r * 0.2} ${x},${y + r} Q${x - r * 1.2},${y + r * 0.2} ${x},${y - r * 1.3} Z`;
  return `M${x - r},${y} a${r},${r} 0 1,0 ${2 * r},0 a${r},${r} 0 1,0 ${-2 * r},0`;
}

function projection(view, W, H, pad) {
  const [lat0, lat1, lon0, lon1] = view;
  const coslat = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
  const k = Math.min((W - 2 * pad) / Math.max((lon1 - lon0) * coslat, 1e-6), (H - 2 * pad) / Math.max(lat1 - lat0, 1e-6));
  const x0 = (W - (lon1 - lon0) * coslat * k) / 2, y0 = (H - (lat1 - lat0) * k) / 2;
  return { k, coslat, px: (lon) => x0 + (lon - lon0) * coslat * k, py: (lat) => H - y0 - (lat - lat0) * k,
    lon: (x) => lon0 + (x - x0) / (coslat * k), lat: (y) => lat0 + (H - y0 - y) / k };
}

function drawBasemap(map, P) {
  const g = el("g", { class: "basemap" }, map);
  const ring = (coords) => coords.map(([lon, lat], i) => `${i ? "L" : "M"}${P.px(lon).toFixed(1)},${P.py(lat).toFixed(1)}`).join(" ");
  for (const f of (basemap && basemap.features) || []) {
    const kind = (f.properties && f.properties.kind) || "other";
    const geom = f.geometry || {};
    const parts = geom.type === "Polygon" ? [geom.coordinates] : geom.type === "MultiPolygon" ? geom.coordinates : null;
    if (parts) {
      for (const poly of parts) el("path", { d: poly.map((r) => `${ring(r)} Z`).join(" "), class: `area ${kind}` }, g);
      const name = f.properties && f.properties.name;
      if (name && parts[0] && parts[0][0]) {
        const xs = parts[0][0].map(([lon]) => P.px(lon)), ys = parts[0][0].map(([, lat]) => P.py(lat));
        el("text", { x: Math.min(...xs) + 4, y: Math.min(...ys) + 12, class: `label ${kind}` }, g).textContent = name;
      }
    } else if (geom.type === "LineString" || geom.type === "MultiLineString") {
      const lines = geom.type === "LineString" ? [geom.coordinates] : geom.coordinates;
      for (const line of lines) el("path", { d: ring(line), class: `line ${kind}` }, g);
    }
  }
}

function drawScale(map, P, W, H) {
  const kmPerPx = 1 / (P.k / 111.32);  // degrees of latitude to km
  const want = kmPerPx * 120;
  const nice = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200].find((v) => v >= want / 2) || want;
  const len = nice / kmPerPx;
  const g = el("g", { class: "scale" }, map);
  el("path", { d: `M12,${H - 14} v6 h${len} v-6` }, g);
  el("text", { x: 12 + len + 6, y: H - 8 }, g).textContent = nice >= 1 ? `${nice} km` : `${nice * 1000} m`;
  el("path", { d: `M${W - 20},34 l-7,16 l7,-5 l7,5 Z`, class: "north" }, g);
  el("text", { x: W - 24, y: 28 }, g).textContent = "N";
}

function drawMap() {
  const map = $("#map");
  map.replaceChildren();
  if (!sites.length) return;
  const W = 640, H = 420, pad = 30;
  const lats = sites.map((s) => s.lat), lons = sites.map((s) => s.lon);
  const view = mapView || around(Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons));
  const P = projection(view, W, H, pad);
  drawBasemap(map, P);
  const inView = sites.filter((s) => s.lat >= view[0] && s.lat <= view[1] && s.lon >= view[2] && s.lon <= view[3]);
  const cell = 36;
  const bins = new Map();
  for (const s of inView) {
    const key = inView.length > CLUSTER_FROM ? `${Math.floor(P.px(s.lon) / cell)}:${Math.floor(P.py(s.lat) / cell)}` : s.id;
    if (!bins.has(key)) bins.set(key, []);
    bins.get(key).push(s);
  }
  const layer = el("g", { class: "sites" }, map);
  for (const members of bins.values()) {
    if (members.length > 1) {
      const worst = members.reduce((w, s) => (LEVELS.indexOf(s.worst) > LEVELS.indexOf(w) ? s.worst : w), null);
      const x = members.reduce((a, s) => a + P.px(s.lon), 0) / members.length;
      const y = members.reduce((a, s) => a + P.py(s.lat), 0) / members.length;
      const g = el("g", { class: "cluster", "data-count": members.length }, layer);
      el("circle", { cx: x, cy: y, r: 9 + 3 * Math.log10(members.length), class: `worst-${worst || "none"}` }, g);
      el("text", { x, y: y + 4, "text-anchor": "middle" }, g).textContent = members.length;
      const open = members.reduce((a, s) => a + s.open, 0);
      el("title", {}, g).textContent = `${members.length} sites, ${open} open incidents, worst ${worst || "none"}: click to zoom in`;
      g.addEventListener("click", () => zoomTo(members));
      continue;
    }
    const s = members[0];
    const x = P.px(s.lon), y = P.py(s.lat);
    const g = el("g", { class: "site", "data-site": s.id }, layer);
    const shape = s.worst ? (HAZARD_SHAPE[s.hazard] || "circle") : "circle";
    const c = el("path", { d: shapePath(shape, x, y, 8), class: `marker worst-${s.worst || "none"} shape-${shape}`, "data-site": s.id }, g);
    el("title", {}, c).textContent = `${s.name} (${s.town}, ${s.district}): ${s.worst ? `${s.worst} ${s.hazard}` : "no open incident"}`;
    el("text", { x: x + 11, y: y + 4 }, g).textContent = s.id;
    c.addEventListener("click", () => showSite(s.id));
    (s.cameras || []).forEach((cam, i) => {
      const cx = x - 16 - 13 * i, cy = y - 14;
      const m = el("g", { class: `camera ${cam.kind}`, "data-camera": `${s.id}/${cam.id}` }, g);
      el("rect", { x: cx - 5, y: cy - 4, width: 10, height: 8, rx: 1.5 }, m);
      el("circle", { cx, cy, r: 2.2 }, m);
      el("title", {}, m).textContent = `${cam.kind} camera ${cam.id}: click for its latest frame`;
      m.addEventListener("click", () => showSite(s.id, cam.id));
    });
  }
  drawScale(map, P, W, H);
  mapFrame = { P, W, H };
  $("#map-reset").hidden = !mapView;
}

// Zoom with the wheel or a pinch, pan by dragging (mouse, pen or finger: pointer events), about the point
// under the pointer. A drag is not a click on the site under it.
let mapFrame = null;
const pointers = new Map();
let dragged = false;

function svgPoint(ev) {
  const r = $("#map").getBoundingClientRect();
  return [(ev.clientX - r.left) * mapFrame.W / r.width, (ev.clientY - r.top) * mapFrame.H / r.height];
}

function zoomAt(x, y, factor) {
  const { P, W, H } = mapFrame;
  const [lat0, lat1, lon0, lon1] = [P.lat(H), P.lat(0), P.lon(0), P.lon(W)];
  const la = P.lat(y), lo = P.lon(x);
  mapView = [la - (la - lat0) / factor, la + (lat1 - la) / factor, lo - (lo - lon0) / factor, lo + (lon1 - lo) / factor];
  drawMap();
}

function panBy(dx, dy) {
  const { P, W, H } = mapFrame;
  const dlon = dx / (P.coslat * P.k), dlat = dy / P.k;
  mapView = [P.lat(H) + dlat, P.lat(0) + dlat, P.lon(0) - dlon, P.lon(W) - dlon];
  drawMap();
}

function wireMapGestures() {
  const map = $("#map");
  map.addEventListener("wheel", (ev) => {
    if (!mapFrame) return;
    ev.preventDefault();
    const [x, y] = svgPoint(ev);
    zoomAt(x, y, ev.deltaY < 0 ? 1.25 : 0.8);
  }, { passive: false });
  map.addEventListener("pointerdown", (ev) => {
    pointers.set(ev.pointerId, svgPoint(ev));
    dragged = false;
  });
  map.addEventListener("pointermove", (ev) => {
    if (!mapFrame || !pointers.has(ev.pointerId)) return;
    const before = new Map(pointers);
    const now = svgPoint(ev);
    pointers.set(ev.pointerId, now);
    if (pointers.size === 1) {
      const [px, py] = before.get(ev.pointerId);
      if (!dragged && Math.hypot(now[0] - px, now[1] - py) < 4) { pointers.set(ev.pointerId, [px, py]); return; }
      dragged = true;
      panBy(now[0] - px, now[1] - py);
    } else if (pointers.size === 2) {  // a pinch: the distance between the two fingers
      const [a, b] = [...before.values()], [c, d] = [...pointers.values()];
      const was = Math.hypot(a[0] - b[0], a[1] - b[1]), is = Math.hypot(c[0] - d[0], c[1] - d[1]);
      if (was > 0 && is > 0) {
        dragged = true;
        zoomAt((c[0] + d[0]) / 2, (c[1] + d[1]) / 2, is / was);
      }
    }
  });
  const up = (ev) => pointers.delete(ev.pointerId);
  map.addEventListener("pointerup", up);
  map.addEventListener("pointercancel", up);
  map.addEventListener("click", (ev) => { if (dragged) { ev.stopPropagation(); dragged = false; } }, true);
}

// A view around a set of sites: a margin of a sixth of their span (at least ~200 m) for labels and cameras.
function around(lat0, lat1, lon0, lon1) {
  const dl = Math.max(0.002, (lat1 - lat0) / 6), dn = Math.max(0.002, (lon1 - lon0) / 6);
  return [lat0 - dl, lat1 + dl, lon0 - dn, lon1 + dn];
}

function zoomTo(members) {
  const lats = members.map((s) => s.lat), lons = members.map((s) => s.lon);
  mapView = around(Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons));
  drawMap();
}

function showSite(id, camera) {
  const s = sites.find((x) => x.id === id);
  const panel = $("#site-panel");
  panel.dataset.site = id;
  const frames = (s.cameras || []).filter((c) => !camera || c.id === camera).map((c) =>
    `<figure class="latest-frame"><img alt="latest frame of ${esc(c.id)}" data-camera="${esc(c.id)}"
      src="/api/cameras/${encodeURIComponent(id)}/${encodeURIComponent(c.id)}/latest?token=${encodeURIComponent(token)}&t=${Date.now()}"
      onerror="this.replaceWith(Object.assign(document.createElement('p'), {textContent: 'no frame from ${esc(c.id)} yet'}))">
      <figcaption>${esc(c.kind)} camera ${esc(c.id)}, latest frame</figcaption></figure>`).join("");
  panel.innerHTML = `<h3>${esc(s.name)} — grid ${esc(s.grid)}, ${esc(s.town)}, ${esc(s.district)}</h3>
    ${s.devices.map((d) => d.metrics.map((m) => `<button data-device="${esc(d.id)}" data-metric="${esc(m)}">
      ${esc(d.id)} · ${esc(m)}</button>`).join("")).join("") || "<p>No devices configured.</p>"}${frames}`;
  panel.hidden = false;
}

// ---- charts ----------------------------------------------------------------------------------------

function plot(title, { series = [], hlines = [], xlog = false, ylog = false, xtime = true, xlabel = "", ylabel = "" }) {
  const W = 600, H = 220, L = 52, R = 12, T = 22, B = 30;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    el("text", { x: L, y: H / 2 }, svg).textContent = `${title}: no data yet`;
    return svg;
  }
  const fx = xlog ? Math.log10 : (v) => v, fy = ylog ? Math.log10 : (v) => v;
  const xs = pts.map((p) => fx(p[0])), ys = pts.map((p) => fy(p[1])).concat(hlines.map((h) => fy(h.y)));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const pad = (y1 - y0) * 0.08;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (v) => L + ((fx(v) - x0) / (x1 - x0)) * (W - L - R), Y = (v) => H - B - ((fy(v) - y0) / (y1 - y0)) * (H - T - B);
  el("text", { x: L, y: 14, class: "title" }, svg).textContent = title;
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, xv = x0 + ((x1 - x0) * i) / 4;
    const yy = H - B - ((yv - y0) / (y1 - y0)) * (H - T - B), xx = L + ((xv - x0) / (x1 - x0)) * (W - L - R);
    el("line", { x1: L, y1: yy, x2: W - R, y2: yy, class: "grid" }, svg);
    el("text", { x: 4, y: yy + 3 }, svg).textContent = fmt(ylog ? 10 ** yv : yv);
    const xval = xlog ? 10 ** xv : xv;
    el("text", { x: xx - 20, y: H - 10 }, svg).textContent = xtime ? new Date(xval * 1000).toISOString().slice(5, 16).replace("T", " ") : fmt(xval);
  }
  el("text", { x: W - R - 80, y: H - B - 4 }, svg).textContent = xlabel;
  el("text", { x: L + 4, y: T + 10 }, svg).textContent = ylabel;
  for (const h of hlines) {
    el("line", { x1: L, x2: W - R, y1: Y(h.y), y2: Y(h.y), stroke: h.color, "stroke-dasharray": "5 3", class: "threshold" }, svg);
    el("text", { x: W - R - 60, y: Y(h.y) - 3, fill: h.color }, svg).textContent = h.label;
  }
  for (const s of series) {
    if (s.bars) {
      for (const [x, y] of s.points) el("rect", { x: X(x) - 2, y: Y(y), width: 4, height: Math.max(0, H - B - Y(y)), fill: s.color }, svg);
    } else if (s.dots) {
      for (const [x, y] of s.points) el("circle", { cx: X(x), cy: Y(y), r: 3, fill: s.color }, svg);
    } else {
      el("polyline", { points: s.points.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), fill: "none", stroke: s.color,
        "stroke-width": 1.5, "stroke-dasharray": s.dash || "", class: s.cls || "" }, svg);
    }
  }
  return svg;
}

// The failure-time forecast as the detector stated it: "failure 07:10 UTC+8 (07:00–07:21), 1.1 h left".
function hhmm(ts) { const p = clockParts(ts); return `${p.hour}:${p.minute}`; }
function forecastText(fc, now) {
  const ci = fc.ci95 ? ` (${hhmm(fc.ci95[0])}–${hhmm(fc.ci95[1])})` : "";
  const left = (fc.failure_at - now) / 3600;
  const when = left > 0 ? `${left.toFixed(1)} h left` : "overdue";
  return `failure ${utc(fc.failure_at)}${ci}, ${when} ` +
    `(${fc.detector}, as of ${hhmm(fc.as_of)})`;
}
function newestForecast(findings) {
  const fs = findings.filter((f) => f.evidence && f.evidence.predicted_failure_ts).sort((a, b) => a.ts - b.ts);
  if (!fs.length) return null;
  const f = fs[fs.length - 1], ev = f.evidence;
  return { detector: f.detector, as_of: f.ts, failure_at: ev.predicted_failure_ts, ci95: ev.failure_ci95_ts };
}
// Evidence as words, not JSON: "velocity_per_day 13.2 · tangent_angle_deg 86.1".
function evidenceValue(k, v) {
  const time = (x) => utc(x);
  const isTime = k === "ts" || k.endsWith("_ts") || k.endsWith("_at");
  if (typeof v === "number") return isTime ? time(v) : fmt(v);
  if (Array.isArray(v)) return v.map((x) => evidenceValue(k, x)).join(isTime ? " – " : "; ");
  if (v && typeof v === "object") return Object.entries(v).map(([a, b]) => `${a} ${evidenceValue(a, b)}`).join(" ");
  return String(v);
}
function evidenceText(ev) {
  return Object.entries(ev || {}).filter(([k]) => !["snapshot", "region", "photo", "report_id"].includes(k))
    .map(([k, v]) => `${k} ${evidenceValue(k, v)}`).join(" · ");
}

function fmt(v) {
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.1 ? v.toFixed(2) : v.toPrecision(2);
}

async function loadChart(site, device, metric) {
  const c = await api(`/api/sites/${encodeURIComponent(site)}/devices/${encodeURIComponent(device)}/chart?metric=${encodeURIComponent(metric)}`);
  const box = $("#chart");
  box.replaceChildren();
  box.dataset.device = `${site}/${device}/${metric}`;
  const readings = c.ts.map((t, i) => [t, c.values[i]]);
  if (c.kind === "rain") {
    box.append(plot(`${device}: hourly rain (mm)`, { series: [{ points: c.hourly, color: "#1f6fd1", bars: true }] }));
    if (c.durations_h) {
      const curves = Object.entries(c.threshold_mm_h).map(([lvl, ys]) => ({ points: c.durations_h.map((d, i) => [d, ys[i]]), color: COLOURS[lvl] }));
      const storm = c.method === "storm";
      const observed = storm ? (c.storm ? [[Math.max(c.storm.duration_h, 0.01), Math.max(c.storm.intensity_mm_h, 0.01)]] : [])
        : c.durations_h.map((d, i) => [d, Math.max(c.observed_mm_h[i], 0.01)]);
      const title = storm ? (c.storm ? `${c.detector}: the current storm (${fmt(c.storm.duration_h)} h at ${fmt(c.storm.intensity_mm_h)} mm/h) vs. I–D threshold by level`
        : `${c.detector}: no storm now; I–D threshold by level`)
        : `${c.detector}: mean intensity over D ending now vs. I–D threshold by level`;
      box.append(plot(title, {
        series: [...curves, { points: observed, color: "#111", dots: true }], xlog: true, ylog: true, xtime: false,
        xlabel: "duration D (h)", ylabel: "mm/h" }));
    }
  } else if (c.kind === "slope") {
    box.append(plot(`${device}: ${metric}`, { series: [{ points: readings, color: "#334155" }] }));
    const levels = Object.entries(c.velocity_levels || {}).map(([lvl, y]) => ({ y, color: COLOURS[lvl], label: `${lvl} ${y}/d` }));
    const fired = c.fired ? ` — ${c.fired.level.toUpperCase()} at ${hhmm(c.fired.ts)}: velocity ${fmt(c.fired.velocity_per_day)}/d` +
      (c.fired.tangent_angle_deg != null ? `, tangent angle ${fmt(c.fired.tangent_angle_deg)}°` : "") : "";
    box.append(plot(`${c.detector}: velocity (per day) and its levels${fired}`, { series: [{ points: c.velocity_per_day, color: "#0f766e" }], hlines: levels }));
    if (c.inverse_velocity.length) {
      const series = [{ points: c.inverse_velocity, color: "#7c3aed", dots: true }];
      if (c.forecast) {
        const first = c.inverse_velocity.find((p) => p[0] >= c.forecast.fit_from) || c.inverse_velocity[0];
        series.push({ points: [first, [c.forecast.failure_at, 0]], color: COLOURS.red, dash: "6 4", cls: "forecast" });
      }
      const title = c.forecast ? `inverse velocity — ${forecastText(c.forecast, c.forecast.as_of)}`
        : "inverse velocity (days per unit); no forecast from the detector";
      box.append(plot(title, { series }));
    }
  } else {
    box.append(plot(`${device}: ${metric}`, { series: [{ points: readings, color: "#334155" }] }));
  }
}

// ---- silences --------------------------------------------------------------------------------------

async function loadSilences() {
  const list = await api("/api/silences");
  $("#silences tbody").innerHTML = list.map((s) => {
    const match = ["site", "hazard", "device", "level"].filter((k) => s[k]).map((k) => `${k}=${s[k]}`).join(" ") || "everything";
    const window = s.cron ? `${s.cron} for ${s.duration_s / 3600} h (${s.timezone})`
      : `${utc(s.starts_at)} → ${s.ends_at ? utc(s.ends_at) : "∞"}`;
    return `<tr data-silence-id="${esc(s.id)}"><td>${esc(match)}</td><td>${esc(window)}</td><td>${esc(s.created_by)}</td>
      <td>${esc(s.comment)}</td><td>${s.created_by === "config" ? '<span class="tag" title="change it in the config file">config</span>'
        : `<button data-expire="${esc(s.id)}">Expire</button>`}</td></tr>`;
  }).join("");
}

async function createSilence(form) {
  const data = Object.fromEntries(new FormData(form));
  const body = { comment: data.comment || "", for_s: Number(data.hours) * 3600 };
  for (const k of ["site", "hazard", "device", "level"]) if (data[k]) body[k] = data[k];
  await api("/api/silences", { method: "POST", body: JSON.stringify(body) });
  form.reset();
  await loadSilences();
}

// ---- the data clock: when data last came in ----------------------------------------------------------

let dataClock = null;  // the engine's answer, with the offset of its clock from the page's

async function loadStatus() {
  const s = await api("/api/status");
  dataClock = { received: s.last_received_at, reading: s.last_reading_ts, offset: s.now - Date.now() / 1000 };
  zone = s.timezone || "UTC";
  renderClock();
}

function renderClock() {
  const el = $("#last-data");
  if (!dataClock) return;
  if (dataClock.received == null) {
    el.textContent = "no data received";
    el.className = "status off";
    return;
  }
  const ago = Math.max(0, Date.now() / 1000 + dataClock.offset - dataClock.received);
  el.textContent = `last data ${utc(dataClock.received)}, ${ago < 60 ? `${Math.round(ago)} s` : age(ago)} ago`;
  el.title = `readings up to ${utc(dataClock.reading)} (their own time)`;
  el.className = `status ${ago > 900 ? "retry" : "live"}`;  // amber: nothing for a quarter of an hour
}

// ---- wiring ----------------------------------------------------------------------------------------

function guard(fn) {
  return (...args) => Promise.resolve(fn(...args)).then(() => showError("")).catch((err) => showError(err.message));
}

async function connect() {
  // A viewer's token reads; the page shows a viewer no buttons it could not use.
  const me = await api("/api/me");
  document.body.classList.toggle("viewer", me.role !== "operator");
  document.body.classList.toggle("reporter", me.role === "reporter");
  $("#whoami").textContent = `${me.name} (${me.role})`;
  if (me.role === "reporter") {  // a grid worker's or a resident's token: the report form only
    await loadCategories();
    return;
  }
  await loadStatus();  // the city's time zone first: every time on the page is shown in it
  await loadBoard();
  await Promise.all([loadSites(), loadSilences()]);
  await loadReports();
  openStream();
}

document.addEventListener("DOMContentLoaded", () => {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  token = fromLink || localStorage.getItem("gridwatch-token") || "";
  // A token that came in the link leaves the address bar (and the history, a shared screen, a screenshot) at once.
  // It is kept as a typed one is, so a reload stays signed in.
  if (fromLink) {
    history.replaceState(null, "", location.pathname + location.search);
    localStorage.setItem("gridwatch-token", fromLink);
  }
  $("#token").value = token;
  $("#login").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    token = $("#token").value.trim();
    localStorage.setItem("gridwatch-token", token);
    await connect();
  }));
  $("#show-resolved").addEventListener("change", renderBoard);
  $("#board tbody").addEventListener("click", guard(async (ev) => {
    const row = ev.target.closest("tr[data-incident-id]");
    if (!row) return;
    const action = ev.target.dataset.act;
    if (action) await act(row.dataset.incidentId, action);
    else await showDetail(row.dataset.incidentId);
  }));
  $("#map-reset").addEventListener("click", () => { mapView = null; drawMap(); });
  wireMapGestures();
  $("#site-panel").addEventListener("click", guard(async (ev) => {
    const b = ev.target.closest("button[data-device]");
    if (b) await loadChart($("#site-panel").dataset.site, b.dataset.device, b.dataset.metric);
  }));
  $("#silences tbody").addEventListener("click", guard(async (ev) => {
    const id = ev.target.dataset.expire;
    if (id) {
      await api(`/api/silences/${id}`, { method: "DELETE" });
      await loadSilences();
    }
  }));
  $("#report-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await fileReport(ev.target);
  }));
  $("#silence-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await createSilence(ev.target);
  }));
  setInterval(renderBoard, 30000);  // ages move on
  setInterval(renderClock, 1000);
  setInterval(() => { if (dataClock) loadStatus().catch(() => {}); }, 10000);
  if (token) guard(connect)();
});
