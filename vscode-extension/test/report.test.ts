import assert from "node:assert/strict";
import { test } from "node:test";

import { RestartPolicy } from "../src/crashes";
import { formatAge, formatCount } from "../src/format";
import { escapeHtml, formatSeconds, learningRows, modelRows, renderStatusPage, trainingRows } from "../src/report";
import { ServerStatus } from "../src/status";

const NOW = new Date("2026-11-26T12:00:00Z");
const STATUS: ServerStatus = {
  workspace: "/src/<proj>",
  modelDir: "/cache/m",
  model: { present: true, trainedAt: "2026-11-26T09:00:00Z", files: 7, tokens: 41000, epochs: 10, valBitsPerByte: 1.9234, lineExactMatch: 0.384, spheres: 12, threads: 2 },
  training: { state: "failed", reason: "out of memory", finishedAt: "2026-11-26T11:00:00Z",
    skipped: { count: 3, reasons: { binary: 2, secret: 1 }, summary: "skipped 3: 2 binary, 1 secret" } },
};

test("model rows name the facts of the model", () => {
  const rows = Object.fromEntries(modelRows(STATUS, NOW));
  assert.equal(rows["Trained"], "3 h ago (2026-11-26T09:00:00Z)");
  assert.equal(rows["Held-out line completion"], "38 % lines exact");
  assert.equal(rows["Held-out bits per byte"], "1.923");
  assert.equal(rows["Spheres / threads"], "12 / 2");
  assert.deepEqual(modelRows({ ...STATUS, model: { present: false } }, NOW)[0][0], "Model");
  assert.equal(rows["Origin"], undefined);
});

test("model rows say which model serves and which base it came from", () => {
  const base = Object.fromEntries(modelRows({ ...STATUS, model: { ...STATUS.model, serving: "base" } }, NOW));
  assert.equal(base["Origin"], "serving: base model (fine-tune with Train on Workspace)");
  const tuned = { ...STATUS.model, serving: "workspace" as const, base: { path: "/c/base.cllm", weightsSha256: "ab" } };
  assert.equal(Object.fromEntries(modelRows({ ...STATUS, model: tuned }, NOW))["Origin"], "fine-tuned from /c/base.cllm");
});

test("training rows prefer the live activity while training", () => {
  const rows = Object.fromEntries(trainingRows(STATUS, { state: "training", epoch: 2, epochs: 4, loss: 3.2 }));
  assert.equal(rows["State"], "training");
  assert.equal(rows["Progress"], "epoch 2/4 \u00b7 loss 3.20");
  assert.equal(Object.fromEntries(trainingRows(STATUS, undefined))["Reason"], "out of memory");
  assert.equal(Object.fromEntries(trainingRows(STATUS, undefined))["Skipped files"], "skipped 3: 2 binary, 1 secret");
});

test("the page escapes what it shows and draws every sphere", () => {
  const spheres = Array.from({ length: 12 }, (_, id) => ({ id, busy: id === 0 ? 0.025 : 0.05, tokens: 2048 }));
  const page = renderStatusPage(STATUS, { state: "training", spheres }, NOW);
  assert.ok(page.includes("/src/&lt;proj&gt;"));
  assert.equal(page.match(/class="sphere"/g)?.length, 12);
  assert.equal(page.match(/opacity:1.00/g)?.length, 11, "the busiest spheres are drawn fully");
  assert.ok(page.includes("opacity:0.63") && page.includes("25 ms busy"));
  assert.ok(page.includes('title="sphere 1"') && page.includes('title="sphere 12"') && !page.includes('title="sphere 0"'));
  assert.equal(escapeHtml(`<a href="x">&'`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
});

test("the page says what learning from saves did, and nothing for servers without it", () => {
  const learning = { enabled: true, state: "waiting", saves: 3, pending: 2, lastAt: "2026-11-26T11:05:00+01:00",
    summary: "learned from 3 saves, last at 11:05", outcome: "discarded", reason: "no better than the serving model's" };
  const rows = Object.fromEntries(learningRows(learning));
  assert.equal(rows["Learning while idle"], "learned from 3 saves, last at 11:05");
  assert.equal(rows["Saves waiting"], "2");
  assert.equal(rows["Last run"], "discarded: no better than the serving model's");
  assert.deepEqual(learningRows({ ...learning, enabled: false }), [["Learning while idle", "off (the learnWhileIdle setting)"]]);
  assert.equal(Object.fromEntries(learningRows({ ...learning, pending: 0, outcome: null }))["Saves waiting"], undefined);
  assert.ok(renderStatusPage({ ...STATUS, learning }, undefined, NOW).includes("<h2>Learning</h2>"));
  assert.ok(!renderStatusPage(STATUS, undefined, NOW).includes("<h2>Learning</h2>"));
});

test("numbers and ages are short", () => {
  assert.equal(formatSeconds(0.0254), "25 ms");
  assert.equal(formatSeconds(1.25), "1.3 s");
  assert.equal(formatCount(950), "950");
  assert.equal(formatCount(3140), "3.1k");
  assert.equal(formatCount(250_000), "250k");
  assert.equal(formatCount(2_500_000), "2.5M");
  assert.equal(formatAge("2026-11-26T11:59:30Z", NOW), "just now");
  assert.equal(formatAge("2026-11-23T12:00:00Z", NOW), "3 days ago");
  assert.equal(formatAge("not a date", NOW), undefined);
});

test("restarts stop after two crashes in the window", () => {
  const policy = new RestartPolicy(2, 1000);
  assert.equal(policy.shouldRestart(0), true);
  assert.equal(policy.shouldRestart(100), true);
  assert.equal(policy.shouldRestart(200), false);
  assert.equal(policy.shouldRestart(5000), true);
});

test("the page groups the spheres by node on a Ray cluster and says how many run on each", () => {
  const spheres = Array.from({ length: 5 }, (_, id) => ({ id, busy: 0.05, tokens: 2048, node: id < 3 ? "10.0.0.1" : "10.0.0.<2>" }));
  const page = renderStatusPage(STATUS, { state: "training", epoch: 1, epochs: 2, spheres }, NOW);
  assert.deepEqual(page.match(/<h3>[^<]*<\/h3>/g), ["<h3>10.0.0.1: 3 spheres</h3>", "<h3>10.0.0.&lt;2&gt;: 2 spheres</h3>"]);
  assert.equal(page.match(/class="spheres"/g)?.length, 2);
  const rows = Object.fromEntries(trainingRows(STATUS, { state: "training", spheres }));
  assert.equal(rows["Spheres"], "5 spheres on 2 nodes: 10.0.0.1 3, 10.0.0.<2> 2");
  const onThreads = renderStatusPage(STATUS, { state: "training", spheres: spheres.map((s) => ({ ...s, node: "" })) }, NOW);
  assert.ok(!onThreads.includes("<h3>") && onThreads.match(/class="spheres"/g)?.length === 1);
});
