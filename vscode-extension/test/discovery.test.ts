import assert from "node:assert/strict";
import { test } from "node:test";

import { DiscoveryInput, discoverServer, searchPath } from "../src/discovery";

function input(executables: string[], extra: Partial<DiscoveryInput> = {}): DiscoveryInput {
  const files = new Set(executables);
  return { platform: "linux", home: "/home/ada", pathEnv: "/usr/local/bin:/usr/bin", isExecutable: (f) => files.has(f), ...extra };
}

test("cllm.server.path wins over everything else", () => {
  const found = discoverServer(input(["/opt/cllm/bin/cllm", "/usr/bin/cllm"], { serverPath: "/opt/cllm/bin/cllm", python: "/usr/bin/python3" }));
  assert.deepEqual(found, { ok: true, server: { command: "/opt/cllm/bin/cllm", args: ["lsp"], source: "setting cllm.server.path" } });
});

test("a wrong cllm.server.path is reported with its fix, not skipped", () => {
  const found = discoverServer(input(["/usr/bin/cllm"], { serverPath: "~/nowhere/cllm" }));
  assert.equal(found.ok, false);
  assert.ok(!found.ok && found.problem.includes("/home/ada/nowhere/cllm"));
  assert.ok(!found.ok && found.fix.includes("cllm.server.path"));
});

test("cllm.python runs the server module", () => {
  const found = discoverServer(input(["/venv/bin/python"], { python: "/venv/bin/python" }));
  assert.ok(found.ok);
  assert.deepEqual(found.ok && found.server.args, ["-m", "cllm.server.cli", "lsp"]);
});

test("the Python extension's interpreter is used when cllm is installed beside it", () => {
  const found = discoverServer(input(["/proj/.venv/bin/python", "/proj/.venv/bin/cllm", "/usr/bin/cllm"], { pythonExtensionInterpreter: "/proj/.venv/bin/python" }));
  assert.ok(found.ok && found.server.command === "/proj/.venv/bin/cllm");
  assert.match(found.ok ? found.server.source : "", /Python extension/);
});

test("an interpreter without cllm falls through to PATH", () => {
  const found = discoverServer(input(["/proj/.venv/bin/python", "/usr/bin/cllm"], { pythonExtensionInterpreter: "/proj/.venv/bin/python" }));
  assert.ok(found.ok && found.server.command === "/usr/bin/cllm" && found.server.source === "cllm on PATH");
});

test("nothing found: the problem says how to install", () => {
  const found = discoverServer(input([]));
  assert.equal(found.ok, false);
  assert.ok(!found.ok && /pip install cllm/.test(found.fix));
});

test("PATH search on Windows tries .exe and .cmd", () => {
  const found = searchPath("cllm", { platform: "win32", pathEnv: "C:\\a;C:\\b", isExecutable: (f) => f === "C:\\b\\cllm.cmd" });
  assert.equal(found, "C:\\b\\cllm.cmd");
});
