import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { TRAINING_KEYS, expandPath, serverSettings } from "../src/settings";

const PATHS = { home: "/home/ada", workspaceFolder: "/src/proj" };

function reader(values: Record<string, unknown>) {
  return (key: string) => values[key];
}

test("empty settings go as null, so that the server drops a value it was given before (layer_settings)", () => {
  assert.deepEqual(serverSettings(reader({ enable: true, maxTokens: null, modelDir: "", "training.epochs": null }), PATHS), {
    enable: true, maxTokens: null, multiline: null, modelDir: null, indexMemoryMB: null,
    training: { epochs: null, timeBudget: null, spheres: null, threads: null },
  });
});

test("a key of training.advanced stands when its dedicated setting is empty", () => {
  assert.equal(serverSettings(reader({ "training.advanced": { epochs: 9 } }), PATHS).training.epochs, 9);
});

test("every setting reaches the server under its server name", () => {
  const settings = serverSettings(
    reader({
      enable: false,
      maxTokens: 48,
      multiline: false,
      modelDir: "~/models",
      indexMemoryMB: 256,
      "training.epochs": 3,
      "training.timeBudget": 90.5,
      "training.spheres": 12,
      "training.threads": 0,
      "training.advanced": { dModel: 32, layers: 2, seqLen: 32, bogus: "x" },
    }),
    PATHS,
  );
  assert.deepEqual(settings, {
    enable: false,
    maxTokens: 48,
    multiline: false,
    modelDir: "/home/ada/models",
    indexMemoryMB: 256,
    training: { epochs: 3, timeBudget: 90.5, spheres: 12, threads: 0, dModel: 32, layers: 2, seqLen: 32 },
  });
});

test("the dedicated training settings win over the same keys in training.advanced", () => {
  const settings = serverSettings(reader({ "training.epochs": 2, "training.advanced": { epochs: 9 } }), PATHS);
  assert.equal(settings.training.epochs, 2);
});

test("paths expand ~ and ${workspaceFolder} only", () => {
  assert.equal(expandPath("${workspaceFolder}/.cllm", PATHS), "/src/proj/.cllm");
  assert.equal(expandPath("~", PATHS), "/home/ada");
  assert.equal(expandPath("/opt/~x", PATHS), "/opt/~x");
});

test("every top-level key the extension sends is a server setting (server/settings.py)", () => {
  const source = fs.readFileSync(path.join(__dirname, "..", "..", "..", "server", "settings.py"), "utf8");
  for (const key of Object.keys(serverSettings(reader({}), PATHS)).filter((k) => k !== "training")) {
    assert.ok(source.includes(`"${key}": ("`), `cllm.${key} is unknown to the server`);
  }
});

test("the extension's setting names are the server's (server/settings.py)", () => {
  const source = fs.readFileSync(path.join(__dirname, "..", "..", "..", "server", "settings.py"), "utf8");
  const block = source.slice(source.indexOf("TRAINING_KEYS"), source.indexOf("TRAINING_FLAGS"));
  const serverKeys = [...block.matchAll(/"(\w+)": \("/g)].map((m) => m[1]);
  assert.ok(serverKeys.length >= 4, "TRAINING_KEYS not found in server/settings.py");
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));
  const properties = manifest.contributes.configuration.properties as Record<string, { markdownDescription: string }>;
  for (const key of TRAINING_KEYS) {
    assert.ok(serverKeys.includes(key), `cllm.training.${key} is unknown to the server`);
    assert.ok(`cllm.training.${key}` in properties, `cllm.training.${key} is not declared in package.json`);
  }
  const advanced = properties["cllm.training.advanced"].markdownDescription;
  for (const key of serverKeys.filter((k) => !(TRAINING_KEYS as readonly string[]).includes(k))) {
    assert.ok(advanced.includes(`\`${key}\``), `cllm.training.advanced does not mention ${key}`);
  }
});
