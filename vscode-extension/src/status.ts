/**
 * What the extension knows about the server's model and training, and how the status bar and the progress
 * notification put it into words. Plain TypeScript (no `vscode` import) so that it is unit-tested directly.
 *
 * Sources: the `cllm.status` command's object (server/workspace.py `Workspace.status()`) and the
 * `cllm/sphereActivity` notifications sent while training and once when it ends. Their field names are the
 * camelCase names of the training events (docs/protocol.md); tests/engine/test_events.py checks them.
 */
import type { AcceptanceCounts } from "./acceptance";
import { fixed, formatAge, formatCount, formatExactMatch, formatTimeLeft, plural } from "./format";

/** One worker sphere in a `cllm/sphereActivity` notification. */
export interface SphereActivity {
  /** From 0 on the wire; shown as `id + 1` (sphereNumber), so the spheres are 1 to 12 as on the dashboard. */
  id: number;
  busy?: number;
  tokens?: number;
  /** Seconds of the step's parallel phase it did not compute. */
  wait?: number;
  /** The Ray node that ran it ("10.0.0.1"); "" (or absent) on threads, where every sphere runs on this machine. */
  node?: string;
  /** Seconds moving its weights and shard in and its gradient out (Ray only). */
  transfer?: number;
}

/** The `cllm/sphereActivity` notification (also built from a status object while training). */
export interface Activity {
  state: string;
  epoch?: number;
  epochs?: number;
  step?: number;
  totalSteps?: number;
  loss?: number;
  tokensPerSecond?: number;
  /** The trainer's estimate of the time left, in seconds. */
  secondsRemaining?: number;
  spheres?: SphereActivity[];
  reason?: string | null;
}

/** `status().model.base`: the base model (`cllm pretrain`) a fine-tuned model started from. */
export interface BaseInfo {
  path: string;
  weightsSha256: string;
}

/** `status().model`: the model serving completions (the workspace's last good model, or the base before it has one). */
export interface ModelInfo {
  present: boolean;
  /** "workspace": the workspace's own model; "base": the base model, until the workspace is trained. */
  serving?: "base" | "workspace";
  /** The base a fine-tuned model started from; null for a model trained from scratch (and for the base itself). */
  base?: BaseInfo | null;
  path?: string;
  trainedAt?: string | null;
  files?: number | null;
  tokens?: number | null;
  epochs?: number | null;
  steps?: number | null;
  lastLoss?: number | null;
  valBitsPerByte?: number | null;
  /** Share (0 to 1) of held-out line completions exactly right: the number the status bar shows. */
  lineExactMatch?: number | null;
  spheres?: number | null;
  threads?: number | null;
  config?: Record<string, number>;
}

/** `status().training.skipped`: the files the corpus scan left out. */
export interface SkippedFiles {
  count: number;
  reasons: Record<string, number>;
  /** "skipped 8: 3 binary, 2 secret, ..." */
  summary: string;
}

/** `status().training`: the current or last training run. */
export interface TrainingInfo extends Partial<Activity> {
  state: string;
  startedAt?: string;
  finishedAt?: string;
  percent?: number;
  valBitsPerByte?: number;
  lineExactMatch?: number | null;
  timeBudget?: number | null;
  skipped?: SkippedFiles;
  options?: Record<string, number>;
}

/** `status().learning`: background learning from saves while the editor is idle (server/learning.py). */
export interface LearningInfo {
  enabled: boolean;
  /** "off", "idle", "waiting", "learning" or "paused". */
  state: string;
  saves: number;
  pending: number;
  lastAt: string | null;
  /** "learned from 3 saves, last at 14:05" */
  summary: string;
  outcome: string | null;
  reason: string | null;
}

/** The object returned by the server's `cllm.status` command. */
export interface ServerStatus {
  workspace?: string;
  modelDir?: string;
  /** False when the `enable` setting switched completions off. */
  enabled?: boolean;
  model: ModelInfo;
  training: TrainingInfo;
  /** How often the workspace's suggestions were taken (absent from servers before the counts existed). */
  acceptance?: AcceptanceCounts;
  /** Learning from saves (absent from servers before it existed). */
  learning?: LearningInfo;
}

/** What the status bar shows. */
export type ViewState =
  | { kind: "starting" }
  | { kind: "disabled" }
  | { kind: "untrained" }
  | { kind: "training"; activity: Activity }
  | { kind: "ready"; model: ModelInfo }
  | { kind: "error"; message: string };

