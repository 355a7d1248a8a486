import assert from "node:assert/strict";
import { test } from "node:test";

import { ServerStatus, mergeActivity, parseActivity, parseStatus, progressMessage, progressPercent, sphereNumber, spheresPerNode, stateFromStatus, statusText } from "../src/status";

const NOW = new Date("2026-11-26T12:00:00Z");
const twelve = Array.from({ length: 12 }, (_, id) => ({ id, busy: 0.8, tokens: 1000 }));

function status(model: Partial<ServerStatus["model"]>, training: Partial<ServerStatus["training"]> = {}): ServerStatus {
  return { workspace: "/w", modelDir: "/m", model: { present: false, ...model }, training: { state: "idle", ...training } };
}

test("training text shows spheres, throughput, loss and epoch", () => {
  const state = mergeActivity({ kind: "untrained" }, { state: "training", epoch: 3, epochs: 10, loss: 2.4113, tokensPerSecond: 3140, spheres: twelve });
  assert.equal(statusText(state, NOW).text, "\u2b22 12 spheres \u00b7 3.1k tok/s \u00b7 loss 2.41 \u00b7 3/10");
});

test("training text before the first step says it is starting", () => {
  const text = statusText({ kind: "training", activity: { state: "training" } }, NOW).text;
  assert.equal(text, "\u2b22 ? spheres \u00b7 starting");
});

test("activity keeps earlier numbers that a later notification leaves out", () => {
  const first = mergeActivity({ kind: "untrained" }, { state: "training", epoch: 1, epochs: 4, spheres: twelve });
  const second = mergeActivity(first, { state: "training", epoch: 2, loss: 3.5 });
  assert.equal(second.kind, "training");
  assert.equal(statusText(second, NOW).text, "\u2b22 12 spheres \u00b7 loss 3.50 \u00b7 2/4");
});

test("ready text shows the model's age and validation score", () => {
  const state = stateFromStatus(status({ present: true, trainedAt: "2026-11-26T11:55:00Z", valBitsPerByte: 1.923, files: 7, tokens: 41000, epochs: 10 }));
  const words = statusText(state, NOW);
  assert.equal(words.text, "\u2b22 CLLM \u00b7 5 min ago \u00b7 1.92 bpb");
  assert.match(words.tooltip, /on 7 files \(41k tokens\) 10 epochs; held-out 1.92 bits per byte/);
  assert.equal(words.error, false);
});

test("untrained, error and disabled states", () => {
  assert.equal(stateFromStatus(status({ present: false })).kind, "untrained");
  assert.equal(statusText({ kind: "untrained" }, NOW).text, "\u2b21 CLLM: untrained");
  const error = statusText({ kind: "error", message: "Cannot find the cllm language server." }, NOW);
  assert.equal(error.error, true);
  assert.match(error.tooltip, /Cannot find/);
  assert.equal(statusText({ kind: "disabled" }, NOW).text, "\u2b21 CLLM off");
});

test("a status object of a running training maps to the training state", () => {
  const state = stateFromStatus(status({ present: true }, { state: "training", epoch: 2, epochs: 3, spheres: twelve }));
  assert.equal(state.kind, "training");
  assert.equal(statusText(state, NOW).text, "\u2b22 12 spheres \u00b7 2/3");
});

test("progress message and percent", () => {
  assert.equal(progressMessage({ state: "training", epoch: 3, epochs: 10, loss: 2.41, tokensPerSecond: 3100 }), "epoch 3/10 \u00b7 loss 2.41 \u00b7 3.1k tok/s");
  assert.equal(progressMessage({ state: "training" }), "preparing the corpus and the model");
  assert.equal(progressPercent({ state: "training", step: 25, totalSteps: 100 }), 25);
  assert.equal(progressPercent({ state: "training", epoch: 2, epochs: 4 }), 25);
  assert.equal(progressPercent({ state: "training" }), undefined);
});

