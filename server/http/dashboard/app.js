// cllm dashboard: draws the Workspace's training live from /v1/events (or, without a token, from /v1/status).
// Both carry the events and status of docs/protocol.md with camelCase keys.
//
// The token arrives only in the server-rendered <meta name="cllm-token"> of a page opened through the editor
// command or the URL printed at start. It is moved into memory, the meta tag is emptied and the URL is
// stripped of `?token=` so it does not stay in the address bar. EventSource cannot send an Authorization
// header, so the event stream is read with fetch() and a stream reader.
"use strict";

const MAX_STEPS = 4000;
const ACCEPTANCE_REFRESH_MS = 15000;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  token: "",
  status: null,
  steps: [],      // {step, loss, tps, imbalance}
  epochs: [],     // {step, epoch, trainLoss, valLoss, bpb}
  spheres: [],    // last step's per-sphere stats
  last: null,     // last step event
  redraw: false,
};

const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function takeToken() {
  const meta = document.querySelector('meta[name="cllm-token"]');
  state.token = meta.content;
  const tokenState = meta.dataset.state;
  meta.content = "";
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", location.pathname);
  }
  if (tokenState === "invalid") {
    notice("This dashboard link is out of date (the server was restarted): showing status only. "
      + "Open the dashboard again from the editor or use the link printed by `cllm serve`.", true);
  } else if (!state.token) {
    notice("Read-only: open the dashboard from the editor (CLLM: Open Dashboard) or with the link printed by "
      + "`cllm serve` to train, cancel and follow the live events.");
  }
}

