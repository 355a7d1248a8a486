"""Ollama's API, so that what speaks Ollama (Continue's `ollama` provider, the `ollama` Python and npm clients,
litellm's `ollama/`, Twinny, minuet-ai, Zed) reaches cllm unchanged: `POST /api/generate`, `GET /api/tags`,
`POST /api/show`, `GET /api/version` and `GET /api/ps`, their request parsing and their response objects. Errors
on these routes are Ollama's `{"error": "text"}` (app.py's error middleware picks the shape by path); the Host,
Origin and token rules are those of every route (generate needs the token, the model descriptions are public).

How Ollama's fields map onto a cllm completion:

- `prompt` is the text before the cursor, `suffix` the text after it (fill-in-the-middle). The server has one
  model: any `model` name is answered by it and echoed back. cllm has no prompt template, so `raw` changes
  nothing; `system` and `template` are refused with `raw` as Ollama does, and otherwise ignored.
- `options`: `num_predict` (-1 or -2: the workspace default; lowered to the server's cap), `temperature`,
  `top_p`, `top_k`, `seed` and `stop` are honoured; Ollama's other options (num_ctx, num_thread, ...) are
  accepted and ignored. `keep_alive` is accepted (the model stays loaded while the server runs).
- `stream` defaults to true, as in Ollama: NDJSON lines `{"response": piece, "done": false}`, then one with
  `"done": true`, an empty `response`, `done_reason` and the counts and durations (nanoseconds).
- An empty prompt without a suffix loads the model in Ollama: answered at once with `done_reason` "load".
- The final object has one field of cllm's own: `source`, where the text was copied from ("path:line", or null).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from cllm.engine.complete.generate import MAX_TEMPERATURE

from .. import __version__
from .api import MAX_COMPLETION_TOKENS, MAX_STOP_SEQUENCES, NO_MODEL, WORKSPACE, error, read_json_object
from .completions import CompletionRequest, cllm_fields, run_completions
from .llama import LlamaRequestError, integer, real, typed
from .sse import stream_response

MODEL_NAME = "cllm:latest"
# Ollama's template variables, so that clients that look for `.Suffix` (Continue) know the model fills the middle
TEMPLATE = "{{ if .Suffix }}<fim_suffix>{{ .Suffix }}<fim_prefix>{{ .Prompt }}<fim_middle>{{ else }}{{ .Prompt }}{{ end }}"
NEVER = "9999-12-31T23:59:59Z"  # /api/ps expires_at: the model stays loaded while the server runs


@dataclass
class GenerateRequest:
    """A checked /api/generate request: the model name to echo, the cursor, streaming and cllm's options."""

    model: str
    prompt: str
    suffix: str
    stream: bool
    unload: bool  # keep_alive 0: Ollama's request to unload the model (answered, nothing unloads)
    options: dict[str, Any] = field(default_factory=dict)


def parse_generate(body: dict[str, Any]) -> GenerateRequest:
    """Check a POST /api/generate body (see the module docstring). Raises LlamaRequestError (the checks are
    llama.py's) with a message naming the field."""
    model = typed(body, "model", str, "a string") or MODEL_NAME
    prompt = typed(body, "prompt", str, "a string") or ""
    suffix = typed(body, "suffix", str, "a string") or ""
    raw = typed(body, "raw", bool, "true or false")
    system, template = typed(body, "system", str, "a string"), typed(body, "template", str, "a string")
    if raw and (system or template or body.get("context")):
        raise LlamaRequestError("raw mode does not support template, system, or context")
    if body.get("images"):
        raise LlamaRequestError("images are not supported: cllm completes C code")
    if body.get("format"):
        raise LlamaRequestError("format is not supported: cllm answers with code, not JSON")
    if body.get("think") not in (None, False):
        raise LlamaRequestError(f'"{model}" does not support thinking')
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and (isinstance(keep_alive, bool) or not isinstance(keep_alive, (str, int, float))):
        raise LlamaRequestError("keep_alive must be a duration (\"5m\") or a number of seconds")
    stream = typed(body, "stream", bool, "true or false")
    return GenerateRequest(model=model, prompt=prompt, suffix=suffix, stream=stream is not False,
                           unload=keep_alive in (0, "0", "0s", "0m"),
                           options=_options(typed(body, "options", dict, "an object") or {}))


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """cllm completion options of Ollama's `options` object."""
    n_predict = integer(options, "num_predict", -2, None)
    stop = options.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES
                                 and all(isinstance(s, str) and s for s in stop)):
        raise LlamaRequestError(f"stop must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings")
    seed = integer(options, "seed", None, 2**31 - 1)
    chosen = {
        "max_tokens": min(n_predict, MAX_COMPLETION_TOKENS) if n_predict is not None and n_predict > 0 else None,
        "temperature": real(options, "temperature", 0.0, MAX_TEMPERATURE),
        "top_p": real(options, "top_p", 0.0, 1.0, low_open=True),
        "top_k": integer(options, "top_k", 0, None),
        "seed": None if seed is None or seed < 0 else seed,
        "stop": tuple(stop) if stop else None,
    }
    return {k: v for k, v in chosen.items() if v is not None}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def generate_object(model: str, text: str, done: bool, completion: Any = None,
                    done_reason: str | None = None) -> dict[str, Any]:
    """One /api/generate answer: a streamed piece, or with `done` the final object with Ollama's metrics."""
    body: dict[str, Any] = {"model": model, "created_at": _now(), "response": text, "done": done}
    if done:
        body["done_reason"] = done_reason or ("length" if completion.stop_reason in ("max_tokens", "timeout")
                                              else "stop")
    if completion is not None:
        eval_ns = int(completion.ms * 1e6)
        body.update(total_duration=eval_ns, load_duration=0, prompt_eval_count=completion.prompt_tokens,
                    prompt_eval_duration=0, eval_count=completion.tokens, eval_duration=eval_ns,
                    **cllm_fields(completion))
    return body


