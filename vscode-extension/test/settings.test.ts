import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { BASE_CHOICES, BASE_KEYS, TRAINING_KEYS, TRAINING_OPTIONS, expandPath, serverSettings } from "../src/settings";

const PATHS = { home: "/home/ada", workspaceFolder: "/src/proj" };

function reader(values: Record<string, unknown>) {
  return (key: string) => values[key];
}

test("empty settings go as null, so that the server drops a value it was given before (layer_settings)", () => {
  assert.deepEqual(serverSettings(reader({ enable: true, maxTokens: null, modelDir: "", "training.epochs": null }), PATHS), {
    enable: true, maxTokens: null, multiline: null, modelDir: null, indexMemoryMB: null, learnWhileIdle: null,
    idleSeconds: null, eagerness: null,
    training: { epochs: null, timeBudget: null, spheres: null, threads: null, fresh: null, base: null, baseCorpus: null },
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
      learnWhileIdle: false,
      idleSeconds: 30,
      eagerness: "low",
      "training.epochs": 3,
      "training.timeBudget": 90.5,
      "training.spheres": 12,
      "training.threads": 0,
      "training.fresh": true,
      "training.base": "prepare",
      "training.baseCorpus": ["~/c", "${workspaceFolder}/vendor", " ", 7],
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
    learnWhileIdle: false,
    idleSeconds: 30,
    eagerness: "low",
    training: { epochs: 3, timeBudget: 90.5, spheres: 12, threads: 0, fresh: true, base: "prepare",
                baseCorpus: ["/home/ada/c", "/src/proj/vendor"], dModel: 32, layers: 2, seqLen: 32 },
  });
});

test("the dedicated training settings win over the same keys in training.advanced", () => {
  const settings = serverSettings(reader({ "training.epochs": 2, "training.advanced": { epochs: 9 } }), PATHS);
  assert.equal(settings.training.epochs, 2);
});

test("an explicit training.fresh of false wins over fresh in training.advanced; empty, advanced's stands", () => {
  const advanced = { fresh: true };
  assert.equal(serverSettings(reader({ "training.fresh": false, "training.advanced": advanced }), PATHS).training.fresh, false);
  assert.equal(serverSettings(reader({ "training.fresh": null, "training.advanced": advanced }), PATHS).training.fresh, true);
});

test("a base choice the server does not know, and an empty base corpus, go as null", () => {
  const training = serverSettings(reader({ "training.base": "maybe", "training.baseCorpus": [] }), PATHS).training;
  assert.equal(training.base, null);
  assert.equal(training.baseCorpus, null);
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

/** package.json's `cllm.*` settings. */
function manifestSettings(): Record<string, { type: string | string[]; markdownDescription: string } & Bounds> {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));
  return manifest.contributes.configuration.properties;
}

interface Bounds {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
}

test("each training setting of package.json has the type and bounds of the server's option schema", () => {
  const properties = manifestSettings();
  const declared = Object.keys(properties).filter((k) => k.startsWith("cllm.training.") && k !== "cllm.training.advanced");
  assert.deepEqual(declared, [...TRAINING_KEYS, ...BASE_KEYS].map((key) => `cllm.training.${key}`));
  for (const key of TRAINING_KEYS) {
    const option = TRAINING_OPTIONS[key];
    assert.ok(option, `cllm.training.${key} is not an option of engine/config.py (src/trainingOptions.json)`);
    const { type, minimum, maximum, exclusiveMinimum } = properties[`cllm.training.${key}`];
    assert.deepEqual({ type, minimum, maximum, exclusiveMinimum },
      { type: [option.type, "null"], minimum: option.minimum, maximum: option.maximum, exclusiveMinimum: option.exclusiveMinimum },
      `cllm.training.${key} in package.json differs from engine/config.py`);
  }
});

