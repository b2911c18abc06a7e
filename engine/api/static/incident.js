// An incident's detail: its header (level, state, what confirms or mutes it, the time to act from now), the
// plan, camera snapshots with their captions, reported photos and positions, findings and the audit trail.
import { $, age, api, esc, fmt, hhmm, now, state, unitOf, utc } from "./common.js";
import { confirmation, forecastUrgent, inhibitedBy, silencedBy, tags, timeToAct } from "./board.js";
import { verdictPanel, wireVerdicts } from "./verdicts.js";

export async function showDetail(id) {
  const inc = await api(`/api/incidents/${id}`);
  const box = $("#detail");
  box.dataset.id = id;
  const plan = inc.plan || {};
  const steps = (plan.steps || []).map((s) => `<li>${esc(s)}</li>`).join("");
  const checklist = (plan.checklist || []).map((s) => `<li>${esc(s)}</li>`).join("");
  const findings = inc.findings.map((f) => `<tr><td>${esc(f.detector)}</td><td>${esc(f.device)}</td>
    <td>${esc(utc(f.ts))}</td><td><span class="badge lvl-${esc(f.level)}">${esc(f.level)}</span></td>
    <td>${f.score.toPrecision(3)}</td><td class="evidence">${evidenceHtml(f.evidence)}</td></tr>`).join("");
  const fc = newestForecast(inc.findings);
  const audit = collapseReminders(inc.audit).map((a) => `<tr><td>${esc(utc(a.at))}</td><td>${esc(a.actor)}</td>
    <td>${a.detail.level ? `<span class="badge lvl-${esc(a.detail.level)}">${esc(a.detail.level)}</span>` : ""}</td>
    <td>${esc(a.detail.assigned_to || "")}</td>
    <td>${esc(a.action)}${a.action === "verdict" ? ` ${esc(a.detail.verdict || "")}` : ""}${a.times > 1 ? ` ×${a.times} (to ${esc(utc(a.last))})` : ""}</td>
    <td>${esc((a.detail.receivers || []).join(", "))}</td>
    <td>${esc(a.detail.comment || (a.detail.silenced_by ? `silenced by ${a.detail.silenced_by}` : "")
      || (a.detail.inhibited_by ? `inhibited by ${a.detail.inhibited_by}` : "") || a.detail.note || "")}</td></tr>`).join("");
  const known = { ...(state.incidents.get(id) || {}), ...inc };
  const sources = confirmation(known);
  const muted = [
    silencedBy(known) ? `Silenced by ${esc(silencedBy(known))}: recorded, not sent.` : "",
    inhibitedBy(known) ? `Inhibited by the ${esc(inhibitedBy(known))}: recorded, not sent.` : "",
  ].filter(Boolean).join(" ");
  const confidence = sources ? `confirmed${sources.length ? ` by ${esc(sources.join(" and "))}` : ""}` : `confidence ${esc(inc.confidence)}`;
  box.innerHTML = `<h3><span class="badge lvl-${esc(inc.level)}">${esc(inc.level)}</span> ${esc(inc.hazard)} at ${esc(inc.site)}
      — ${esc(inc.state)}, ${confidence}${tags(known)}</h3>
    ${muted ? `<p class="muted-note">${muted}</p>` : ""}
    ${fc ? `<p class="forecast">${forecastHtml(fc, inc.state !== "resolved" && forecastUrgent(known, fc.failure_at))}</p>` : ""}
    ${inc.state === "firing" ? `<p class="act-by">${timeToAct(known)}</p>` : ""}
    <p>Route: ${esc((inc.route || []).join(" → "))}</p>
    ${plan.title ? `<h4>Plan: ${esc(plan.title)} (${esc(plan.role)})</h4><ol>${steps}</ol>
      ${checklist ? `<p>Checklist:</p><ul>${checklist}</ul>` : ""}` : ""}
    ${snapshots(inc.findings)}${verdictPanel(inc)}${reportPhotos(inc.findings)}
    <h4>Findings</h4><div class="scroll"><table><tr><th>detector</th><th>device</th><th>time</th><th>level</th><th>score</th><th>evidence</th></tr>${findings}</table></div>
    <h4>Audit trail</h4><div class="scroll"><table><tr><th>time</th><th>actor</th><th>level</th><th>assigned to</th><th>action</th><th>receivers</th><th>note</th></tr>${audit}</table></div>`;
  box.hidden = false;
  wireVerdicts(box, id, () => showDetail(id));
}

