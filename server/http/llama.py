"""The llama.cpp server's completion shapes, so that its clients (llama.vscode, scripts written for llama-server)
work against cllm unchanged: the routes `POST /infill`, `POST /completion` and `GET /health`, their request
parsing and their response objects. They have the same Host, Origin and token rules as the OpenAI routes
(llama.vscode sends `Authorization: Bearer` when `llama-vscode.api_key` is set: set it to the token).

How llama.cpp's fields map onto a cllm completion:

- /infill: the text before the cursor is `input_prefix` + `prompt` (llama.vscode sends the start of the cursor's
  line as `prompt`), the text after it `input_suffix`. `input_extra` (chunks of other open files) is checked and
  then not used: the workspace cache model already knows the workspace's files, and in the small context of a
  cllm model the chunks would push out the text before the cursor.
- /completion: `prompt` is the text before the cursor; a prompt in another model's FIM template is split at its
  markers as on /v1/completions (server/http/fim.py).
- `n_predict`: the token limit (-1 or absent: the workspace default; above the server's cap it is lowered);
  0 only warms the cache in llama.cpp, and is answered at once with empty content (llama.vscode's ring-buffer
  prefetch). `t_max_predict_ms` > 0 is the time budget. `temperature`, `top_k`, `top_p`, `seed` and `stop` are
  honoured; `samplers`, `cache_prompt` (the cache is always reused), `id_slot`, `n_indent`, `lora` and other
  llama.cpp options are accepted and ignored.
- `n_cmpl` > 1 (llama.vscode asks for 3 alternatives) is answered with one completion, as an object: llama.vscode
  reads both forms, and greedy decoding would give the same text each time.
- Responses carry what clients read: `content`, `stop`, `stop_type`, `tokens_predicted`, `tokens_evaluated`,
  `tokens_cached`, `truncated`, `generation_settings` (`n_ctx`, `n_predict`, ...) and `timings` (numbers; the
  prompt is not timed apart from generation, so the whole time is `predicted_ms`). Streamed (`stream: true`):
  `data: {"content": piece, "stop": false}` events, then the final object with `"stop": true` and an empty
  `content` (the text was streamed already; Continue's llama.cpp provider appends every `content`); no [DONE].
  The final object has one field of cllm's own: `source`, where the text was copied from ("path:line", or null).
- `GET /props`: what llama.vscode and other clients read of llama.cpp's server properties,
  `default_generation_settings.n_ctx` (the context) above all. `GET /health` is 503 `{"status": "loading
  model"}` until the workspace cache model serves beside the transformer (see `readiness`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cllm.engine.complete.generate import MAX_TEMPERATURE

from .api import MAX_COMPLETION_TOKENS, MAX_STOP_SEQUENCES, NO_MODEL, WORKSPACE, ApiError, error, read_json_object
from .completions import CompletionRequest, cllm_fields, run_completions, with_cursor_from_fim_markers
from .sse import stream_response

HEALTHY = {"status": "ok"}
NO_MODEL_TYPE = "unavailable_error"  # llama.cpp's error type while no model is loaded


class LlamaRequestError(ValueError):
    """A llama.cpp request field with a wrong type or value (answered with 400)."""


@dataclass
class LlamaRequest:
    """A checked /infill or /completion request: the cursor, streaming, and cllm completion options."""

    prefix: str
    suffix: str
    stream: bool
    warm_only: bool
    n_predict: int | None
    options: dict[str, Any] = field(default_factory=dict)


def parse_infill(body: dict[str, Any], *, max_tokens: int, max_stops: int) -> LlamaRequest:
    """Check a POST /infill body (see the module docstring); raises LlamaRequestError."""
    for chunk in typed(body, "input_extra", list, "a list of {filename, text} objects") or []:
        if not (isinstance(chunk, dict) and all(isinstance(chunk.get(k, ""), str) for k in ("filename", "text"))):
            raise LlamaRequestError("input_extra must be a list of {filename, text} objects with string values")
    prefix = (typed(body, "input_prefix", str, "a string") or "") + (typed(body, "prompt", str, "a string") or "")
    suffix = typed(body, "input_suffix", str, "a string") or ""
    return _request(body, prefix, suffix, max_tokens, max_stops)


def parse_completion(body: dict[str, Any], *, max_tokens: int, max_stops: int) -> LlamaRequest:
    """Check a POST /completion body: `prompt` must be a string (token arrays are not supported)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise LlamaRequestError("prompt must be a string (token arrays are not supported)")
    return _request(body, prompt, "", max_tokens, max_stops)


