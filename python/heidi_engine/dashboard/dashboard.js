// Live dashboard for heidid / `heidi serve`. The page itself carries no data: it reads
// the API token from the URL fragment (#token=...), which never reaches the server, and
// sends it as a Bearer header to the JSON API.
"use strict";

const POLL_MS = 1000;
const EVAL_POLL_MS = 5000;
const MAX_EVENTS = 60;
// The running states of SPEC §4, as in heidi_engine/run_layout.py (RUNNING_STATES): this
// static page, served byte for byte by both servers, cannot import them.
const RUNNING_STATES = ["COLLECTING", "VALIDATING", "TESTING", "FINALIZING", "EVALUATING"];
const COUNT_LABELS = [
  ["raw_lines", "teacher answers"], ["clean_lines", "clean"], ["rejected_lines", "rejected"],
  ["tested_lines", "tests passed"], ["test_failed", "tests failed"], ["train_lines", "train"],
  ["val_lines", "validation"],
];

const token = new URLSearchParams(location.hash.replace(/^#/, "")).get("token") || "";
let eventsSince = 0;
let lastStatus = null;
let actionInFlight = false;
let polling = false;  // one status poll at a time, so events are not fetched twice

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, data };
}

function setConnection(text, ok) {
  const el = $("connection");
  el.textContent = text;
  el.dataset.ok = ok ? "1" : "0";
}

// "Waiting for train-now" is the Core's answer, carried in the status.
function waitingForTrainNow(s) {
  return s.waiting_for_train_now === true;
}

function renderStatus(s) {
  lastStatus = s;
  const state = $("state");
  state.textContent = s.state;
  state.dataset.state = s.state;
  $("round").textContent = `${s.current_round} / ${s.rounds_total}`;
  $("stage").textContent = s.stage === null ? "–" : s.stage;
  $("mode").textContent = s.mode + (waitingForTrainNow(s) ? " (waiting for train-now)" : "");
  $("run-id").textContent = s.run_id;
  $("last-completed").textContent = s.last_completed === null ? "–"
    : `round ${s.last_completed.round}, ${s.last_completed.stage}`;
  $("journal-head").textContent = `seq ${s.journal_head.seq}`;
  const err = $("last-error");
  err.hidden = s.last_error === null;
  err.textContent = s.last_error === null ? "" : s.last_error;

  const rows = COUNT_LABELS.map(([key, label]) =>
    `<tr><td>${label}</td><td>${Number(s.counts[key] || 0)}</td></tr>`).join("");
  $("counts").tBodies[0].innerHTML = rows;

  const running = RUNNING_STATES.includes(s.state) || (s.paused && s.stage !== null);
  const waiting = waitingForTrainNow(s);
  $("btn-train-now").disabled = actionInFlight || !waiting || s.paused;
  $("btn-pause").disabled = actionInFlight || s.paused || !(running || waiting);
  $("btn-resume").disabled = actionInFlight || !s.paused;
  $("btn-stop").disabled = actionInFlight || !(running || waiting || s.paused);
}

