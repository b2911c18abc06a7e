// The site map: the city's basemap, sites by their worst open incident, cameras, clusters, zoom and pan; a
// site's panel with its devices' chart buttons and cameras' latest frames.
import { $, LEVELS, api, el, esc, showError, state, throttled } from "./common.js";
import { clearChart } from "./charts.js";

// Events come in bursts: the map is redrawn 0.5 s after the last one, and never later than 2 s after the first
// (a steady stream of events must not hold it back for ever).
let held = false;  // a test holds the map still while it draws a city of its own
export const scheduleSites = throttled(() => { if (!held) loadSites().catch((err) => showError(err.message)); }, 500, 2000);
export function holdSites(on) { held = on; }

export async function loadSites() {
  const [list, layers] = await Promise.all([api("/api/sites"), basemap ? basemap : api("/api/basemap")]);
  state.sites = list;
  basemap = layers;
  drawMap();
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
        // a label stays in view when its area reaches beyond the map's edge
        el("text", { x: Math.max(Math.min(...xs), 0) + 4, y: Math.max(Math.min(...ys), 0) + 12, class: `label ${kind}` }, g).textContent = name;
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

export function drawMap() {
  const map = $("#map");
  map.replaceChildren();
  if (!state.sites.length) return;
  const W = 640, H = 420, pad = 30;
  const lats = state.sites.map((s) => s.lat), lons = state.sites.map((s) => s.lon);
  const view = mapView || around(Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons));
  const P = projection(view, W, H, pad);
  drawBasemap(map, P);
  const inView = state.sites.filter((s) => s.lat >= view[0] && s.lat <= view[1] && s.lon >= view[2] && s.lon <= view[3]);
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
  drawPin(map, P);
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

export function wireMapGestures() {
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

export function showSite(id, camera) {
  const s = state.sites.find((x) => x.id === id);
  if (!s) return;
  const panel = $("#site-panel");
  if (panel.dataset.site !== id) clearChart();  // the previous site's chart goes with it
  panel.dataset.site = id;
  const frames = (s.cameras || []).filter((c) => !camera || c.id === camera).map((c) =>
    `<figure class="latest-frame"><img alt="latest frame of ${esc(c.id)}" data-camera="${esc(c.id)}"
      src="/api/cameras/${encodeURIComponent(id)}/${encodeURIComponent(c.id)}/latest?token=${encodeURIComponent(state.token)}&t=${Date.now()}">
      <figcaption>${esc(c.kind)} camera ${esc(c.id)}, latest frame</figcaption></figure>`).join("");
  panel.innerHTML = `<h3>${esc(s.name)} — grid ${esc(s.grid)}, ${esc(s.town)}, ${esc(s.district)}</h3>
    ${s.devices.map((d) => d.metrics.map((m) => `<button data-device="${esc(d.id)}" data-metric="${esc(m)}">
      ${esc(d.id)} · ${esc(m)}</button>`).join("")).join("") || "<p>No devices configured.</p>"}${frames}`;
  panel.hidden = false;
  for (const img of panel.querySelectorAll("img[data-camera]")) {
    img.addEventListener("error", () => img.replaceWith(Object.assign(document.createElement("p"),
      { textContent: `no frame from ${img.dataset.camera} yet` })), { once: true });
  }
}

// Centre the map on a position (a reporter's, to the metre) and mark it.
export function centreOn(lat, lon, label = "") {
  const d = 0.004;  // some 450 m either way
  mapView = [lat - d, lat + d, lon - d, lon + d];
  pin = { lat, lon, label };
  drawMap();
  $("#map").scrollIntoView({ block: "nearest", behavior: "smooth" });
}
let pin = null;
function drawPin(map, P) {
  if (!pin) return;
  const x = P.px(pin.lon), y = P.py(pin.lat);
  const g = el("g", { class: "pin" }, map);
  el("path", { d: `M${x},${y} l-6,-14 a6.5,6.5 0 1,1 12,0 Z` }, g);
  el("title", {}, g).textContent = `${pin.label} ${pin.lat.toFixed(5)}, ${pin.lon.toFixed(5)}`;
}

export const mapState = { get view() { return mapView; }, set view(v) { mapView = v; } };

