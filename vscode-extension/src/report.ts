/**
 * The "CLLM: Show Status" view: the server's status object (and the live sphere activity while training)
 * rendered as a small self-contained HTML page. No `vscode` import: unit-tested directly.
 */
import { acceptanceRows } from "./acceptance";
import { fixed, formatAge, formatCount, formatExactMatch, plural } from "./format";
import { Activity, LearningInfo, ServerStatus, SphereActivity, isTraining, modelOrigin, progressMessage, progressPercent, sphereNumber, spheresByNode, spheresPerNode } from "./status";

/** One labelled fact. */
export type Row = [label: string, value: string];

/** The facts shown about the model, in order; missing ones are left out. */
export function modelRows(status: ServerStatus, now: Date): Row[] {
  const model = status.model;
  if (!model.present) return [["Model", "none yet: run \u201cCLLM: Train on Workspace\u201d"]];
  const rows: Row[] = [];
  const origin = modelOrigin(model);
  if (origin) rows.push(["Origin", origin]);
  const age = formatAge(model.trainedAt, now);
  if (model.trainedAt) rows.push(["Trained", age ? `${age} (${model.trainedAt})` : model.trainedAt]);
  if (typeof model.files === "number") rows.push(["Files", String(model.files)]);
  if (typeof model.tokens === "number") rows.push(["Tokens", formatCount(model.tokens)]);
  if (typeof model.epochs === "number") rows.push(["Epochs", String(model.epochs)]);
  if (typeof model.steps === "number") rows.push(["Steps", String(model.steps)]);
  const loss = fixed(model.lastLoss, 3);
  if (loss) rows.push(["Last training loss", loss]);
  const exact = formatExactMatch(model.lineExactMatch);
  if (exact) rows.push(["Held-out line completion", exact]);
  const bpb = fixed(model.valBitsPerByte, 3);
  if (bpb) rows.push(["Held-out bits per byte", bpb]);
  if (typeof model.spheres === "number") rows.push(["Spheres / threads", `${model.spheres} / ${model.threads ?? "?"}`]);
  if (model.config) {
    const c = model.config;
    rows.push(["Shape", `${c.layers} layers \u00b7 d ${c.dModel} \u00b7 ${c.heads} heads \u00b7 ffn ${c.ffn} \u00b7 vocab ${c.vocabSize}`]);
  }
  if (model.path) rows.push(["File", model.path]);
  return rows;
}

/** The facts shown about the current or last training run. */
export function trainingRows(status: ServerStatus, activity: Activity | undefined): Row[] {
  const training = status.training;
  const live = activity && isTraining(activity.state) ? activity : training;
  const rows: Row[] = [["State", live.state ?? training.state]];
  if (isTraining(live.state)) {
    rows.push(["Progress", progressMessage(live as Activity)]);
    const percent = progressPercent(live as Activity);
    if (percent !== undefined) rows.push(["Done", `${percent}%`]);
    const nodes = spheresPerNode(live.spheres);
    if (nodes) rows.push(["Spheres", nodes]);
  }
  if (training.startedAt) rows.push(["Started", training.startedAt]);
  if (training.finishedAt) rows.push(["Finished", training.finishedAt]);
  if (training.reason) rows.push(["Reason", String(training.reason)]);
  if (training.skipped && training.skipped.count > 0) rows.push(["Skipped files", training.skipped.summary]);
  return rows;
}

/** The facts shown about learning from saves; none before the server reports them. */
export function learningRows(learning: LearningInfo | undefined): Row[] {
  if (!learning || typeof learning.enabled !== "boolean") return [];
  if (!learning.enabled) return [["Learning while idle", "off (the learnWhileIdle setting)"]];
  const rows: Row[] = [["Learning while idle", learning.summary], ["State", learning.state]];
  if (learning.pending > 0) rows.push(["Saves waiting", String(learning.pending)]);
  if (learning.outcome) rows.push(["Last run", learning.reason ? `${learning.outcome}: ${learning.reason}` : learning.outcome]);
  return rows;
}

