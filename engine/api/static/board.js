// The incident board: one row per incident (one card on a phone), RED first, with the time to act — the
// failure forecast counted from now and the acknowledgement deadline before the next escalation — and tags for
// what confirms or mutes it.
import { $, LEVELS, age, api, esc, hhmm, now, state, throttled, utc } from "./common.js";

export function upsert(e) {
  const cur = state.incidents.get(e.incident_id) || {};
  state.incidents.set(e.incident_id, {
    ...cur,
    incident_id: e.incident_id, site: e.site, hazard: e.hazard, level: e.level, state: e.state,
    opened_at: e.opened_at, updated_at: e.updated_at, acknowledged_by: e.acknowledged_by,
    assigned_to: e.assigned_to, tier: e.tier || cur.tier,
    // what the newest event says of muting; dispatch and fusion's confirmation stay once they happened
    silenced_by: e.silenced_by || null, inhibited_by: e.inhibited_by || null,
    dispatched: cur.dispatched || e.dispatched || e.action === "dispatched", confidence: e.confidence || cur.confidence,
    reported: cur.reported || e.reported || (e.findings || []).some((f) => f.detector === "grid_report"),
  });
}

// What mutes an incident now: the board's answer (it knows a silence made a moment ago), else the event's.
export const silencedBy = (i) => (state.board.get(i.incident_id) || {}).silenced_by || i.silenced_by;
export const inhibitedBy = (i) => (state.board.get(i.incident_id) || {}).inhibited_by || i.inhibited_by;
// Confirmed by independent sources: two devices or more agree (fusion), or the engine says so.
export function confirmation(i) {
  const sources = (state.board.get(i.incident_id) || {}).confirmed;
  if (sources) return sources;
  return i.confidence === "confirmed" ? [] : null;
}

// The time to act, from now: the failure forecast (emphasised when it falls before the route's deadline to
// resolve) and the acknowledgement deadline before the next escalation.
export function timeToAct(i) {
  const b = state.board.get(i.incident_id) || {};
  const t = now();
  const out = [];
  if (b.forecast && i.state !== "resolved") {
    const left = b.forecast.failure_at - t;
    const urgent = forecastUrgent(i, b.forecast.failure_at);
    const text = left > 0 ? `failure in ${age(left)}` : "failure overdue";
    out.push(`<span class="forecast-left${urgent ? " urgent" : ""}" title="forecast failure ${esc(utc(b.forecast.failure_at))} `
      + `(${esc(b.forecast.detector)}, as of ${esc(hhmm(b.forecast.as_of))})${urgent ? "; before the route's deadline" : ""}">`
      + `${esc(text)}</span>`);
  }
  if (b.ack_due != null && i.state === "firing") {
    const left = b.ack_due - t;
    const to = b.next_tier ? ` → ${b.next_tier}` : "";
    const text = left > 0 ? `ack in ${age(left)}${to}` : `ack overdue${to}`;
    out.push(`<span class="ack-left${left < 300 ? " urgent" : ""}" title="acknowledge by ${esc(utc(b.ack_due))}`
      + `${b.next_tier ? `, or it escalates to the ${esc(b.next_tier)}` : ""}">${esc(text)}</span>`);
  }
  return out.join(" ");
}

// A failure forecast before the route's deadline to resolve the incident, or within two acknowledgement
// periods from now, is the thing to act on first.
export function forecastUrgent(i, failureAt) {
  const b = state.board.get(i.incident_id) || {};
  return failureAt <= (b.resolve_due ?? Infinity) || failureAt - now() < (b.ack_within_s ?? 0) * 2;
}

function rank(i) {
  return [i.state === "resolved" ? 1 : 0, -LEVELS.indexOf(i.level), confirmation(i) ? 0 : 1, -i.updated_at];
}
function byRank(a, b) {
  const x = rank(a), y = rank(b);
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return x[k] - y[k];
  return 0;
}

