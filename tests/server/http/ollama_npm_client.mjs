// The `ollama` npm client against a cllm server (tests/server/http/test_clients.py): node ollama_npm_client.mjs
// URL TOKEN PROMPT SUFFIX prints what it saw as JSON: generated and streamed text, model names, the template, and
// the message of an error with a wrong token.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "index.js"));
const { Ollama } = require("ollama");

const [url, token, prompt, suffix] = process.argv.slice(2);
const client = new Ollama({ host: url, headers: { Authorization: `Bearer ${token}` } });
const options = { num_predict: 8 };

const generated = await client.generate({ model: "cllm", prompt, suffix, options, stream: false });
let streamed = "";
for await (const part of await client.generate({ model: "cllm", prompt, suffix, options, stream: true })) {
  streamed += part.response;
}
const listed = await client.list();
const shown = await client.show({ model: "cllm" });
let error = "";
try {
  await new Ollama({ host: url, headers: { Authorization: "Bearer wrong" } }).generate({ model: "cllm", prompt });
} catch (e) {
  error = String(e.message);
}
console.log(JSON.stringify({ generated: generated.response, streamed, models: listed.models.map((m) => m.name),
                             template: shown.template, error }));
