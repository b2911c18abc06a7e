// An operator's verdict on a camera incident (false alarm, real fire, real smoke), optionally with a box drawn
// on the snapshot (mouse, finger or pen), and the camera's learned head: its version, examples and a rollback.
import { api, esc, state, utc } from "./common.js";

// The cameras whose findings have a snapshot, newest first: those a verdict can judge.
export function judgedCameras(findings) {
  const newest = new Map();
  for (const f of findings) {
    if (f.evidence && f.evidence.snapshot && !(newest.get(f.device) >= f.ts)) newest.set(f.device, f.ts);
  }
  return [...newest.keys()].sort((a, b) => newest.get(b) - newest.get(a));
}

const chosen = new Map();  // incident id -> the camera its operator picked to judge

// The camera a verdict on incident ``id`` judges: the one picked, else the newest with a snapshot.
export function judgedCamera(findings, id) {
  const cams = judgedCameras(findings);
  return cams.includes(chosen.get(id)) ? chosen.get(id) : cams[0] || null;
}

export function chooseCamera(id, camera) { chosen.set(id, camera); }

export function verdictPanel(inc) {
  const cameras = judgedCameras(inc.findings);
  const camera = judgedCamera(inc.findings, inc.incident_id);
  if (!camera) return "";
  // a smoke camera and a thermal one on the same fire: the operator says which one is judged
  const which = cameras.length > 1
    ? `<select class="verdict-camera" aria-label="camera judged">${cameras.map((c) =>
      `<option value="${esc(c)}"${c === camera ? " selected" : ""}>${esc(c)}</option>`).join("")}</select>`
    : esc(camera);
  const operator = state.role === "operator";
  // a thermal camera's findings carry its units (°C or counts): it sees heat, not smoke
  const thermal = inc.findings.some((f) => f.device === camera && f.evidence && f.evidence.units);
  const buttons = operator ? `<div class="buttons">
      <button data-verdict="false_alarm">False alarm</button>
      <button data-verdict="fire">Real fire</button>
      ${thermal ? "" : `<button data-verdict="smoke">Real smoke</button>`}
      <button data-draw>Draw a box</button></div>
    <p class="verdict-hint">Optional: draw a box on ${esc(camera)}'s snapshot around what you judge
      (the whole alarm otherwise).</p>` : "";
  return `<section class="verdict" data-camera="${esc(camera)}" data-site="${esc(inc.site)}">
    <h4>Verdict on camera ${which}</h4>${buttons}
    <p class="verdict-result" role="status"></p><p class="camera-model">model: …</p></section>`;
}

// What a verdict did, in words: a visible camera's head version (0: the shipped head again) and the places
// where plume_change no longer counts a change, a thermal camera's dismissed hot spots (it has no head
// versions), or why nothing was learned.
export function verdictOutcome(camera, res) {
  if (!res.learned) return `Not learned: ${res.reason}`;
  if (res.kind === "thermal") {
    const n = res.hot_spots || 0;
    return `Learned: ${camera} now dismisses ${n ? `${n} hot spot${n === 1 ? "" : "s"}` : "no hot spot"}.`;
  }
  const n = res.dismissed_places;
  const places = n === undefined ? ""
    : `dismisses changes at ${n ? `${n} place${n === 1 ? "" : "s"}` : "no place"}`;
  if (n !== undefined && res.refit_s === undefined) {  // plume_change's finding alone: no head was refit
    return `Learned: ${camera} now ${places}${res.reason ? ` (${res.reason})` : ""}.`;
  }
  const head = `uses ${res.version ? `head v${res.version}` : "the shipped head"}`;
  const why = res.reason ? ` (head: ${res.reason})` : "";
  return `Learned: ${camera} now ${head}${places ? ` and ${places}` : ""}${why}.`;
}

