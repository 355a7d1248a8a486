import assert from "node:assert/strict";
import { test } from "node:test";

import { copiedFrom, parseSource, sourceLabel } from "../src/copySource";

test("a source is a path and a line from 1", () => {
  assert.deepEqual(parseSource("src/a.c:4"), { path: "src/a.c", line: 4 });
  assert.deepEqual(parseSource("c:/work/x:y.c:120"), { path: "c:/work/x:y.c", line: 120 });
  for (const bad of [undefined, null, 4, "", "src/a.c", "src/a.c:0", "src/a.c:-1", ":4", "src/a.c:4x"]) {
    assert.equal(parseSource(bad), undefined, String(bad));
  }
});

test("the ghost text's source is read from the first inline item's command, list or array", () => {
  const copied = { insertText: ") {", command: { title: "copied from src/a.c:4", command: "cllm.accepted",
    arguments: [{ id: "1", chars: 3, source: "src/a.c:4" }] } };
  const plain = { insertText: "printf(" };
  assert.deepEqual(copiedFrom({ items: [copied, plain] }), { path: "src/a.c", line: 4 });
  assert.deepEqual(copiedFrom([copied]), { path: "src/a.c", line: 4 });
  assert.equal(copiedFrom([plain, copied]), undefined); // VS Code shows the first
  assert.equal(copiedFrom({ items: [] }), undefined);
  assert.equal(copiedFrom([]), undefined);
  assert.equal(copiedFrom(null), undefined);
  assert.equal(copiedFrom([{ command: { command: "cllm.accepted", arguments: [3] } }]), undefined);
});

test("the status bar says where the copy came from", () => {
  const label = sourceLabel({ path: "src/a.c", line: 4 });
  assert.equal(label.text, "$(references) src/a.c:4");
  assert.match(label.tooltip, /copied from src\/a\.c:4/);
});