def _request(body: dict[str, Any], prefix: str, suffix: str, max_tokens: int, max_stops: int) -> LlamaRequest:
    """The fields /infill and /completion share."""
    n_predict = integer(body, "n_predict", -1, None)
    stop = typed(body, "stop", list, "a list of strings")
    if stop is not None and (len(stop) > max_stops or not all(isinstance(s, str) and s for s in stop)):
        raise LlamaRequestError(f"stop must be a list of at most {max_stops} non-empty strings")
    integer(body, "n_cmpl", 1, None)
    if not all(isinstance(name, str) for name in typed(body, "samplers", list, "a list of strings") or []):
        raise LlamaRequestError("samplers must be a list of strings")
    typed(body, "cache_prompt", bool, "true or false")
    seed = integer(body, "seed", None, 2**31 - 1)
    options = {
        "max_tokens": None if n_predict is None or n_predict < 0 else min(n_predict, max_tokens),
        "temperature": real(body, "temperature", 0.0, MAX_TEMPERATURE),
        "top_k": integer(body, "top_k", 0, None),
        "top_p": real(body, "top_p", 0.0, 1.0, low_open=True),
        "seed": None if seed is None or seed < 0 else seed,  # llama.cpp's -1: a random seed; ours is fixed
        "max_ms": real(body, "t_max_predict_ms", 0.0, None) or None,  # 0: no time limit, as in llama.cpp
        "stop": tuple(stop) if stop else None,
    }
    return LlamaRequest(prefix=prefix, suffix=suffix, stream=bool(typed(body, "stream", bool, "true or false")),
                        warm_only=n_predict == 0, n_predict=options["max_tokens"],
                        options={k: v for k, v in options.items() if v is not None})


