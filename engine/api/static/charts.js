// Device charts with their detectors' thresholds: times in the city's zone on round ticks, values with units,
// the rain axis never below zero, the inverse-velocity fit drawn only over its fit window.
import { $, COLOURS, api, clockParts, el, fmt, unitOf, zoneOffset } from "./common.js";

const tick = (v) => String(+v.toPrecision(4));  // a round tick says 10, not 10.0
import { forecastText } from "./incident.js";

// Round steps: 1, 2 or 5 times a power of ten, giving about ``count`` ticks over [lo, hi].
export function niceTicks(lo, hi, count = 5) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

// Time ticks on round local times of the city (whole hours, midnights), whatever UTC says.
const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
export function timeTicks(t0, t1, count = 5) {
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
  const off = zoneOffset(t0);
  const out = [];
  for (let local = Math.ceil((t0 + off) / step) * step; local - off <= t1; local += step) out.push(local - off);
  return { ticks: out, step };
}
function timeLabel(ts, step, first) {
  const p = clockParts(ts);
  if (step >= 86400) return `${p.month}-${p.day}`;
  return first || (p.hour === "00" && p.minute === "00") ? `${p.month}-${p.day} ${p.hour}:${p.minute}` : `${p.hour}:${p.minute}`;
}
function logTicks(lo, hi) {  // lo, hi in log10 units
  const out = [];
  const mults = hi - lo < 1.5 ? [1, 2, 5] : [1];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of mults) {
    const v = Math.log10(m) + e;
    if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v);
  }
  return out;
}

/** ``text`` in lines of at most ``width`` characters, broken between words (at most three lines). */
export function wrap(text, width) {
  const lines = [];
  for (const word of String(text).split(" ")) {
    const last = lines.length ? lines[lines.length - 1] : null;
    if (last !== null && (last + " " + word).length <= width) lines[lines.length - 1] = last + " " + word;
    else lines.push(word);
  }
  if (lines.length > 3) lines.splice(2, lines.length - 2, lines.slice(2).join(" "));
  return lines.length ? lines : [""];
}

export function plot(title, { series = [], hlines = [], xlog = false, ylog = false, xtime = true, xlabel = "", ylabel = "",
  yfloor = null }) {
  // A long title (a forecast, a threshold's reason) wraps onto more lines above the plot, never cut off.
  const lines = wrap(title, 88);
  const W = 600, H = 220 + 14 * (lines.length - 1), L = 52, R = 12, T = 22 + 14 * (lines.length - 1), B = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    el("text", { x: L, y: H / 2 }, svg).textContent = `${title}: no data yet`;
    return svg;
  }
  const fx = xlog ? Math.log10 : (v) => v, fy = ylog ? Math.log10 : (v) => v;
  const xs = pts.map((p) => fx(p[0])), ys = pts.map((p) => fy(p[1])).concat(hlines.map((h) => fy(h.y)));
  if (series.some((s) => s.bars) && !ylog) ys.push(0);  // bars stand on zero
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const pad = (y1 - y0) * 0.08;
  [y0, y1] = [y0 - pad, y1 + pad];
  if (yfloor !== null && !ylog && y0 < yfloor) y0 = yfloor;  // rain is never below zero
  const X = (v) => L + ((fx(v) - x0) / (x1 - x0)) * (W - L - R), Y = (v) => H - B - ((fy(v) - y0) / (y1 - y0)) * (H - T - B);
  lines.forEach((line, i) => { el("text", { x: 4, y: 14 + 14 * i, class: "title" }, svg).textContent = line; });
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
  const yticks = ylog ? logTicks(y0, y1) : niceTicks(y0, y1, 4);
  for (const yv of yticks) {
    const yy = H - B - ((yv - y0) / (y1 - y0)) * (H - T - B);
    el("line", { x1: L, y1: yy, x2: W - R, y2: yy, class: "grid" }, svg);
    el("text", { x: L - 4, y: yy + 3, "text-anchor": "end", class: "ytick" }, svg).textContent = tick(ylog ? 10 ** yv : yv);
  }
  if (xtime && !xlog) {
    const { ticks, step } = timeTicks(x0, x1);
    ticks.forEach((t, k) => {
      const xx = X(t);
      el("line", { x1: xx, y1: H - B, x2: xx, y2: H - B + 4, class: "axis" }, svg);
      el("text", { x: xx, y: H - 12, "text-anchor": "middle", class: "xtick" }, svg).textContent = timeLabel(t, step, k === 0);
    });
    xlabel = xlabel || `time (${clockParts(x1).offset})`;
  } else {
    for (const xv of xlog ? logTicks(x0, x1) : niceTicks(x0, x1)) {
      const xx = L + ((xv - x0) / (x1 - x0)) * (W - L - R);
      el("line", { x1: xx, y1: H - B, x2: xx, y2: H - B + 4, class: "axis" }, svg);
      el("text", { x: xx, y: H - 12, "text-anchor": "middle", class: "xtick" }, svg).textContent = tick(xlog ? 10 ** xv : xv);
    }
  }
  el("text", { x: W - R, y: H - 1, "text-anchor": "end", class: "xlabel" }, svg).textContent = xlabel;
  el("text", { x: L + 4, y: T + 10, class: "ylabel" }, svg).textContent = ylabel;
  for (const h of hlines) {
    el("line", { x1: L, x2: W - R, y1: Y(h.y), y2: Y(h.y), stroke: h.color, "stroke-dasharray": "5 3", class: "threshold" }, svg);
    el("text", { x: W - R - 60, y: Y(h.y) - 3, fill: h.color }, svg).textContent = h.label;
  }
  for (const s of series) {
    if (s.bars) {
      for (const [x, y] of s.points) el("rect", { x: X(x) - 2, y: Y(y), width: 4, height: Math.max(0, Y(Math.max(y0, 0)) - Y(y)), fill: s.color }, svg);
    } else if (s.dots) {
      for (const [x, y] of s.points) el("circle", { cx: X(x), cy: Y(y), r: 3, fill: s.color }, svg);
    } else {
      el("polyline", { points: s.points.map(([x, y]) => `${X(x)},${Y(y)}`).join(" "), fill: "none", stroke: s.color,
        "stroke-width": 1.5, "stroke-dasharray": s.dash || "", class: s.cls || "" }, svg);
    }
  }
  return svg;
}