test("training.advanced's description names every other option of the schema", () => {
  const advanced = manifestSettings()["cllm.training.advanced"].markdownDescription;
  const others = Object.keys(TRAINING_OPTIONS).filter((k) => !(TRAINING_KEYS as readonly string[]).includes(k));
  assert.ok(others.includes("noGitignore") && (TRAINING_KEYS as readonly string[]).includes("fresh"));
  assert.ok(advanced.includes("`fresh`"), "training.advanced still takes fresh, as before it had a setting of its own");
  for (const key of others) assert.ok(advanced.includes(`\`${key}\``), `cllm.training.advanced does not mention ${key}`);
});

test("the switches of training.advanced are kept and a value of the wrong type is dropped", () => {
  const advanced = { fresh: true, noGitignore: false, epochs: true, layers: "2", newKey: true };
  const training = serverSettings(reader({ "training.advanced": advanced }), PATHS).training;
  assert.deepEqual(training, { fresh: true, noGitignore: false, newKey: true, epochs: null, timeBudget: null,
                               spheres: null, threads: null, base: null, baseCorpus: null });
});

test("fresh and noGitignore from training.advanced reach the trainer's arguments (server/settings.py)", () => {
  const settings = serverSettings(reader({ "training.advanced": { fresh: true, noGitignore: true } }), PATHS);
  assert.deepEqual(trainerSees(settings, "'fresh': args.fresh, 'noGitignore': args.no_gitignore"),
                   { problems: [], fresh: true, noGitignore: true });
});

test("training.base's choices in package.json are the server's (server/settings.py BASE_CHOICES)", () => {
  const base = manifestSettings()["cllm.training.base"] as unknown as { enum: string[]; default: string };
  const program = "from cllm.server.settings import BASE_CHOICES; import json; print(json.dumps(BASE_CHOICES))";
  const server = JSON.parse(execFileSync(python(), ["-c", program], { encoding: "utf8" }));
  assert.deepEqual(base.enum, server);
  assert.deepEqual([...BASE_CHOICES], server);
  assert.equal(base.default, "ask");
  const corpus = manifestSettings()["cllm.training.baseCorpus"] as unknown as { type: string; items: { type: string } };
  assert.deepEqual({ type: corpus.type, items: corpus.items }, { type: "array", items: { type: "string" } });
});

test("training.fresh, base and baseCorpus reach the server's settings and the trainer's arguments", () => {
  const settings = serverSettings(
    reader({ "training.fresh": true, "training.base": "scratch", "training.baseCorpus": ["~/c"] }), PATHS);
  assert.deepEqual(trainerSees(settings, "'fresh': args.fresh, 'base': settings.base, 'corpus': settings.base_corpus"),
                   { problems: [], fresh: true, base: "scratch", corpus: ["/home/ada/c"] });
});

/** A Python with cllm installed: $PYTHON, else the repository's .venv, else python3. */
/** What the server makes of `settings` (server/settings.py) and the `cllm train` arguments they become: a JSON
 * object of the settings problems and the `fields` (Python dict items over `settings` and the parsed `args`). */
function trainerSees(settings: unknown, fields: string): Record<string, unknown> {
  const program = [
    "import json, sys",
    "from cllm.server.cli import build_parser",
    "from cllm.server.settings import parse_settings, train_arguments",
    "settings, problems = parse_settings(json.load(sys.stdin))",
    "args = build_parser().parse_args(['train', 'WS', *train_arguments(settings.training)])",
    `print(json.dumps({'problems': problems, ${fields}}))`,
  ].join("\n");
  return JSON.parse(execFileSync(python(), ["-c", program], { input: JSON.stringify(settings), encoding: "utf8" }));
}

function python(): string {
  const venv = path.join(__dirname, "..", "..", "..", ".venv", "bin", "python");
  return process.env.PYTHON || (fs.existsSync(venv) ? venv : "python3");
}

test("an eagerness the server does not know goes as null (the server's default, normal)", () => {
  assert.equal(serverSettings(reader({ eagerness: "eager" }), PATHS).eagerness, null);
  assert.equal(serverSettings(reader({ eagerness: "high" }), PATHS).eagerness, "high");
});
