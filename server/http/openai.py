"""The OpenAI-compatible routes: POST /v1/completions (text completion, optionally streamed; also at
/completions for Continue with an apiBase without /v1) and GET /v1/models (the model serving completions).

Two extensions beyond OpenAI's fields: `multiline` (continue while a block is open) and `path` (the file's path
in the workspace, which the model saw before each file in training).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from cllm.engine.complete.generate import MAX_TEMPERATURE

from ..settings import is_number
from .api import (MAX_COMPLETION_TOKENS, MAX_PROMPTS, MAX_REQUESTED_TOKENS, MAX_STOP_SEQUENCES, WORKSPACE, error,
                  read_json_object)
from .completions import CompletionRequest, run_completions, with_cursor_from_fim_markers
from .input import flag_field, path_field
from .sse import stream_response

MODEL_ID = "cllm"


def _number(body: dict, key: str, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value) or (kind is int and value != int(value)):
        raise error(400, f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:  # exact for ints of any size: no conversion to float
        shown = repr(value) if abs(value) < 10**20 else f"a number of {len(str(int(value)))} digits"
        raise error(400, f"{key} must be between {low} and {high}, got {shown}")
    return kind(value)


def parse_completion_request(body: dict[str, Any]) -> CompletionRequest:
    """Check an OpenAI completions body; unsupported or malformed fields are a 400 that says which.

    Two extensions beyond OpenAI's fields: `multiline` (continue while a block is open) and `path` (the file's
    path in the workspace, which the model saw before each file in training).
    """
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = prompt
    else:
        raise error(400, "prompt must be a string or a non-empty list of strings (token arrays are not supported)")
    if len(prompts) > MAX_PROMPTS:
        raise error(400, f"at most {MAX_PROMPTS} prompts per request")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise error(400, "model must be a string")
    suffix = body.get("suffix")
    if suffix is None:
        suffix = ""
    elif not isinstance(suffix, str):
        raise error(400, "suffix must be a string")
    if any(body.get(key) is not None and (isinstance(body[key], bool) or body[key] != 1) for key in ("n", "best_of")):
        raise error(400, "only n=1 and best_of=1 are supported")
    if body.get("echo") or body.get("logprobs"):
        raise error(400, "echo and logprobs are not supported")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES
                                 and all(isinstance(s, str) and s for s in stop)):
        raise error(400, f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings")
    options = {
        "max_tokens": clamp_max_tokens(_number(body, "max_tokens", int, 1, MAX_REQUESTED_TOKENS)),
        "temperature": _number(body, "temperature", float, 0.0, MAX_TEMPERATURE),
        "top_p": _number(body, "top_p", float, 1e-6, 1.0),
        "seed": _number(body, "seed", int, 0, 2**31 - 1),
        "stop": tuple(stop) if stop else None,
        "multiline": flag_field(body, "multiline"),
    }
    stream_options = body.get("stream_options")
    if stream_options is None:
        stream_options = {}
    elif not isinstance(stream_options, dict):
        raise error(400, "stream_options must be an object")
    return CompletionRequest(prompts=prompts, suffix=suffix, path=path_field(body, "path"),
                             stream=bool(flag_field(body, "stream")),
                             include_usage=bool(flag_field(stream_options, "include_usage")),
                             options={k: v for k, v in options.items() if v is not None})


def clamp_max_tokens(requested: int | None) -> int | None:
    """A requested token limit, lowered to MAX_COMPLETION_TOKENS: clients send their own defaults (Continue
    4096), and the model's context caps the completion anyway."""
    return None if requested is None else min(requested, MAX_COMPLETION_TOKENS)


def _finish_reason(stop_reason: str) -> str:
    """OpenAI finish_reason of an engine stop reason: "length" when cut by the token or time budget."""
    return "length" if stop_reason in ("max_tokens", "timeout") else "stop"


def _usage(results: list[tuple[Any, int]]) -> dict[str, int]:
    prompt = sum(p for _, p in results)
    completion = sum(c.tokens for c, _ in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions (and /completions): OpenAI text completion; `stream: true` answers with SSE chunks
    as the text is generated, then [DONE] (no comment lines: Continue ends a stream at `: ping`)."""
    req = with_cursor_from_fim_markers(parse_completion_request(await read_json_object(request)))
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": MODEL_ID}
    if not req.stream:
        results = await run_completions(request, req)
        choices = [{"text": c.text, "index": i, "finish_reason": _finish_reason(c.stop_reason), "logprobs": None}
                   for i, (c, _) in enumerate(results)]
        return web.json_response({**head, "choices": choices, "usage": _usage(results)})

    def piece(index: int, text: str) -> dict:
        return {**head, "choices": [{"text": text, "index": index, "finish_reason": None, "logprobs": None}]}

    def ending(results: list[tuple[Any, int]]) -> list[dict]:
        finished = [{**head, "choices": [{"text": "", "index": i, "finish_reason": _finish_reason(c.stop_reason),
                                          "logprobs": None}]} for i, (c, _) in enumerate(results)]
        usage = [{**head, "choices": [], "usage": _usage(results)}] if req.include_usage else []
        return finished + usage

    return await stream_response(request, lambda on_text: run_completions(request, req, on_text), piece, ending,
                                 done=True, client="OpenAI")


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: the model serving completions, if any (OpenAI list shape). It comes from the same
    Workspace state as /v1/status, not from the file on disk, which may be gone or half-written meanwhile."""
    workspace = request.app[WORKSPACE]
    model = workspace.status()["model"]
    data = []
    if model.get("present"):
        data.append({"id": MODEL_ID, "object": "model", "created": _unix_time(model.get("trainedAt")),
                     "owned_by": "cllm", "workspace": str(workspace.root)})
    return web.json_response({"object": "list", "data": data})


def _unix_time(iso: Any) -> int:
    """Seconds since the epoch of an ISO 8601 time (a model's training date); 0 when unknown or unreadable."""
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return 0