export function renderBoard() {
  const showResolved = $("#show-resolved").checked;
  const rows = [...state.incidents.values()].filter((i) => showResolved || i.state !== "resolved").sort(byRank);
  const t = now();
  const off = state.engine !== "live" && state.engine !== "unknown" ? " disabled" : "";
  $("#board tbody").innerHTML = rows.map((i) => {
    const open = i.state !== "resolved";
    const buttons = [
      i.state === "firing" ? `<button data-act="ack"${off}>Acknowledge</button>` : "",
      open ? `<button data-act="dispatch"${off}>Dispatch</button>` : "",
      open ? `<button data-act="assign"${off}>Assign</button>` : "",
      open ? `<button data-act="resolve"${off}>Resolve</button>` : "",
    ].join("");
    return `<tr data-incident-id="${esc(i.incident_id)}" class="state-${esc(i.state)} lvl-row-${esc(i.level)}">
      <td class="level"><span class="badge lvl-${esc(i.level)}">${esc(i.level)}</span></td><td class="hazard">${esc(i.hazard)}</td>
      <td class="site">${esc(i.site)}</td><td class="age" title="opened ${esc(utc(i.opened_at))}">${age(t - i.opened_at)}</td>
      <td class="act-by">${timeToAct(i)}</td>
      <td class="state">${esc(i.state)}${tags(i)}${i.tier ? ` <span class="tier" title="the tier told so far">told ${esc(i.tier)}</span>` : ""}${i.assigned_to
        ? ` <span class="assigned">assigned to ${esc(i.assigned_to)}</span>` : ""}</td>
      <td class="acked">${esc(i.acknowledged_by || "")}</td><td class="actions"><div class="buttons">${buttons}</div></td></tr>`;
  }).join("");
}

// The clocks move on: ages and countdowns are rewritten in place every few seconds, never the rows (a row
// rebuilt under a pressed button would swallow the click).
export function tickBoard() {
  const t = now();
  for (const row of document.querySelectorAll("#board tbody tr[data-incident-id]")) {
    const i = state.incidents.get(row.dataset.incidentId);
    if (!i) continue;
    const ageCell = row.querySelector("td.age"), act = row.querySelector("td.act-by");
    if (ageCell) ageCell.textContent = age(t - i.opened_at);
    const html = timeToAct(i);
    if (act && act.innerHTML !== html) act.innerHTML = html;
  }
}

// Badges that tell a muted or special incident from a live one at a glance.
export function tags(i) {
  const t = [];
  const sources = confirmation(i);
  if (sources) {
    const by = sources.length ? `confirmed by ${sources.join(" and ")}` : "confirmed by fusion of independent evidence";
    t.push(`<span class="tag confirmed" title="${esc(by)}">confirmed${sources.length ? ` ×${sources.length}` : ""}</span>`);
  }
  const silence = silencedBy(i), inhibitor = inhibitedBy(i);
  if (silence) t.push(`<span class="tag silenced" title="silenced by ${esc(silence)}: recorded, not sent">silenced</span>`);
  if (inhibitor) t.push(`<span class="tag inhibited" title="inhibited by ${esc(inhibitor)}: recorded, not sent">inhibited</span>`);
  if (i.dispatched) t.push(`<span class="tag dispatched" title="one-key dispatch sent">dispatched</span>`);
  if (i.reported) t.push(`<span class="tag reported" title="a person reported it: it stays open until a person resolves it">reported</span>`);
  return t.length ? ` ${t.join(" ")}` : "";
}

export async function loadBoard() {
  const list = await api("/api/incidents?limit=500");
  state.incidents.clear();
  for (const inc of list) state.incidents.set(inc.incident_id, inc);
  await loadBoardExtras();
}

// Time to act, confirmation and muting of the open incidents (/api/board): after events, at most every 1.5 s.
export async function loadBoardExtras() {
  const b = await api("/api/board");
  state.board = new Map(Object.entries(b.incidents));
  renderBoard();
}
export const scheduleBoardExtras = throttled(() => loadBoardExtras().catch(() => {}), 300, 1500);

export async function act(id, action) {
  if (state.engine === "down") throw new Error("the engine does not answer: nothing was sent");
  let body = {};
  const inc = state.incidents.get(id) || {};
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
    const cur = state.incidents.get(id);
    if (cur) cur.dispatched = true;
    if (!res.events.length) window.alert("Every receiver of the plan has it already: nothing sent.");
  }
  for (const e of res.events) upsert(e);
  renderBoard();
  scheduleBoardExtras();
}