// Wire the panel of the detail box ``box`` for incident ``id``; ``reload`` shows the detail again.
export function wireVerdicts(box, id, reload) {
  const panel = box.querySelector("section.verdict");
  if (!panel) return;
  const { camera, site } = panel.dataset;
  panel.querySelector("select.verdict-camera")?.addEventListener("change", (ev) => {
    chooseCamera(id, ev.target.value);
    reload();
  });
  const figure = box.querySelector(`figure.snapshot[data-camera="${CSS.escape(camera)}"] .frame`);
  let drawn = null;  // [x, y, w, h] as fractions of the snapshot
  const result = panel.querySelector(".verdict-result");
  const say = (text, bad = false) => { result.textContent = text; result.classList.toggle("bad", bad); };

  const drawButton = panel.querySelector("button[data-draw]");
  if (drawButton && figure) {
    drawButton.addEventListener("click", () => {
      const on = !figure.classList.contains("drawing");
      figure.classList.toggle("drawing", on);
      drawButton.textContent = on ? "Stop drawing" : "Draw a box";
      if (on) say("Drag over the snapshot to draw the box.");
    });
    let start = null;
    const at = (ev) => {
      const r = figure.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
    };
    const show = (b) => {
      let mark = figure.querySelector(".drawn");
      if (!mark) {
        mark = document.createElement("span");
        mark.className = "drawn";
        figure.appendChild(mark);
      }
      const pct = (v) => `${(v * 100).toFixed(2)}%`;
      Object.assign(mark.style, { left: pct(b[0]), top: pct(b[1]), width: pct(b[2]), height: pct(b[3]) });
    };
    figure.addEventListener("pointerdown", (ev) => {
      if (!figure.classList.contains("drawing")) return;
      ev.preventDefault();
      figure.setPointerCapture(ev.pointerId);
      start = at(ev);
    });
    figure.addEventListener("pointermove", (ev) => {
      if (!start) return;
      const p = at(ev);
      drawn = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.abs(p[0] - start[0]), Math.abs(p[1] - start[1])];
      show(drawn);
    });
    const end = () => {
      if (!start) return;
      start = null;
      if (!drawn || drawn[2] < 0.01 || drawn[3] < 0.01) { drawn = null; figure.querySelector(".drawn")?.remove(); return; }
      drawn = drawn.map((v) => Math.round(v * 10000) / 10000);
      say(`Box drawn: ${(drawn[2] * drawn[3] * 100).toFixed(0)}% of the frame.`);
    };
    figure.addEventListener("dragstart", (ev) => { if (figure.classList.contains("drawing")) ev.preventDefault(); });
    figure.addEventListener("pointerup", end);
    figure.addEventListener("pointercancel", end);
  }

  panel.addEventListener("click", async (ev) => {
    const verdict = ev.target.dataset.verdict;
    const rollback = ev.target.dataset.rollback;
    try {
      if (verdict) {
        const words = { false_alarm: "a false alarm", fire: "a real fire", smoke: "real smoke" }[verdict];
        const comment = window.prompt(`Judge ${camera}'s alarm as ${words}${drawn ? " (in the box drawn)" : ""}? `
          + "The camera learns from it. Comment for the audit trail (optional):", "");
        if (comment === null) return;
        const body = { verdict, camera, comment, ...(drawn ? { region: drawn } : {}) };
        const res = await api(`/api/incidents/${id}/verdict`, { method: "POST", body: JSON.stringify(body) });
        const text = verdictOutcome(camera, res);
        await reload();
        const again = document.querySelector("#detail section.verdict .verdict-result");
        if (again) { again.textContent = text; again.classList.toggle("bad", !res.learned); }
      } else if (rollback !== undefined) {
        const version = Number(rollback);
        if (!window.confirm(`Roll ${camera} back to ${version ? `head v${version}` : "the shipped head"}?`)) return;
        await api(`/api/cameras/${encodeURIComponent(site)}/${encodeURIComponent(camera)}/rollback`,
          { method: "POST", body: JSON.stringify({ version }) });
        await showModel(panel, site, camera);
        say(`${camera} uses ${version ? `head v${version}` : "the shipped head"} again.`);
      }
    } catch (err) {
      say(err.message, true);
    }
  });
  showModel(panel, site, camera).catch((err) => {
    panel.querySelector(".camera-model").textContent = `model: ${err.message}`;
  });
}

// The camera's head: its version, what it learned from, and (operators) a rollback to the version before.
async function showModel(panel, site, camera) {
  const m = await api(`/api/cameras/${encodeURIComponent(site)}/${encodeURIComponent(camera)}/learning`);
  const ex = m.examples || {};
  const learned = `${ex.dismissed || 0} dismissed and ${ex.real || 0} confirmed cells`;
  const versions = (m.versions || []).map((v) => v.version).filter((v) => v !== m.version);
  const earlier = versions.filter((v) => v < m.version);
  const back = m.version ? (earlier.length ? earlier[earlier.length - 1] : 0) : null;
  const button = state.role === "operator" && back !== null
    ? ` <button data-rollback="${back}">Roll back to ${back ? `v${back}` : "the shipped head"}</button>` : "";
  const last = (m.log || []).filter((l) => l.action === "verdict").pop();
  const note = last ? ` · last verdict ${esc(last.verdict)} by ${esc(last.actor)} at ${esc(utc(last.at))}` : "";
  const hot = (m.hot_spots ? ` · ${m.hot_spots} dismissed hot spots` : "")
    + (m.dismissed_places ? ` · changes dismissed at ${m.dismissed_places} places` : "");
  panel.querySelector(".camera-model").innerHTML = m.version
    ? `model: head v${m.version} of ${esc(camera)} (${learned})${hot}${note}${button}`
    : `model: the shipped head${hot}${note}${button}`;
}
