import assert from "node:assert/strict";
import { test } from "node:test";

import { shownState, suggestionsEnabled, toggleTarget } from "../src/suggestions";

test("suggestions are on unless cllm.enable is false", () => {
  assert.equal(suggestionsEnabled(() => undefined), true);
  assert.equal(suggestionsEnabled((key) => (key === "enable" ? true : undefined)), true);
  assert.equal(suggestionsEnabled((key) => (key === "enable" ? false : undefined)), false);
});

test("the toggle writes the workspace's settings when they set cllm.enable, else the user's", () => {
  assert.equal(toggleTarget(undefined), "global");
  assert.equal(toggleTarget({}), "global");
  assert.equal(toggleTarget({ workspaceValue: false }), "workspace");
  assert.equal(toggleTarget({ workspaceValue: true }), "workspace");
});

test("while suggestions are off the status bar says off, except for a server error", () => {
  const ready = { kind: "ready" as const, model: { present: true } };
  const error = { kind: "error" as const, message: "Cannot find the cllm language server." };
  assert.deepEqual(shownState(ready, false), { kind: "disabled" });
  assert.deepEqual(shownState({ kind: "training", activity: { state: "training" } }, false), { kind: "disabled" });
  assert.equal(shownState(ready, true), ready);
  assert.equal(shownState(error, false), error);
});