/** The status-bar item's words. */
export interface StatusText {
  text: string;
  tooltip: string;
  error: boolean;
}

// The status-bar item's click toggles suggestions (suggestions.ts); the tooltip's link opens the status view.
const CLICK = "Click to turn suggestions off.";
const FULL = "\u2b22"; // ⬢
const EMPTY = "\u2b21"; // ⬡

/** True while a training run is going on, by the server's state word. */
export function isTraining(state: string | undefined): boolean {
  return state === "training" || state === "starting";
}

/** Read an untrusted status answer; undefined when it is not the expected object. */
export function parseStatus(value: unknown): ServerStatus | undefined {
  if (!isObject(value)) return undefined;
  const item = Array.isArray(value.workspaces) && isObject(value.workspaces[0]) ? value.workspaces[0] : value;
  if (!isObject(item.model) || !isObject(item.training) || typeof item.training.state !== "string") return undefined;
  return item as unknown as ServerStatus;
}

/** Read an untrusted `cllm/sphereActivity` notification; undefined when it has no state. */
export function parseActivity(value: unknown): Activity | undefined {
  if (!isObject(value) || typeof value.state !== "string") return undefined;
  return value as unknown as Activity;
}

/** The view for a `cllm.status` answer. */
export function stateFromStatus(status: ServerStatus): ViewState {
  if (isTraining(status.training.state)) {
    return { kind: "training", activity: { ...status.training, state: status.training.state } };
  }
  return status.model.present ? { kind: "ready", model: status.model } : { kind: "untrained" };
}

/** The view after one activity notification while training (earlier numbers are kept when one is missing). */
export function mergeActivity(previous: ViewState, activity: Activity): ViewState {
  const before = previous.kind === "training" ? previous.activity : undefined;
  const merged: Activity = { ...before, state: activity.state };
  for (const [key, value] of Object.entries(activity)) {
    if (value !== undefined && value !== null) (merged as unknown as Record<string, unknown>)[key] = value;
  }
  return { kind: "training", activity: merged };
}

/** The status-bar text and tooltip of a view; `now` dates the model's age. */
export function statusText(state: ViewState, now: Date): StatusText {
  switch (state.kind) {
    case "starting":
      return { text: "$(sync~spin) CLLM", tooltip: "CLLM: starting the language server", error: false };
    case "disabled":
      return { text: `${EMPTY} CLLM off`, tooltip: "CLLM suggestions are off (setting cllm.enable). Click to turn them on.", error: false };
    case "untrained":
      return {
        text: `${EMPTY} CLLM: untrained`,
        tooltip: `No model for this workspace yet: run "CLLM: Train on Workspace". ${CLICK}`,
        error: false,
      };
    case "training":
      return trainingText(state.activity);
    case "ready":
      return readyText(state.model, now);
    case "error":
      return { text: "$(error) CLLM", tooltip: `CLLM: ${state.message}`, error: true };
  }
}

function trainingText(activity: Activity): StatusText {
  const parts = [`${FULL} ${activity.spheres?.length ?? "?"} spheres`];
  if (typeof activity.tokensPerSecond === "number") parts.push(`${formatCount(activity.tokensPerSecond)} tok/s`);
  const loss = fixed(activity.loss, 2);
  if (loss) parts.push(`loss ${loss}`);
  const epoch = epochText(activity);
  if (epoch) parts.push(epoch);
  const left = formatTimeLeft(activity.secondsRemaining);
  if (left) parts.push(left);
  if (parts.length === 1) parts.push("starting");
  const nodes = spheresPerNode(activity.spheres);
  const where = nodes ? ` ${nodes}.` : "";
  return { text: parts.join(" \u00b7 "), tooltip: `CLLM training: ${progressMessage(activity)}.${where} ${CLICK}`, error: false };
}

/** The spheres grouped by the node that ran them, nodes in the order of their first sphere ("" for threads). */
export function spheresByNode(spheres: SphereActivity[]): [node: string, spheres: SphereActivity[]][] {
  const groups = new Map<string, SphereActivity[]>();
  for (const sphere of spheres) {
    const node = typeof sphere.node === "string" ? sphere.node : "";
    groups.set(node, [...(groups.get(node) ?? []), sphere]);
  }
  return [...groups.entries()];
}