function notice(text, isError = false) {
  const box = $("notice");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = !text;
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

// ------------------------------------------------------------------------------------------- formatting

function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (Math.abs(value) >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(Math.min(digits, 1));
  return value.toFixed(digits);
}

function pct(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}

// The same words as the editor and the CLI (server/words.py, vscode-extension/src/format.ts).
function timeLeft(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return "<1 min left";
  const minutes = Math.ceil(seconds / 60);
  return minutes < 60 ? `~${minutes} min left` : `~${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

function exactMatch(share) {
  return typeof share === "number" && Number.isFinite(share) ? `${Math.round(100 * share)} % lines exact` : "–";
}

function logEvent(kind, text) {
  const list = $("event-log");
  const item = document.createElement("li");
  const label = document.createElement("b");
  label.textContent = `${new Date().toLocaleTimeString()} ${kind}`;
  item.append(label, text);
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

// ------------------------------------------------------------------------------------------- state updates

// "learned from 3 saves, last at 14:05", with "learning now" or "paused" while a background run goes (server/learning.py).
function learningText(learning) {
  if (!learning || !learning.enabled) return "";
  const now = learning.state === "learning" ? " · learning now" : learning.state === "paused" ? " · paused" : "";
  return `${learning.summary}${now}`;
}

function applyStatus(status) {
  state.status = status;
  $("workspace").textContent = status.workspace || "";
  const training = status.training || {};
  const model = status.model || {};
  let label = training.state || "idle";
  if (label === "idle" || label === "done") label = model.present ? "ready" : "untrained";
  const badge = $("state-badge");
  badge.textContent = label;
  badge.className = `badge ${label}`;
  const running = training.state === "training";
  $("train-button").disabled = !state.token || running;
  $("cancel-button").disabled = !state.token || !running;
  if (running && training.step !== undefined) {
    const left = timeLeft(training.secondsRemaining);
    $("progress-text").textContent = `epoch ${training.epoch ?? "–"}/${training.epochs ?? "–"} · step ${training.step}/${training.totalSteps ?? "–"}`
      + (left ? ` · ${left}` : "");
  } else {
    $("progress-text").textContent = training.reason ? training.reason : "";
  }
  $("progress-bar").style.width = `${running ? training.percent || 0 : training.state === "done" ? 100 : 0}%`;
  if (running && Array.isArray(training.spheres) && !state.spheres.length) state.spheres = training.spheres;
  $("learning-text").textContent = learningText(status.learning);
  renderFacts();
  renderAcceptance(status.acceptance);
  state.redraw = true;
}

function resetRun() {
  state.steps = [];
  state.epochs = [];
  state.spheres = [];
  state.last = null;
}

function addStep(event) {
  state.last = event;
  state.steps.push({
    step: event.step, loss: event.loss, tps: event.tokensPerSecond ?? null, imbalance: event.loadImbalance ?? null,
  });
  if (state.steps.length > MAX_STEPS) state.steps.splice(0, state.steps.length - MAX_STEPS);
  if (Array.isArray(event.spheres)) state.spheres = event.spheres;
  updateTraining({
    state: "training", epoch: event.epoch, epochs: event.epochs, step: event.step, totalSteps: event.totalSteps,
    loss: event.loss, percent: event.totalSteps ? Math.round((100 * event.step) / event.totalSteps) : undefined,
    secondsRemaining: event.secondsRemaining,
  });
}

// Fold live event fields into the status' training object (the same names /v1/status uses) and redraw.
function updateTraining(fields) {
  if (!state.status) return;
  const training = state.status.training || (state.status.training = {});
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) training[key] = value;
  applyStatus(state.status);
}

function addEpoch(event) {
  const lastStep = state.steps.length ? state.steps[state.steps.length - 1].step : 0;
  state.epochs.push({
    step: event.step ?? lastStep, epoch: event.epoch, trainLoss: event.trainLoss, valLoss: event.valLoss, bpb: event.valBitsPerByte,
  });
  updateTraining({ valLoss: event.valLoss, valBitsPerByte: event.valBitsPerByte });
}

async function refreshStatus() {
  try {
    const response = await fetch("/v1/status", { headers: authHeaders() });
    if (response.ok) applyStatus(await response.json());
  } catch (err) {
    notice(`cannot reach the cllm server: ${err.message}`, true);
  }
}

function handle(event) {
  switch (event.event) {
    case "status":
      applyStatus(event.status);
      break;
    case "history":
      state.steps = event.steps.map((s) => ({
        step: s.step, loss: s.loss, tps: s.tokensPerSecond ?? null, imbalance: s.loadImbalance ?? null,
      }));
      state.epochs = [];
      for (const e of event.epochs) addEpoch(e);
      break;
    case "training_started":
      resetRun();
      logEvent("training started", JSON.stringify(event.options || {}));
      refreshStatus();
      break;
    case "start":
      logEvent("start", `${fmt(event.files)} files, ${fmt(event.tokens)} tokens, ${fmt(event.totalSteps)} steps`);
      updateTraining({ files: event.files, corpusTokens: event.tokens, totalSteps: event.totalSteps });
      refreshStatus(); // the status summarises the skipped files
      break;
    case "step":
      addStep(event);
      break;
    case "epoch":
      addEpoch(event);
      logEvent("epoch", `${event.epoch}: train ${fmt(event.trainLoss)}, validation ${fmt(event.valLoss)}, ${fmt(event.valBitsPerByte)} bits/byte`);
      break;
    case "checkpoint":
      logEvent("checkpoint", event.path || "");
      break;
    case "error":
      logEvent("error", event.message || "");
      notice(`training error: ${event.message}`, true);
      break;
    case "done":
      logEvent("done", `${fmt(event.steps)} steps, ${fmt(event.tokensPerSecond)} tokens/s, final loss ${fmt(event.finalLoss)}`);
      break;
    case "model_loaded":
      logEvent("model loaded", event.path || "");
      break;
    case "training_finished":
      logEvent("finished", event.state + (event.reason ? `: ${event.reason}` : ""));
      refreshStatus();
      break;
    default:
      break;
  }
  state.redraw = true;
}

// ------------------------------------------------------------------------------------------- event stream

async function followEvents() {
  let delay = 500;
  for (;;) {
    try {
      const response = await fetch("/v1/events", { headers: authHeaders(), cache: "no-store" });
      if (response.status === 401) {
        notice("The server no longer accepts this dashboard's token: reopen the dashboard.", true);
        return pollStatus();
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      delay = 500;
      await readStream(response.body);
    } catch (err) {
      logEvent("disconnected", err.message || String(err));
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 8000);
  }
}

async function readStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data) handle(JSON.parse(data));
    }
  }
}

// Without a token (read-only) the page polls /v1/status and draws the live step it reports.
async function pollStatus() {
  for (;;) {
    await refreshStatus();
    const training = (state.status && state.status.training) || {};
    const last = state.steps.length ? state.steps[state.steps.length - 1].step : -1;
    if (training.state === "training" && Number.isFinite(training.step) && training.step > last) {
      addStep({ step: training.step, loss: training.loss, tokensPerSecond: training.tokensPerSecond,
        spheres: training.spheres, epoch: training.epoch, epochs: training.epochs, totalSteps: training.totalSteps,
        secondsRemaining: training.secondsRemaining });
    }
    state.redraw = true;
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function post(path) {
  try {
    const response = await fetch(path, {
      method: "POST", headers: { ...authHeaders(), "Content-Type": "application/json" }, body: "{}",
    });
    const body = await response.json();
    if (!response.ok) notice(body.error ? body.error.message : `HTTP ${response.status}`, true);
    else notice("");
  } catch (err) {
    notice(`request failed: ${err.message}`, true);
  }
  refreshStatus();
}

// ------------------------------------------------------------------------------------------- drawing

function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

function extent(values, zeroBased = false) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = zeroBased ? 0 : Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-9) { hi += 0.5; lo = zeroBased ? 0 : lo - 0.5; }
  const pad = (hi - lo) * 0.06;
  return [zeroBased ? lo : lo - pad, hi + pad];
}

// A line chart: series = [{points: [[x, y]...], color, axis: "left"|"right", dots}], with its own y scales.
function lineChart(canvas, series, { xLabel, leftFormat = fmt, rightFormat = fmt, zeroBased = false } = {}) {
  const { ctx, width, height } = setupCanvas(canvas);
  const pad = { left: 52, right: series.some((s) => s.axis === "right") ? 52 : 16, top: 12, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(Math.max(...xs), Math.min(...xs) + 1)] : [0, 1];
  const scales = {};
  for (const axis of ["left", "right"]) {
    const values = series.filter((s) => s.axis === axis).flatMap((s) => s.points.map((p) => p[1]));
    scales[axis] = extent(values, zeroBased);
  }
  const X = (x) => pad.left + ((x - x0) / (x1 - x0)) * plotW;
  const Y = (axis, y) => pad.top + (1 - (y - scales[axis][0]) / (scales[axis][1] - scales[axis][0])) * plotH;

  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (i / 4) * plotH;
    ctx.strokeStyle = css("--grid");
    ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(width - pad.right, y); ctx.stroke();
    ctx.fillStyle = css("--muted");
    const frac = 1 - i / 4;
    ctx.textAlign = "right";
    ctx.fillText(leftFormat(scales.left[0] + frac * (scales.left[1] - scales.left[0])), pad.left - 8, y + 4);
    if (pad.right > 16) {
      ctx.textAlign = "left";
      ctx.fillText(rightFormat(scales.right[0] + frac * (scales.right[1] - scales.right[0])), width - pad.right + 8, y + 4);
    }
  }
  ctx.textAlign = "center";
  const ticks = Math.max(1, Math.min(5, Math.round(x1 - x0)));
  for (let i = 0; i <= ticks; i++) {
    const x = Math.round(x0 + (i / ticks) * (x1 - x0));
    ctx.fillText(fmt(x), X(x), height - 10);
  }
  if (!xs.length) {
    ctx.fillText("waiting for training events…", pad.left + plotW / 2, pad.top + plotH / 2);
    return;
  }
  ctx.textAlign = "right";
  ctx.fillText(xLabel || "", width - pad.right, height - 10 - 12);

  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) continue;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = s.width || 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(s.axis, p[1])) : ctx.moveTo(X(p[0]), Y(s.axis, p[1]))));
    ctx.stroke();
    if (s.dots || pts.length === 1) {
      for (const p of pts) {
        ctx.beginPath(); ctx.arc(X(p[0]), Y(s.axis, p[1]), 4, 0, 2 * Math.PI); ctx.fill();
      }
    }
  }
}

function drawLoss() {
  const canvas = $("loss-chart");
  const train = state.steps.map((s) => [s.step, s.loss]);
  const val = state.epochs.filter((e) => Number.isFinite(e.valLoss)).map((e) => [e.step, e.valLoss]);
  lineChart(canvas, [
    { points: train, color: css("--accent"), axis: "left" },
    { points: val, color: css("--val"), axis: "left", dots: true },
  ], { xLabel: "step" });
  canvas.dataset.points = String(train.length);
  canvas.dataset.valPoints = String(val.length);
}

function drawThroughput() {
  const canvas = $("throughput-chart");
  const tps = state.steps.filter((s) => s.tps !== null).map((s) => [s.step, s.tps]);
  const imbalance = state.steps.filter((s) => s.imbalance !== null).map((s) => [s.step, s.imbalance]);
  lineChart(canvas, [
    { points: tps, color: css("--tps"), axis: "left" },
    { points: imbalance, color: css("--imbalance"), axis: "right", width: 1.5 },
  ], { xLabel: "step", rightFormat: pct, zeroBased: true });
  canvas.dataset.points = String(tps.length);
  const last = state.last || {};
  $("metric-tps").textContent = fmt(last.tokensPerSecond, 0);
  $("metric-imbalance").textContent = pct(last.loadImbalance);
  $("metric-sync").textContent = pct(last.syncOverhead);
  $("metric-threads").textContent = fmt(last.threads);
}

function svg(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

// The node that ran sphere i ("" on threads: every sphere on this machine).
function sphereNode(i) {
  return (state.spheres[i] && state.spheres[i].node) || "";
}

// The worker spheres on a ring around the control sphere, the spheres of one Ray node next to each other (in id
// order within it). Fill brightness = busy share of the step (busy / (busy + wait)); the green ring's arc = the
// sphere's share of the step's tokens relative to the busiest sphere; the spoke's opacity follows the busy share too.
function drawSpheres() {
  const root = $("spheres");
  const count = state.spheres.length || (state.status?.model?.spheres ?? 12);
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => sphereNode(a).localeCompare(sphereNode(b)) || a - b);
  const layout = order.map((i) => `${i}@${sphereNode(i)}`).join(" ");
  if (root.dataset.layout !== layout) {
    root.replaceChildren();
    root.dataset.layout = layout;
    const ring = 120;
    const position = (slot) => {
      const angle = (2 * Math.PI * slot) / count - Math.PI / 2;
      return [ring * Math.cos(angle), ring * Math.sin(angle)];
    };
    order.forEach((i, slot) => {
      const [x, y] = position(slot);
      svg("line", { class: "spoke", x1: 0, y1: 0, x2: x, y2: y, "stroke-opacity": 0.1, id: `spoke-${i}` }, root);
    });
    svg("circle", { class: "control", r: 38 }, root);
    const label = svg("text", { y: -6 }, root);
    label.textContent = "control";
    svg("text", { class: "small", y: 10, id: "control-loss" }, root);
    order.forEach((i, slot) => {
      const [x, y] = position(slot);
      const g = svg("g", { class: "sphere", id: `sphere-${i}`, transform: `translate(${x} ${y})`, "data-node": sphereNode(i) }, root);
      svg("circle", { class: "body", r: 22 }, g);
      const circumference = 2 * Math.PI * 26;
      svg("circle", { class: "ring", r: 26, transform: "rotate(-90)", "stroke-dasharray": `0 ${circumference}` }, g);
      const name = svg("text", { y: -3 }, g);
      name.textContent = String(i + 1);
      svg("text", { class: "small", y: 9 }, g);
      svg("title", {}, g);
    });
  }
  const maxTokens = Math.max(1, ...state.spheres.map((s) => s.tokens || 0));
  for (let i = 0; i < count; i++) {
    const s = state.spheres[i] || { tokens: 0, busy: 0, wait: 0 };
    const total = (s.busy || 0) + (s.wait || 0);
    const share = total > 0 ? s.busy / total : 0;
    const g = $(`sphere-${i}`);
    const [body, ring, , small, title] = g.children;
    body.setAttribute("fill", `rgba(90, 169, 255, ${0.08 + 0.82 * share})`);
    const circumference = 2 * Math.PI * 26;
    ring.setAttribute("stroke-dasharray", `${circumference * ((s.tokens || 0) / maxTokens)} ${circumference}`);
    small.textContent = s.tokens ? fmt(s.tokens) : "";
    const where = s.node ? ` on ${s.node}` : "";
    title.textContent = `sphere ${i + 1}${where}: ${fmt(s.tokens)} tokens, busy ${pct(share)}, loss ${fmt(s.loss)}`;
    g.dataset.busy = share.toFixed(4);
    g.dataset.tokens = String(s.tokens || 0);
    $(`spoke-${i}`).setAttribute("stroke-opacity", String(0.1 + 0.6 * share));
  }
  $("control-loss").textContent = state.last ? `loss ${fmt(state.last.loss)}` : "";
  drawNodes();
}

function ms(seconds) {
  return `${fmt(1000 * seconds, 1)} ms`;
}

// On a Ray cluster, one row per node under the ring: its name, its spheres, and their mean busy, wait and
// transfer time in the last step. Hidden on threads (no sphere names a node).
function drawNodes() {
  const groups = new Map();
  for (const s of state.spheres) {
    const node = s.node || "";
    if (!groups.has(node)) groups.set(node, []);
    groups.get(node).push(s);
  }
  const table = $("sphere-nodes");
  const body = table.tBodies[0];
  body.replaceChildren();
  table.hidden = ![...groups.keys()].some(Boolean);
  if (table.hidden) return;
  for (const [node, spheres] of groups) {
    const mean = (key) => spheres.reduce((sum, s) => sum + (s[key] || 0), 0) / spheres.length;
    const row = body.insertRow();
    row.dataset.node = node;
    const cells = [node || "this machine", `${spheres.length} (${spheres.map((s) => s.id + 1).join(", ")})`,
      ms(mean("busy")), ms(mean("wait")), ms(mean("transfer"))];
    for (const text of cells) row.insertCell().textContent = text;
  }
}

/** Which model serves and where it came from, in the words of the VS Code extension (vscode-extension/src/status.ts
 * modelOrigin); "–" (left out) for a model trained from scratch. */
function modelOrigin(model) {
  if (model.serving === "base") return "serving: base model (fine-tune with Train on Workspace)";
  if (model.base && typeof model.base.path === "string") return `fine-tuned from ${model.base.path}`;
  return "–";
}

function renderFacts() {
  const status = state.status || {};
  const model = status.model || {};
  const cfg = model.config || {};
  const training = status.training || {};
  const run = training.state === "training" ? [
    ["this run", `epoch ${fmt(training.epoch)} of ${fmt(training.epochs)}`],
    ["run files", fmt(training.files)],
    ["run tokens", fmt(training.corpusTokens)],
    ["run loss", fmt(training.loss)],
    ["run validation bits/byte", fmt(training.valBitsPerByte)],
    ["time left", timeLeft(training.secondsRemaining) || "–"],
  ] : [];
  const skipped = training.skipped && training.skipped.count > 0 ? [["skipped files", training.skipped.summary]] : [];
  const rows = model.present ? [
    ["origin", modelOrigin(model)],
    ["held-out line completion", exactMatch(model.lineExactMatch)],
    ["files", fmt(model.files)],
    ["tokens", fmt(model.tokens)],
    ["epochs", fmt(model.epochs)],
    ["steps", fmt(model.steps)],
    ["last loss", fmt(model.lastLoss)],
    ["validation bits/byte", fmt(model.valBitsPerByte)],
    ["spheres / threads", `${fmt(model.spheres)} / ${fmt(model.threads)}`],
    ["shape", cfg.dModel ? `d ${cfg.dModel} · ${cfg.layers} layers · ${cfg.heads} heads · vocab ${fmt(cfg.vocabSize)}` : "–"],
    ["trained", model.trainedAt ? new Date(model.trainedAt).toLocaleString() : "–"],
  ] : [["model", model.error ? `unusable: ${model.error}` : run.length ? "none yet: training" : "none yet: press Train"]];
  fillList($("facts"), rows.concat(run, skipped));
}

/** A <dl> of [key, value] rows, those without a value ("–") left out. */
function fillList(list, rows) {
  list.replaceChildren();
  for (const [key, value] of rows.filter((row) => row[1] !== "–")) {
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
}

/** The acceptance counts (docs/protocol.md), in the words of the VS Code status view (vscode-extension/src/acceptance.ts). */
function renderAcceptance(counts) {
  if (!counts || typeof counts.shown !== "number") return fillList($("acceptance"), []);
  fillList($("acceptance"), [
    ["shown", fmt(counts.shown)],
    ["accepted whole", fmt(counts.accepted)],
    ["accepted in part", fmt(counts.partiallyAccepted)],
    ["acceptance rate", typeof counts.acceptanceRate === "number" ? `${Math.round(100 * counts.acceptanceRate)} %` : "–"],
    ["characters accepted", fmt(counts.charactersAccepted)],
    ["characters typed by cllm today", fmt(counts.charactersToday)],
  ]);
}

// Accepts send no event: with a token the page reads the counts from /v1/status now and then.
async function refreshAcceptance() {
  try {
    const response = await fetch("/v1/status", { headers: authHeaders() });
    if (response.ok) renderAcceptance((await response.json()).acceptance);
  } catch (err) {
    // the event stream reports an unreachable server
  }
}

function frame() {
  if (state.redraw) {
    state.redraw = false;
    drawLoss();
    drawThroughput();
    drawSpheres();
  }
  requestAnimationFrame(frame);
}

function main() {
  takeToken();
  $("train-button").addEventListener("click", () => post("/v1/train"));
  $("cancel-button").addEventListener("click", () => post("/v1/train/cancel"));
  window.addEventListener("resize", () => { state.redraw = true; });
  state.redraw = true;
  requestAnimationFrame(frame);
  if (state.token) {
    followEvents();
    setInterval(refreshAcceptance, ACCEPTANCE_REFRESH_MS);
  }
  else pollStatus();
}

main();
