import assert from "node:assert/strict";
import { test } from "node:test";

import { DiscoveryInput, discoverServer, searchPath } from "../src/discovery";

function input(executables: string[], extra: Partial<DiscoveryInput> = {}): DiscoveryInput {
  const files = new Set(executables);
  return {
    platform: "linux",
    home: "/home/ada",
    pathEnv: "/usr/local/bin:/usr/bin",
    isExecutable: (f) => files.has(f),
    hasCllm: () => true,
    ...extra,
  };
}

test("cllm.server.path wins over everything else", () => {
  const found = discoverServer(input(["/opt/cllm/bin/cllm", "/usr/bin/cllm"], { serverPath: "/opt/cllm/bin/cllm", python: "/usr/bin/python3" }));
  assert.deepEqual(found, { kind: "found", server: { command: "/opt/cllm/bin/cllm", args: ["lsp"], source: "setting cllm.server.path" } });
});

test("a wrong cllm.server.path is reported with its fix, not skipped", () => {
  const found = discoverServer(input(["/usr/bin/cllm"], { serverPath: "~/nowhere/cllm" }));
  assert.equal(found.kind, "invalid");
  assert.ok(found.kind === "invalid" && found.problem.includes("/home/ada/nowhere/cllm"));
  assert.ok(found.kind === "invalid" && found.fix.includes("cllm.server.path"));
});

test("cllm.python runs the server module when cllm is installed in it", () => {
  const found = discoverServer(input(["/venv/bin/python"], { python: "/venv/bin/python", hasCllm: (p) => p === "/venv/bin/python" }));
  assert.equal(found.kind, "found");
  assert.deepEqual(found.kind === "found" && found.server.args, ["-m", "cllm.server.cli", "lsp"]);
});

test("cllm.python without cllm falls through to the search, then to the extension's own server", () => {
  const noCllm = { python: "/usr/bin/python3", hasCllm: () => false };
  const onPath = discoverServer(input(["/usr/bin/python3", "/usr/bin/cllm"], noCllm));
  assert.ok(onPath.kind === "found" && onPath.server.source === "cllm on PATH");
  assert.deepEqual(discoverServer(input(["/usr/bin/python3"], noCllm)), { kind: "missing" });
});

test("the Python extension's interpreter is used when cllm is installed beside it", () => {
  const found = discoverServer(input(["/proj/.venv/bin/python", "/proj/.venv/bin/cllm", "/usr/bin/cllm"], { pythonExtensionInterpreter: "/proj/.venv/bin/python" }));
  assert.ok(found.kind === "found" && found.server.command === "/proj/.venv/bin/cllm");
  assert.match(found.kind === "found" ? found.server.source : "", /Python extension/);
});

test("an interpreter without cllm falls through to PATH", () => {
  const found = discoverServer(input(["/proj/.venv/bin/python", "/usr/bin/cllm"], { pythonExtensionInterpreter: "/proj/.venv/bin/python" }));
  assert.ok(found.kind === "found" && found.server.command === "/usr/bin/cllm" && found.server.source === "cllm on PATH");
});

test("nothing configured or found: the extension's own server is wanted", () => {
  assert.deepEqual(discoverServer(input(["/usr/bin/python3"])), { kind: "missing" });
});

test("PATH search on Windows tries .exe and .cmd", () => {
  const found = searchPath("cllm", { platform: "win32", pathEnv: "C:\\a;C:\\b", isExecutable: (f) => f === "C:\\b\\cllm.cmd" });
  assert.equal(found, "C:\\b\\cllm.cmd");
});
