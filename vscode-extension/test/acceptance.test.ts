import assert from "node:assert/strict";
import { test } from "node:test";

import { PartialAccepts, acceptanceRows, characterCount, reportOf } from "../src/acceptance";
import { renderStatusPage } from "../src/report";

const REPORT = { workspace: "file:///w", id: "ab12-3", chars: 14 };
const COMMAND = { command: "cllm.accepted", arguments: [REPORT] };

test("a partial accept reports the characters it took of cllm's suggestion, piece after piece", () => {
  const tracker = new PartialAccepts();
  tracker.offered({ uri: "file:///w/a.c", offset: 100, text: "printf(\"%d\", x);", command: COMMAND });
  assert.deepEqual(tracker.took("file:///w/a.c", 100, "printf"), { ...REPORT, chars: 6 });
  assert.deepEqual(tracker.took("file:///w/a.c", 106, "(\""), { ...REPORT, chars: 2 });
  assert.equal(tracker.took("file:///w/a.c", 106, "%d"), undefined, "the cursor is no longer where the piece was taken");
  assert.equal(tracker.took("file:///w/a.c", 108, "xyz"), undefined, "not the next piece of the suggestion");
  assert.equal(tracker.took("file:///w/b.c", 108, "%d"), undefined, "another document");
  assert.deepEqual(tracker.took("file:///w/a.c", 108, "%d"), { ...REPORT, chars: 2 });
});

test("a line taken from a CRLF document counts its line break once and the next piece follows it", () => {
  const tracker = new PartialAccepts();
  tracker.offered({ uri: "u", offset: 0, text: "a;\nb;", command: COMMAND });
  assert.deepEqual(tracker.took("u", 0, "a;\r\n"), { ...REPORT, chars: 3 });
  assert.deepEqual(tracker.took("u", 4, "b;"), { ...REPORT, chars: 2 });
});

test("ghost text that is not cllm's, or no answer, is never reported", () => {
  const tracker = new PartialAccepts();
  tracker.offered({ uri: "u", offset: 0, text: "int x;", command: { command: "other.accepted", arguments: [REPORT] } });
  assert.equal(tracker.took("u", 0, "int"), undefined);
  tracker.offered({ uri: "u", offset: 0, text: "int x;", command: COMMAND });
  tracker.offered(undefined);
  assert.equal(tracker.took("u", 0, "int"), undefined);
  assert.equal(reportOf({ command: "cllm.accepted", arguments: [{ id: 3, chars: 1 }] }), undefined);
  assert.deepEqual(reportOf({ command: "cllm.accepted", arguments: [{ id: "x", chars: 1 }] }), { id: "x", chars: 1 });
  assert.equal(characterCount("é😀\r\n"), 3);
});

test("the status view shows the counts under Suggestions", () => {
  const counts = { shown: 40, accepted: 9, partiallyAccepted: 3, acceptanceRate: 0.3, charactersAccepted: 1250, charactersToday: 310 };
  assert.deepEqual(acceptanceRows(counts), [
    ["Shown", "40"], ["Accepted whole", "9"], ["Accepted in part", "3"], ["Acceptance rate", "30 %"],
    ["Characters accepted", "1.3k"], ["Characters typed by cllm today", "310"],
  ]);
  assert.deepEqual(acceptanceRows({ ...counts, shown: 0, acceptanceRate: null }).map(([label]) => label),
    ["Shown", "Accepted whole", "Accepted in part", "Characters accepted", "Characters typed by cllm today"]);
  const page = renderStatusPage({ model: { present: false }, training: { state: "idle" }, acceptance: counts }, undefined, new Date());
  assert.match(page, /<h2>Suggestions<\/h2>.*Characters typed by cllm today<\/th><td>310/s);
  assert.doesNotMatch(renderStatusPage({ model: { present: false }, training: { state: "idle" } }, undefined, new Date()), /Suggestions/);
});
