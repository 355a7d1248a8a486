// Writes src/trainingOptions.json: the training settings of the server's option schema (engine/config.py
// editor_settings: each key's JSON type, bounds and help), which settings.ts reads and the unit tests hold
// package.json's settings against. `npm run options` runs it, before the type-check, the bundle and the tests.
// Python reads engine/config.py on its own (it imports only the standard library): $PYTHON, else the repository's
// .venv, else python3.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const extension = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const config = path.join(extension, "..", "engine", "config.py");
const out = path.join(extension, "src", "trainingOptions.json");
const venv = path.join(extension, "..", ".venv", "bin", "python");
const python = process.env.PYTHON || (fs.existsSync(venv) ? venv : "python3");
const program = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("config", sys.argv[1])
config = importlib.util.module_from_spec(spec)
sys.modules["config"] = config
spec.loader.exec_module(config)
print(json.dumps(config.editor_settings()))
`;

let settings;
try {
  settings = JSON.parse(execFileSync(python, ["-c", program, config], { encoding: "utf8" }));
} catch (error) {
  console.error(`training-options: could not read ${config} with ${python} (set PYTHON): ${error.message}`);
  process.exit(1);
}
const generated = { $comment: "written by scripts/training-options.mjs from engine/config.py: do not edit", settings };
fs.writeFileSync(out, JSON.stringify(generated, null, 2) + "\n");
