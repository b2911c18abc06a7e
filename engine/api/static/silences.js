// Silences, as Alertmanager's: the list, a preview of what a new silence would mute before it is made, and an
// end always (the API refuses a silence for ever; the config holds recurring windows, reviewed).
import { $, api, esc, state, throttled, utc } from "./common.js";
import { loadBoardExtras } from "./board.js";

const MATCHERS = ["site", "hazard", "device", "level"];

export async function loadSilences() {
  const list = await api("/api/silences");
  $("#silences tbody").innerHTML = list.map((s) => {
    const match = MATCHERS.filter((k) => s[k]).map((k) => `${k}=${s[k]}`).join(" ") || "everything";
    const window = s.cron ? `${s.cron} for ${s.duration_s / 3600} h (${s.timezone})`
      : `${utc(s.starts_at)} → ${s.ends_at ? utc(s.ends_at) : "until removed in the config"}`;
    return `<tr data-silence-id="${esc(s.id)}"><td>${esc(match)}</td><td>${esc(window)}</td><td>${esc(s.created_by)}</td>
      <td>${esc(s.comment)}</td><td>${s.created_by === "config" ? '<span class="tag" title="change it in the config file">config</span>'
        : `<button data-expire="${esc(s.id)}">Expire</button>`}</td></tr>`;
  }).join("");
}

function matchers(form) {
  const data = Object.fromEntries(new FormData(form));
  const out = {};
  for (const k of MATCHERS) if (data[k] && String(data[k]).trim()) out[k] = String(data[k]).trim();
  return out;
}

// What the silence being typed would mute now, before it is made.
export async function previewSilence() {
  const form = $("#silence-form");
  const box = $("#silence-preview");
  const m = matchers(form);
  if (!Object.keys(m).length) {
    box.textContent = "Name a site, hazard, device or level: the open incidents it would mute show here.";
    return;
  }
  const res = await api(`/api/silence-preview?${new URLSearchParams(m)}`);
  const hours = Number(form.hours.value) || 0;
  const until = hours > 0 ? `for ${hours} h, until ${utc(Date.now() / 1000 + state.clockOffset + hours * 3600)}` : "(give an end)";
  box.innerHTML = res.matches.length
    ? `Would mute ${res.matches.length} open incident${res.matches.length > 1 ? "s" : ""} ${esc(until)}: `
      + res.matches.map((i) => `<span class="preview-hit" data-incident-id="${esc(i.incident_id)}"><span class="badge lvl-${esc(i.level)}">${esc(i.level)}</span> ${esc(i.hazard)} at ${esc(i.site)}</span>`).join(", ")
    : `Matches no open incident now; it would mute new ones that match ${esc(until)}.`;
}
export const schedulePreview = throttled(() => previewSilence().catch((err) => { $("#silence-preview").textContent = err.message; }), 250, 1000);

export async function createSilence(form) {
  const data = Object.fromEntries(new FormData(form));
  const hours = Number(data.hours);
  if (!(hours > 0)) throw new Error("a silence needs an end: give its hours (a silence for ever belongs in the config)");
  const body = { comment: data.comment || "", for_s: hours * 3600, ...matchers(form) };
  await api("/api/silences", { method: "POST", body: JSON.stringify(body) });
  form.reset();
  $("#silence-preview").textContent = "";
  // the incidents it mutes are tagged at once, not at their next event
  await Promise.all([loadSilences(), loadBoardExtras()]);
}

export async function expireSilence(id) {
  await api(`/api/silences/${id}`, { method: "DELETE" });
  await Promise.all([loadSilences(), loadBoardExtras()]);
}