test("untrusted answers are checked before use", () => {
  assert.equal(parseStatus({ error: "no workspace folder is open", workspaces: [] }), undefined);
  assert.equal(parseStatus("nonsense"), undefined);
  assert.ok(parseStatus({ model: { present: false }, training: { state: "idle" }, workspaces: ["/w"] }));
  assert.equal(parseActivity({ epoch: 1 }), undefined);
  assert.equal(parseActivity({ state: "done" })?.state, "done");
});

test("ready text leads with the held-out line exact match; bits per byte go to the tooltip", () => {
  const state = stateFromStatus(status({ present: true, trainedAt: "2026-11-26T11:55:00Z", valBitsPerByte: 1.923, lineExactMatch: 0.38, files: 7 }));
  const words = statusText(state, NOW);
  assert.equal(words.text, "\u2b22 CLLM \u00b7 5 min ago \u00b7 38 % lines exact");
  assert.match(words.tooltip, /held-out 38 % lines exact \(held-out lines completed exactly\), 1.92 bits per byte \(lower is better\)/);
});

test("training text, progress message and notification say the time left", () => {
  const state = mergeActivity({ kind: "untrained" }, { state: "training", epoch: 1, epochs: 4, secondsRemaining: 412.5, spheres: twelve });
  assert.equal(statusText(state, NOW).text, "\u2b22 12 spheres \u00b7 1/4 \u00b7 ~7 min left");
  assert.equal(progressMessage({ state: "training", epoch: 1, epochs: 4, tokensPerSecond: 2000, secondsRemaining: 30 }),
    "epoch 1/4 \u00b7 2k tok/s \u00b7 <1 min left");
  assert.equal(progressMessage({ state: "training", secondsRemaining: 7500 }), "~2 h 5 min left");
});

test("spheres are numbered 1 to 12, as on the dashboard", () => {
  assert.deepEqual(twelve.map(sphereNumber), Array.from({ length: 12 }, (_, i) => i + 1));
});

test("tooltip says when the base model serves, and which base a fine-tuned model came from", () => {
  const base = statusText(stateFromStatus(status({ present: true, serving: "base", files: 900, base: null })), NOW);
  assert.match(base.tooltip, /; serving: base model \(fine-tune with Train on Workspace\)\. Click to turn suggestions off\./);
  const tuned = stateFromStatus(status({ present: true, serving: "workspace",
    base: { path: "/cache/cllm/base.cllm", weightsSha256: "ab12" }, files: 7 }));
  assert.match(statusText(tuned, NOW).tooltip, /on 7 files; fine-tuned from \/cache\/cllm\/base\.cllm\. Click/);
  const scratch = statusText(stateFromStatus(status({ present: true, serving: "workspace", base: null })), NOW);
  assert.doesNotMatch(scratch.tooltip, /base/);
});

test("on a Ray cluster the tooltip says the spheres per node; on threads it says no node, as before", () => {
  const onTwo = twelve.map((sphere) => ({ ...sphere, node: sphere.id % 2 ? "10.0.0.2" : "10.0.0.1", transfer: 0.01 }));
  const state = mergeActivity({ kind: "untrained" }, { state: "training", epoch: 1, epochs: 4, spheres: onTwo });
  const { text, tooltip } = statusText(state, NOW);
  assert.equal(text, "\u2b22 12 spheres \u00b7 1/4");
  assert.equal(tooltip, "CLLM training: epoch 1/4. 12 spheres on 2 nodes: 10.0.0.1 6, 10.0.0.2 6. Click to turn suggestions off.");
  assert.equal(spheresPerNode(onTwo.slice(0, 1)), "1 sphere on 1 node: 10.0.0.1 1");
  const threads = mergeActivity({ kind: "untrained" }, { state: "training", epoch: 1, epochs: 4, spheres: twelve.map((s) => ({ ...s, node: "" })) });
  assert.equal(statusText(threads, NOW).tooltip, "CLLM training: epoch 1/4. Click to turn suggestions off.");
  assert.equal(spheresPerNode(twelve), undefined);
});