/** Where the spheres run on a Ray cluster: "12 spheres on 2 nodes: 10.0.0.1 6, 10.0.0.2 6". Undefined on threads
 * (no sphere names a node): they all run on this machine, which the status bar does not need to say. */
export function spheresPerNode(spheres: SphereActivity[] | undefined): string | undefined {
  const groups = spheresByNode(spheres ?? []);
  if (!groups.some(([node]) => node)) return undefined;
  const counts = groups.map(([node, group]) => `${node || "this machine"} ${group.length}`);
  return `${plural(spheres?.length ?? 0, "sphere")} on ${plural(groups.length, "node")}: ${counts.join(", ")}`;
}

function epochText(activity: Activity): string | undefined {
  if (typeof activity.epoch !== "number") return undefined;
  return typeof activity.epochs === "number" ? `${activity.epoch}/${activity.epochs}` : `epoch ${activity.epoch}`;
}

/** The ready text leads with the held-out line exact match ("38 % lines exact"); bits per byte, which few people
 * read, go to the tooltip (and stand in for the exact match on models trained before it was measured). */
function readyText(model: ModelInfo, now: Date): StatusText {
  const age = formatAge(model.trainedAt, now);
  const exact = formatExactMatch(model.lineExactMatch);
  const bpb = fixed(model.valBitsPerByte, 2);
  const parts = [`${FULL} CLLM`];
  if (age) parts.push(age);
  if (exact) parts.push(exact);
  else if (bpb) parts.push(`${bpb} bpb`);
  const facts = [
    age ? `trained ${age}` : "trained",
    typeof model.files === "number" ? `on ${model.files} files` : undefined,
    typeof model.tokens === "number" ? `(${formatCount(model.tokens)} tokens)` : undefined,
    typeof model.epochs === "number" ? `${model.epochs} epochs` : undefined,
  ].filter(Boolean);
  const scores = [
    exact ? `${exact} (held-out lines completed exactly)` : undefined,
    bpb ? `${bpb} bits per byte (lower is better)` : undefined,
  ].filter(Boolean);
  const score = scores.length ? `; held-out ${scores.join(", ")}` : "";
  const origin = modelOrigin(model);
  const from = origin ? `; ${origin}` : "";
  return { text: parts.join(" \u00b7 "), tooltip: `CLLM model ${facts.join(" ")}${score}${from}. ${CLICK}`, error: false };
}

/** Which model serves and where it came from: "serving: base model (fine-tune with Train on Workspace)" before the
 * workspace has its own, "fine-tuned from /path/base.cllm" for a fine-tuned one; undefined for a scratch model.
 * The dashboard (server/http/dashboard/app.js) says the same. */
export function modelOrigin(model: ModelInfo): string | undefined {
  if (model.serving === "base") return "serving: base model (fine-tune with Train on Workspace)";
  if (model.base && typeof model.base.path === "string") return `fine-tuned from ${model.base.path}`;
  return undefined;
}

/** The progress notification's line, e.g. "epoch 3/10 · loss 2.41 · 3.1k tok/s". */
export function progressMessage(activity: Activity): string {
  const parts: string[] = [];
  const epoch = epochText(activity);
  if (epoch) parts.push(epoch.startsWith("epoch") ? epoch : `epoch ${epoch}`);
  const loss = fixed(activity.loss, 2);
  if (loss) parts.push(`loss ${loss}`);
  if (typeof activity.tokensPerSecond === "number") parts.push(`${formatCount(activity.tokensPerSecond)} tok/s`);
  const left = formatTimeLeft(activity.secondsRemaining);
  if (left) parts.push(left);
  return parts.length ? parts.join(" \u00b7 ") : "preparing the corpus and the model";
}

/** The number people read for a sphere: 1 to 12 (the wire's `id` counts from 0). */
export function sphereNumber(sphere: SphereActivity): number {
  return sphere.id + 1;
}

/** Fraction of the run done in percent (by steps, else by epochs), or undefined when unknown. */
export function progressPercent(activity: Activity): number | undefined {
  const { step, totalSteps, epoch, epochs } = activity;
  if (typeof step === "number" && typeof totalSteps === "number" && totalSteps > 0) {
    return clampPercent((100 * step) / totalSteps);
  }
  if (typeof epoch === "number" && typeof epochs === "number" && epochs > 0) {
    return clampPercent((100 * Math.max(0, epoch - 1)) / epochs);
  }
  return undefined;
}

function clampPercent(value: number): number {
  return Math.max(0, Math.min(100, Math.round(value)));
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