async def generate(request: web.Request) -> web.StreamResponse:
    """POST /api/generate: Ollama's completion, NDJSON-streamed unless `stream` is false."""
    try:
        gen = parse_generate(await read_json_object(request))
    except LlamaRequestError as exc:
        raise error(400, str(exc)) from None
    if not request.app[WORKSPACE].has_model:
        raise error(404, f"model '{gen.model}' not found: {NO_MODEL}")
    if not gen.prompt and not gen.suffix:  # Ollama loads (or with keep_alive 0 unloads) the model
        return web.json_response(generate_object(gen.model, "", True,
                                                 done_reason="unload" if gen.unload else "load"))
    req = CompletionRequest(prompts=[gen.prompt], suffix=gen.suffix, path=None, stream=gen.stream,
                            include_usage=False, options=gen.options)
    if not gen.stream:
        [(completion, _)] = await run_completions(request, req)
        return web.json_response(generate_object(gen.model, completion.text, True, completion))

    def ending(results: list[tuple[Any, int]]) -> list[dict]:
        [(completion, _)] = results
        return [generate_object(gen.model, "", True, completion)]

    return await stream_response(request, lambda on_text: run_completions(request, req, on_text),
                                 lambda _index, text: generate_object(gen.model, text, False), ending,
                                 done=False, client="Ollama", ndjson=True)


def model_entry(workspace: Any) -> dict[str, Any] | None:
    """The served model as Ollama describes one in /api/tags and /api/ps, or None without a model. `digest`
    identifies the loaded file (its path, size and time), it is not a hash of its content."""
    model, summary = workspace.model, workspace.status()["model"]
    if model is None or not summary.get("present"):
        return None
    path = Path(summary.get("path") or "")
    try:
        stat = path.stat()
        size, stamp = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, stamp = 0, 0
    return {"name": MODEL_NAME, "model": MODEL_NAME, "modified_at": summary.get("trainedAt") or _now(),
            "size": size, "digest": hashlib.sha256(f"{path}:{size}:{stamp}".encode()).hexdigest(),
            "details": {"parent_model": "", "format": "cllm", "family": "cllm", "families": ["cllm"],
                        "parameter_size": f"{model.params.size / 1e6:.1f}M", "quantization_level": "F32"}}


async def tags(request: web.Request) -> web.Response:
    """GET /api/tags: the served model, if any (Ollama's list of local models)."""
    entry = model_entry(request.app[WORKSPACE])
    return web.json_response({"models": [] if entry is None else [entry]})


async def ps(request: web.Request) -> web.Response:
    """GET /api/ps: the loaded model, if any (Ollama's running models); it stays loaded while the server runs."""
    workspace = request.app[WORKSPACE]
    entry = model_entry(workspace)
    if entry is None:
        return web.json_response({"models": []})
    del entry["modified_at"]
    loaded = {**entry, "expires_at": NEVER, "size_vram": 0, "context_length": workspace.model.context}
    return web.json_response({"models": [loaded]})


async def show(request: web.Request) -> web.Response:
    """POST /api/show: the served model's details, under any name (`model`, or the older `name`). `parameters`
    and `template` are read by Continue: the context length, and `.Suffix` meaning fill-in-the-middle."""
    body = await read_json_object(request)
    if any(body.get(key) is not None and not isinstance(body[key], str) for key in ("model", "name")):
        raise error(400, "model and name must be strings")
    name = body.get("model") or body.get("name")
    workspace = request.app[WORKSPACE]
    entry = model_entry(workspace)
    if entry is None:
        raise error(404, f"model '{name or MODEL_NAME}' not found: {NO_MODEL}")
    model, context = workspace.model, workspace.model.context
    return web.json_response({
        "modelfile": f"# cllm model, trained on the workspace's C files\nFROM {MODEL_NAME}\n",
        "parameters": f"num_ctx {context}", "template": TEMPLATE, "details": entry["details"],
        "model_info": {"general.architecture": "cllm", "general.parameter_count": int(model.params.size),
                       "cllm.context_length": context, "cllm.embedding_length": model.config.d_model,
                       "cllm.block_count": model.config.n_layers},
        "capabilities": ["completion", "insert"], "modified_at": entry["modified_at"]})


async def version(request: web.Request) -> web.Response:
    """GET /api/version: cllm's version (not an Ollama version)."""
    return web.json_response({"version": __version__})