function renderEvents(events) {
  const list = $("events");
  for (const ev of events) {
    const li = document.createElement("li");
    li.className = `level-${ev.level}`;
    li.value = ev.seq;
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = ev.ts.slice(11, 19);
    li.append(ts, `r${ev.round} ${ev.stage} ${ev.event_type}: ${ev.message}`);
    list.prepend(li);
  }
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function interval(low, high) {
  return low !== null && low !== undefined && high !== null && high !== undefined
    ? ` (95% CI ${low.toFixed(2)}–${high.toFixed(2)})` : "";
}

function renderEvalSummary(rounds) {
  const latest = rounds.filter((r) => r.pass_at_1 !== null).pop();
  if (!latest) return;
  const base = latest.baseline_pass_at_1 === null ? "n/a"
    : latest.baseline_pass_at_1.toFixed(2) +
      interval(latest.baseline_pass_at_1_low, latest.baseline_pass_at_1_high);
  const best = latest.best_round === null ? "–" : `out_lora/round_${latest.best_round}`;
  const dev = latest.dev_pass_at_1 === null ? "" : ` · dev ${latest.dev_pass_at_1.toFixed(2)}`;
  $("eval-summary").textContent =
    `round ${latest.round}: test pass@1 ${latest.pass_at_1.toFixed(2)}` +
    interval(latest.pass_at_1_low, latest.pass_at_1_high) +
    ` · base ${base}${dev} · best adapter ${best}`;
}

function renderChart(rounds) {
  renderEvalSummary(rounds);
  const chart = $("chart");
  chart.replaceChildren();
  const W = 600, H = 220, left = 40, right = 15, top = 12, bottom = 28;
  const points = rounds.filter((r) => r.pass_at_1 !== null);
  const maxRound = Math.max(1, ...points.map((r) => r.round));
  const x = (round) => left + (maxRound === 1 ? (W - left - right) / 2
    : ((round - 1) / (maxRound - 1)) * (W - left - right));
  const y = (v) => top + (1 - v) * (H - top - bottom);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    chart.append(svg("text", { class: "label", x: 4, y: y(v) + 4 }, v.toFixed(2)));
  }
  if (points.length === 0) {
    chart.append(svg("text", { class: "label", x: W / 2 - 60, y: H / 2 }, "no evaluated round yet"));
    return;
  }
  for (const r of points) {
    chart.append(svg("text", { class: "label", x: x(r.round) - 4, y: H - 8 }, `r${r.round}`));
  }
  const baseline = points.filter((r) => r.baseline_pass_at_1 !== null);
  if (baseline.length > 0) {
    chart.append(svg("polyline", { class: "baseline",
      points: baseline.map((r) => `${x(r.round)},${y(r.baseline_pass_at_1)}`).join(" ") }));
  }
  chart.append(svg("polyline", { class: "student",
    points: points.map((r) => `${x(r.round)},${y(r.pass_at_1)}`).join(" ") }));
  for (const r of points) {
    const dot = svg("circle", { class: "point", cx: x(r.round), cy: y(r.pass_at_1), r: 4 });
    dot.append(svg("title", {},
      `round ${r.round}: test pass@1 ${r.pass_at_1}${interval(r.pass_at_1_low, r.pass_at_1_high)}`));
    chart.append(dot);
  }
}

async function pollStatus() {
  if (polling) return;
  polling = true;
  try {
    const status = await api("GET", "/api/v1/status");
    if (status.status === 401) {
      setConnection("token rejected: open the URL the server printed (it ends in #token=…)", false);
      return;
    }
    if (status.status !== 200) throw new Error(`HTTP ${status.status}`);
    renderStatus(status.data);
    const events = await api("GET", `/api/v1/events?since=${eventsSince}&limit=200`);
    if (events.status === 200) {
      renderEvents(events.data.events);
      eventsSince = events.data.next_since;
    }
    setConnection(`live · updated ${new Date().toLocaleTimeString()}`, true);
  } catch (err) {
    setConnection(`disconnected (${err.message}); retrying`, false);
  } finally {
    polling = false;
  }
}

async function pollEval() {
  try {
    const reports = await api("GET", "/api/v1/eval");
    if (reports.status === 200) renderChart(reports.data.rounds);
  } catch (_) {
    // the status poll reports connection problems
  }
}

async function runAction(action) {
  const result = $("action-result");
  actionInFlight = true;
  if (lastStatus) renderStatus(lastStatus);
  try {
    const reply = await api("POST", `/api/v1/action/${action}`, {});
    result.classList.toggle("error", reply.status !== 202);
    result.textContent = reply.status === 202 ? `${action.replace("_", "-")} accepted`
      : `${action.replace("_", "-")} refused: ${reply.data ? reply.data.error : reply.status}`;
  } catch (err) {
    result.classList.add("error");
    result.textContent = `${action} failed: ${err.message}`;
  } finally {
    actionInFlight = false;
    await pollStatus();
  }
}

function main() {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => runAction(button.dataset.action));
  }
  if (!token) {
    setConnection("no token: open the URL the server printed (it ends in #token=…)", false);
    return;
  }
  pollStatus();
  pollEval();
  setInterval(pollStatus, POLL_MS);
  setInterval(pollEval, EVAL_POLL_MS);
}

main();