// Reminders repeat every few minutes until someone acknowledges: one line per run of them.
export function collapseReminders(audit) {
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

// The failure-time forecast as the detector stated it, counted from now: "failure 2026-12-07 07:10 UTC+8
// (07:00–07:21), 1 h 30 min left (inverse_velocity, as of 05:40)".
export function forecastText(fc) {
  const ci = fc.ci95 ? ` (${hhmm(fc.ci95[0])}–${hhmm(fc.ci95[1])})` : "";
  const left = fc.failure_at - now();
  return `failure ${utc(fc.failure_at)}${ci}, ${left > 0 ? `${age(left)} left` : "overdue"} (${fc.detector}, as of ${hhmm(fc.as_of)})`;
}
export function forecastHtml(fc, urgent = true) {
  const ci = fc.ci95 ? ` (${hhmm(fc.ci95[0])}–${hhmm(fc.ci95[1])})` : "";
  const left = fc.failure_at - now();
  return `failure ${esc(utc(fc.failure_at))}${esc(ci)}, <strong class="forecast-left${urgent ? " urgent" : ""}"
    title="${urgent ? "before the route's deadline: act now" : "after the route's deadline"}">${left > 0 ? `${esc(age(left))} left` : "overdue"}</strong>`
    + ` <span class="small">(${esc(fc.detector)}, as of ${esc(hhmm(fc.as_of))})</span>`;
}
export function newestForecast(findings) {
  const fs = findings.filter((f) => f.evidence && f.evidence.predicted_failure_ts).sort((a, b) => a.ts - b.ts);
  if (!fs.length) return null;
  const f = fs[fs.length - 1], ev = f.evidence;
  return { detector: f.detector, as_of: f.ts, failure_at: ev.predicted_failure_ts, ci95: ev.failure_ci95_ts };
}

// Evidence as words with units, not JSON: "velocity_per_day 13.2 /day · peak 78.4 °C". A position is given to
// the metre with a link that centres the map on it.
const THERMAL_UNITS = { celsius: "°C", counts: "z" };
function evidenceValue(k, v, ev) {
  const isTime = k === "ts" || k.endsWith("_ts") || k.endsWith("_at");
  if (typeof v === "number") {
    if (isTime) return utc(v);
    if (k === "lat" || k === "lon") return v.toFixed(5);
    const unit = k === "peak" && ev.units ? THERMAL_UNITS[ev.units] || ev.units
      : k === "rise_per_min" && ev.units ? `${THERMAL_UNITS[ev.units] || ev.units}/min` : unitOf(k);
    return unit ? `${fmt(v)} ${unit}` : fmt(v);
  }
  if (Array.isArray(v)) return v.map((x) => evidenceValue(k, x, ev)).join(isTime ? " – " : "; ");
  if (v && typeof v === "object") return Object.entries(v).map(([a, b]) => `${a} ${evidenceValue(a, b, ev)}`).join(" ");
  return String(v);
}
const HIDDEN = ["snapshot", "region", "region_cells", "photo", "report_id", "units"];
export function evidenceText(ev) {
  return Object.entries(ev || {}).filter(([k]) => !HIDDEN.includes(k))
    .map(([k, v]) => `${k} ${evidenceValue(k, v, ev)}`).join(" · ");
}
export function evidenceHtml(ev) {
  const text = esc(evidenceText(ev));
  if (ev && typeof ev.lat === "number" && typeof ev.lon === "number") {
    return `${text} <a href="#map" class="locate" data-lat="${ev.lat}" data-lon="${ev.lon}">show on map</a>`;
  }
  return text;
}

// A camera finding's snapshot at the frame's own aspect ratio, the detected region outlined (fractions of the
// frame [x, y, w, h]), captioned with the camera, the detector and the time.
export function snapshots(findings) {
  return findings.filter((f) => f.evidence && f.evidence.snapshot).map((f) => {
    const [x, y, w, h] = f.evidence.region || [0, 0, 0, 0];
    const pct = (v) => `${(v * 100).toFixed(2)}%`;
    const region = w > 0 && h > 0 ? `<span class="region" style="left:${pct(x)};top:${pct(y)};width:${pct(w)};height:${pct(h)}"></span>` : "";
    const units = f.evidence.units ? `, ${f.evidence.units === "celsius" ? "°C" : "raw counts"}` : "";
    return `<figure class="snapshot" data-camera="${esc(f.device)}"><div class="frame">
      <img src="${esc(f.evidence.snapshot)}?token=${encodeURIComponent(state.token)}" alt="frame of ${esc(f.device)} behind ${esc(f.detector)}">${region}</div>
      <figcaption>camera ${esc(f.device)} · ${esc(f.detector)} · ${esc(utc(f.ts))}${esc(units)}</figcaption></figure>`;
  }).join("");
}

// A grid report's photo, served by the engine (the token as ?token= for <img>).
export function reportPhotos(findings) {
  return findings.filter((f) => f.evidence && f.evidence.photo).map((f) =>
    `<figure class="report-figure"><img class="report-photo" alt="photo reported by ${esc(f.device)}" title="${esc(f.evidence.text || "")}"
      src="${esc(f.evidence.photo)}?token=${encodeURIComponent(state.token)}"><figcaption>reported by ${esc(f.device)} · ${esc(utc(f.ts))}</figcaption></figure>`).join("");
}