// The detector's straight line 1/v = a·(t_f − t) through its forecast failure time, over its fit window only:
// ``a`` by least squares through (t_f, 0) on the points of the window, so the line runs over the dots it fits.
export function fitLine(points, fc) {
  const inWindow = points.filter(([t]) => t >= fc.fit_from && t <= fc.as_of + 1);
  if (!inWindow.length) return null;
  let num = 0, den = 0;
  for (const [t, y] of inWindow) { const d = fc.failure_at - t; num += y * d; den += d * d; }
  if (!(den > 0)) return null;
  const a = num / den, start = inWindow[0][0];
  return [[start, a * (fc.failure_at - start)], [fc.failure_at, 0]];
}

let asked = 0;  // the newest chart asked for: an older answer arriving late is not drawn over it
export async function loadChart(site, device, metric) {
  const mine = ++asked;
  const c = await api(`/api/sites/${encodeURIComponent(site)}/devices/${encodeURIComponent(device)}/chart?metric=${encodeURIComponent(metric)}`);
  if (mine !== asked || $("#site-panel").dataset.site !== site) return;
  const box = $("#chart");
  box.replaceChildren();
  box.dataset.device = `${site}/${device}/${metric}`;
  const unit = unitOf(metric);
  const readings = c.ts.map((t, i) => [t, c.values[i]]);
  if (c.kind === "rain") {
    box.append(plot(`${device}: hourly rain`, { series: [{ points: c.hourly, color: "#1f6fd1", bars: true }], yfloor: 0,
      ylabel: "mm per hour" }));
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
        xlabel: "duration D (h)", ylabel: "intensity I (mm/h)" }));
    }
  } else if (c.kind === "slope") {
    box.append(plot(`${device}: ${metric}`, { series: [{ points: readings, color: "#334155" }], ylabel: unit }));
    const levels = Object.entries(c.velocity_levels || {}).map(([lvl, y]) => ({ y, color: COLOURS[lvl], label: `${lvl} ${y} ${unit}/d` }));
    const fired = c.fired ? ` — ${c.fired.level.toUpperCase()} at ${clockParts(c.fired.ts).hour}:${clockParts(c.fired.ts).minute}: velocity ${fmt(c.fired.velocity_per_day)} ${unit}/d` +
      (c.fired.tangent_angle_deg != null ? `, tangent angle ${fmt(c.fired.tangent_angle_deg)}°` : "") : "";
    box.append(plot(`${c.detector}: velocity and its levels${fired}`, { series: [{ points: c.velocity_per_day, color: "#0f766e" }],
      hlines: levels, ylabel: `${unit} per day` }));
    if (c.inverse_velocity.length) {
      const series = [{ points: c.inverse_velocity, color: "#7c3aed", dots: true }];
      const line = c.forecast && fitLine(c.inverse_velocity, c.forecast);
      if (line) series.push({ points: line, color: COLOURS.red, dash: "6 4", cls: "forecast" });
      const title = c.forecast ? `inverse velocity — ${forecastText(c.forecast)}`
        : "inverse velocity; no forecast from the detector";
      box.append(plot(title, { series, ylabel: `days per ${unit}`, yfloor: 0 }));
    }
  } else {
    box.append(plot(`${device}: ${metric}`, { series: [{ points: readings, color: "#334155" }], ylabel: unit }));
  }
}

export function clearChart() {
  asked += 1;
  const box = $("#chart");
  box.replaceChildren();
  delete box.dataset.device;
}
