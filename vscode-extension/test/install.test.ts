import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import {
  PythonInfo,
  bundledWheel,
  commandLine,
  installFailedProblem,
  installSteps,
  isInstalled,
  markerText,
  noPythonProblem,
  parseProbe,
  privateEnvironment,
  privateServerCommand,
  pythonCandidates,
  suitable,
  warmupProgress,
  warmupStep,
} from "../src/install";

const EXTENSION = path.resolve(__dirname, "..", "..");
const WHEEL = { name: "cllm-0.2.0-py3-none-any.whl", sha256: "ab12" };

test("the extension's version is the Python project's (one version for the .vsix and its wheel)", () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(EXTENSION, "package.json"), "utf8")) as { version: string };
  const pyproject = fs.readFileSync(path.join(EXTENSION, "..", "pyproject.toml"), "utf8");
  assert.equal(pkg.version, /^version = "([^"]+)"$/m.exec(pyproject)?.[1]);
});

test("the probe's answer is read; anything else is no interpreter", () => {
  assert.deepEqual(parseProbe('{"version": [3, 12], "venv": true, "cllm": false}\n'), { version: [3, 12], venv: true, cllm: false });
  assert.equal(parseProbe("Python was not found; run without arguments to install from the Microsoft Store"), undefined);
  assert.equal(parseProbe('{"version": "3.12"}'), undefined);
});

test("suitable: Python 3.11 or newer with venv", () => {
  const info = (version: [number, number], venv = true): PythonInfo => ({ version, venv, cllm: false });
  assert.ok(suitable(info([3, 11])) && suitable(info([3, 13])) && suitable(info([4, 0])));
  assert.ok(!suitable(info([3, 10])) && !suitable(info([2, 7])));
  assert.ok(!suitable(info([3, 12], false)));
  assert.ok(!suitable(undefined));
});

test("candidates: cllm.python, the Python extension's interpreter, then python3 and python on PATH, once each", () => {
  const files = new Set(["/usr/bin/python3", "/usr/bin/python", "/opt/py/bin/python3"]);
  const candidates = pythonCandidates({
    configured: " /opt/py/bin/python3 ",
    pythonExtension: "/proj/.venv/bin/python",
    pathEnv: "/opt/py/bin:/usr/bin",
    platform: "linux",
    isExecutable: (f) => files.has(f),
  });
  assert.deepEqual(candidates, [
    { python: "/opt/py/bin/python3", source: "setting cllm.python" },
    { python: "/proj/.venv/bin/python", source: "the Python extension's interpreter" },
    { python: "/usr/bin/python", source: "python on PATH" },
  ]);
});

test("the bundled wheel is the one with the extension's version", () => {
  assert.equal(bundledWheel(["cllm-0.1.0-py3-none-any.whl", "cllm-0.2.0-py3-none-any.whl"], "0.2.0"), WHEEL.name);
  assert.equal(bundledWheel(["cllm-0.1.0-py3-none-any.whl"], "0.2.0"), undefined);
});

test("the private environment lives in global storage; the server is its cllm", () => {
  const env = privateEnvironment("/home/ada/.config/Code/User/globalStorage/cllm.cllm", "linux");
  assert.equal(env.cllm, "/home/ada/.config/Code/User/globalStorage/cllm.cllm/server/bin/cllm");
  assert.equal(env.marker, "/home/ada/.config/Code/User/globalStorage/cllm.cllm/server/cllm-installed.json");
  assert.deepEqual(privateServerCommand(env).args, ["lsp"]);
  const windows = privateEnvironment("C:\\Users\\ada\\cllm", "win32");
  assert.equal(windows.python, "C:\\Users\\ada\\cllm\\server\\Scripts\\python.exe");
});

test("an update (another wheel) or a missing or damaged marker means install again", () => {
  const marker = markerText(WHEEL, "/usr/bin/python3");
  assert.ok(isInstalled(marker, WHEEL));
  assert.ok(!isInstalled(marker, { name: "cllm-0.3.0-py3-none-any.whl", sha256: "ab12" }));
  assert.ok(!isInstalled(marker, { ...WHEEL, sha256: "cd34" }));
  assert.ok(!isInstalled(undefined, WHEEL));
  assert.ok(!isInstalled("{", WHEEL));
});

test("the install: a fresh venv from the chosen Python, then pip installs the wheel into it", () => {
  const env = privateEnvironment("/store", "linux");
  const steps = installSteps("/usr/bin/python3", env, "/ext/bundled/x.whl");
  assert.deepEqual(steps.map((step) => commandLine(step)), [
    "/usr/bin/python3 -m venv --clear /store/server",
    "/store/server/bin/python -m pip install --disable-pip-version-check --no-input --progress-bar off /ext/bundled/x.whl",
  ]);
  const failed = installFailedProblem(steps[1], "pip exited with code 1");
  assert.match(failed.problem, /pip exited with code 1/);
  assert.ok(failed.fix.includes(commandLine(steps[1])));
});

test("after the install, the private server compiles its kernels with JSON events the notification counts", () => {
  const env = privateEnvironment("/store", "linux");
  assert.equal(commandLine(warmupStep(env)), "/store/server/bin/cllm warmup --json");
  assert.equal(warmupProgress('{"event": "progress", "ready": 12, "kernels": 40}'), "12/40 kernels");
  assert.equal(warmupProgress('{"event": "stage", "title": "training a tiny model"}'), undefined);
  assert.equal(warmupProgress("not json"), undefined);
});

test("no suitable Python: what was tried and the exact commands", () => {
  const tried = [
    { candidate: { python: "/usr/bin/python3", source: "python3 on PATH" }, info: { version: [3, 9], venv: true, cllm: false } as PythonInfo },
    { candidate: { python: "/opt/py", source: "setting cllm.python" }, info: undefined },
  ];
  const problem = noPythonProblem(tried, "/ext/bundled/cllm-0.2.0-py3-none-any.whl", "linux");
  assert.match(problem.problem, /Python 3\.11 or newer/);
  assert.match(problem.problem, /\/usr\/bin\/python3 \(python3 on PATH\): Python 3\.9 is too old; \/opt\/py \(setting cllm\.python\): did not run/);
  assert.match(problem.fix, /sudo apt install python3 python3-venv/);
  assert.match(problem.fix, /pipx install \/ext\/bundled\/cllm-0\.2\.0-py3-none-any\.whl/);
  assert.match(noPythonProblem([], "w.whl", "darwin").fix, /brew install python@3\.12/);
});