def typed(body: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    """body[key] when it is a `kind` (a bool is no number), None when absent; else LlamaRequestError."""
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise LlamaRequestError(f"{key} must be {expected}")
    return value


def integer(body: dict[str, Any], key: str, low: int | None, high: int | None) -> int | None:
    """body[key] as a whole number within [low, high] (None: unbounded), None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
            or (high is not None and value > high):
        bounds = f" from {low}" if low is not None else ""
        raise LlamaRequestError(f"{key} must be a whole number{bounds}{f' to {high}' if high else ''}, got {value!r}")
    return value


def real(body: dict[str, Any], key: str, low: float, high: float | None, low_open: bool = False) -> float | None:
    """body[key] as a finite number within its bounds (`low_open`: above `low`), None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (low_open and value == low) or (high is not None and value > high):
        raise LlamaRequestError(f"{key} must be a number {'above' if low_open else 'from'} {low}"
                                f"{f' to {high}' if high is not None else ''}, got {value!r}")
    return float(value)


STOP_TYPES = {"eot": "eos", "max_tokens": "limit", "timeout": "limit", "stop": "word", "cancelled": "none"}


def final_object(completion: Any, req: LlamaRequest, n_ctx: int, default_max_tokens: int, *,
                 streamed: bool = False) -> dict[str, Any]:
    """llama.cpp's final completion object (to_json_non_oaicompat) for `completion` (None: an n_predict 0 warm-up).
    `streamed`: the last event of a stream, whose `content` is empty as in llama.cpp (the pieces carried it)."""
    text = completion.text if completion is not None else ""
    predicted = completion.tokens if completion is not None else 0
    evaluated = completion.prompt_tokens if completion is not None else 0
    ms = completion.ms if completion is not None else 0.0
    reason = completion.stop_reason if completion is not None else "max_tokens"
    stop = req.options.get("stop", ())
    return {
        "index": 0, "content": "" if streamed else text, "tokens": [], "id_slot": 0, "stop": True, "model": "cllm",
        "tokens_predicted": predicted, "tokens_evaluated": evaluated,
        "generation_settings": {"n_ctx": n_ctx, "n_predict": req.n_predict or (0 if req.warm_only else
                                                                               default_max_tokens),
                                "temperature": req.options.get("temperature", 0.0),
                                "top_k": req.options.get("top_k", 0), "top_p": req.options.get("top_p", 1.0),
                                "stop": list(stop)},
        "has_new_line": "\n" in text, "truncated": False, **cllm_fields(completion),  # cllm's own (docs/protocol.md)
        "stop_type": STOP_TYPES.get(reason, "eos"),  # cllm's own stop rules end a suggestion as an end of text
        "stopping_word": "",  # which stop string matched is not recorded
        "tokens_cached": evaluated + predicted,
        "timings": {"cache_n": 0, "prompt_n": evaluated, "prompt_ms": 0.0, "prompt_per_token_ms": 0.0,
                    "prompt_per_second": 0.0, "predicted_n": predicted, "predicted_ms": ms,
                    "predicted_per_token_ms": ms / predicted if predicted else 0.0,
                    "predicted_per_second": predicted * 1000.0 / ms if predicted and ms > 0 else 0.0},
    }


def piece_object(text: str) -> dict[str, Any]:
    """One streamed event before the final object."""
    return {"index": 0, "content": text, "tokens": [], "stop": False, "id_slot": 0}


async def infill(request: web.Request) -> web.StreamResponse:
    """POST /infill: llama.cpp's fill-in-the-middle."""
    return await _llama_completion(request, parse_infill, fim_markers=False)


async def llama_completion(request: web.Request) -> web.StreamResponse:
    """POST /completion: llama.cpp's completion."""
    return await _llama_completion(request, parse_completion, fim_markers=True)


def readiness(workspace: Any) -> str:
    """"ready" once the model serves with its workspace cache (or the cache is known to be unavailable),
    "loading" while the transformer serves alone, "no model" without one. The one place that reads how the
    Workspace tells it: point it at the served model's `ready` where there is one."""
    if not workspace.has_model:
        return "no model"
    return "ready" if workspace.mixture_settled.is_set() else "loading"


async def health(request: web.Request) -> web.Response:
    """GET /health: llama.cpp's health check: {"status": "ok"} once the model serves with its workspace cache,
    503 {"status": "loading model", "completer": ...} while the transformer serves alone, 503 without a model."""
    workspace = request.app[WORKSPACE]
    state = readiness(workspace)
    if state == "no model":
        raise ApiError(503, NO_MODEL, NO_MODEL_TYPE)
    if state == "loading":
        return web.json_response({"status": "loading model", "completer": workspace.status()["completer"]},
                                 status=503)
    return web.json_response(HEALTHY)


async def props(request: web.Request) -> web.Response:
    """GET /props: llama.cpp's server properties, those its clients read (llama.vscode: the context length in
    default_generation_settings.n_ctx); 503 without a model."""
    workspace = request.app[WORKSPACE]
    if not workspace.has_model:
        raise ApiError(503, NO_MODEL, NO_MODEL_TYPE)
    settings = {"n_ctx": workspace.model.context, "n_predict": workspace.completion_options().max_tokens,
                "temperature": 0.0, "top_k": 0, "top_p": 1.0, "stop": []}
    return web.json_response({
        "default_generation_settings": {**settings, "params": dict(settings)}, "total_slots": 1,
        "model_alias": "cllm", "model_path": str(workspace.model.path or ""), "chat_template": "",
        "modalities": {"vision": False, "audio": False}, "build_info": "cllm", "is_sleeping": False})


async def _llama_completion(request: web.Request, parse: Callable[..., LlamaRequest], *,
                            fim_markers: bool) -> web.StreamResponse:
    """Run a llama.cpp request; streamed as `data:` events ending with the final object (no [DONE]).
    With `fim_markers`, a prompt in another model's FIM template is split at its markers."""
    try:
        llama = parse(await read_json_object(request), max_tokens=MAX_COMPLETION_TOKENS,
                      max_stops=MAX_STOP_SEQUENCES)
    except LlamaRequestError as exc:
        raise error(400, str(exc)) from None
    workspace = request.app[WORKSPACE]
    if not workspace.has_model:
        raise ApiError(503, NO_MODEL, NO_MODEL_TYPE)
    req = CompletionRequest(prompts=[llama.prefix], suffix=llama.suffix, path=None, stream=llama.stream,
                            include_usage=False, options=llama.options)
    if fim_markers:
        req = with_cursor_from_fim_markers(req)
    settings = (workspace.model.context, workspace.completion_options().max_tokens)
    if llama.warm_only:  # n_predict 0: llama.cpp only fills its cache; nothing to generate here
        return web.json_response(final_object(None, llama, *settings))
    if not llama.stream:
        [(completion, _)] = await run_completions(request, req)
        return web.json_response(final_object(completion, llama, *settings))

    def ending(results: list[tuple[Any, int]]) -> list[dict]:
        [(completion, _)] = results
        return [final_object(completion, llama, *settings, streamed=True)]

    return await stream_response(request, lambda on_text: run_completions(request, req, on_text),
                                 lambda _index, text: piece_object(text), ending, done=False, client="llama.cpp")