/** The whole page. `cspSource` is the webview's resource origin (none is loaded; styles are inline). */
export function renderStatusPage(status: ServerStatus | undefined, activity: Activity | undefined, now: Date, problem?: string): string {
  const body: string[] = ["<h1>CLLM</h1>"];
  if (problem) body.push(`<p class="problem">${escapeHtml(problem)}</p>`);
  if (status) {
    if (status.workspace) body.push(`<p class="muted">Workspace ${escapeHtml(status.workspace)}<br>Models in ${escapeHtml(status.modelDir ?? "?")}</p>`);
    body.push("<h2>Model</h2>", table(modelRows(status, now)));
    body.push("<h2>Training</h2>", table(trainingRows(status, activity)));
    const accepted = acceptanceRows(status.acceptance);
    if (accepted.length) body.push("<h2>Suggestions</h2>", table(accepted));
    const learning = learningRows(status.learning);
    if (learning.length) body.push("<h2>Learning</h2>", table(learning));
    const spheres = (activity && isTraining(activity.state) ? activity.spheres : status.training.spheres) ?? [];
    if (spheres.length) body.push("<h2>Spheres</h2>", ...nodeGrids(spheres));
  }
  return `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';">
<style>${STYLE}</style></head><body>${body.join("\n")}</body></html>`;
}

function table(rows: Row[]): string {
  const lines = rows.map(([label, value]) => `<tr><th>${escapeHtml(label)}</th><td>${escapeHtml(value)}</td></tr>`);
  return `<table>${lines.join("")}</table>`;
}

/** One grid of spheres per node on a Ray cluster, under the node's name; one grid without a name on threads. */
function nodeGrids(spheres: SphereActivity[]): string[] {
  const busiest = Math.max(0, ...spheres.map((sphere) => (typeof sphere.busy === "number" ? sphere.busy : 0)));
  return spheresByNode(spheres).map(([node, group]) => {
    const heading = node ? `<h3>${escapeHtml(node)}: ${plural(group.length, "sphere")}</h3>` : "";
    return heading + sphereGrid(group, busiest);
  });
}

/** The spheres, each shaded by its busy time relative to `busiest` (balanced work = even shades). */
function sphereGrid(spheres: SphereActivity[], busiest: number): string {
  const cells = spheres.map((sphere) => {
    const busy = typeof sphere.busy === "number" ? sphere.busy : 0;
    const share = busiest > 0 ? busy / busiest : 0;
    const tokens = typeof sphere.tokens === "number" ? `${formatCount(sphere.tokens)} tok` : "";
    return `<div class="sphere" title="sphere ${sphereNumber(sphere)}"><div class="dot" style="opacity:${(0.25 + 0.75 * share).toFixed(2)}">` +
      `${sphereNumber(sphere)}</div><div>${formatSeconds(busy)} busy</div><div class="muted">${tokens}</div></div>`;
  });
  return `<div class="spheres">${cells.join("")}</div>`;
}

/** Seconds as "850 ms" or "1.2 s". */
export function formatSeconds(seconds: number): string {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

/** Text made safe to place inside HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

const STYLE = `body{font-family:var(--vscode-font-family);color:var(--vscode-foreground);padding:0 1em}
th{text-align:left;font-weight:normal;color:var(--vscode-descriptionForeground);padding:2px 1.5em 2px 0}
.muted{color:var(--vscode-descriptionForeground)}.problem{color:var(--vscode-errorForeground)}
.spheres{display:grid;grid-template-columns:repeat(auto-fill,minmax(5.5em,1fr));gap:.6em;max-width:42em}.sphere{text-align:center;font-size:.85em}
.dot{margin:0 auto .2em;width:2.4em;height:2.4em;line-height:2.4em;border-radius:50%;
background:var(--vscode-progressBar-background);color:var(--vscode-editor-background);font-weight:bold}`;
