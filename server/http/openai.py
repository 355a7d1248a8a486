"""The OpenAI-compatible routes: POST /v1/completions (text completion, optionally streamed; also at
/completions for Continue with an apiBase without /v1), POST /v1/chat/completions, GET /v1/models (the model
serving completions) and GET /v1/models/{id} (the openai SDK's models.retrieve).

Two extensions beyond OpenAI's fields: `multiline` (continue while a block is open) and `path` (the file's path
in the workspace, which the model saw before each file in training). Each choice has one more: `source`, where
the text was copied from ("path:line", or null; in a stream, on the chunk with the finish_reason).

Chat, for clients that only call chat (litellm's `openai/` models, most assistants): cllm is a completion model
and does not chat. The reply is the continuation of the code in the last user message (its last fenced code
block when it has one, else the whole message), nothing more: no prose, no repeated code, no earlier messages.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from cllm.engine.complete.generate import MAX_TEMPERATURE

from ..settings import is_number
from .api import (MAX_COMPLETION_TOKENS, MAX_PROMPTS, MAX_REQUESTED_TOKENS, MAX_STOP_SEQUENCES, WORKSPACE, error,
                  read_json_object)
from .completions import CompletionRequest, cllm_fields, run_completions, with_cursor_from_fim_markers
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


def _head(prefix: str, kind: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": MODEL_ID}


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions (and /completions): OpenAI text completion; `stream: true` answers with SSE chunks
    as the text is generated, then [DONE] (no comment lines: Continue ends a stream at `: ping`)."""
    req = with_cursor_from_fim_markers(parse_completion_request(await read_json_object(request)))
    head = _head("cmpl", "text_completion")
    if not req.stream:
        results = await run_completions(request, req)
        choices = [{"text": c.text, "index": i, "finish_reason": _finish_reason(c.stop_reason), "logprobs": None,
                    **cllm_fields(c)} for i, (c, _) in enumerate(results)]
        return web.json_response({**head, "choices": choices, "usage": _usage(results)})

    def piece(index: int, text: str) -> dict:
        return {**head, "choices": [{"text": text, "index": index, "finish_reason": None, "logprobs": None}]}

    def ending(results: list[tuple[Any, int]]) -> list[dict]:
        finished = [{**head, "choices": [{"text": "", "index": i, "finish_reason": _finish_reason(c.stop_reason),
                                          "logprobs": None, **cllm_fields(c)}]}
                    for i, (c, _) in enumerate(results)]
        usage = [{**head, "choices": [], "usage": _usage(results)}] if req.include_usage else []
        return finished + usage

    return await stream_response(request, lambda on_text: run_completions(request, req, on_text), piece, ending,
                                 done=True, client="OpenAI")


FENCED_BLOCK = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
CHAT_FIELDS = ("model", "stop", "temperature", "top_p", "seed", "n", "stream", "stream_options", "multiline", "path")


def code_of_message(text: str) -> str:
    """The code a chat message asks to complete: its last fenced block (an unclosed one runs to the end),
    else the whole message."""
    blocks = FENCED_BLOCK.findall(text)
    return blocks[-1][1] if blocks else text


def _message_text(message: Any) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise error(400, "message content must be a string or a list of text parts")


def parse_chat_request(body: dict[str, Any]) -> CompletionRequest:
    """Check a chat completions body and turn it into the completion of the last user message's code."""
    messages = body.get("messages")
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
        raise error(400, "messages must be a non-empty list of {role, content} objects")
    for message in messages:
        if not isinstance(message.get("role"), str):
            raise error(400, "every message needs a role (a string)")
        if message.get("content") is not None or message["role"] == "user":
            _message_text(message)
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise error(400, "messages must hold a user message: its code is what cllm completes")
    if body.get("tools") or body.get("functions"):
        raise error(400, "tools are not supported: cllm completes code, it does not chat")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise error(400, "response_format is not supported: the reply is code")
    completion = {key: body[key] for key in CHAT_FIELDS if key in body}
    completion["prompt"] = code_of_message(_message_text(users[-1]))
    limits = [_number(body, key, int, 1, MAX_REQUESTED_TOKENS) for key in ("max_completion_tokens", "max_tokens")]
    if any(limit is not None for limit in limits):
        completion["max_tokens"] = next(limit for limit in limits if limit is not None)
    return parse_completion_request(completion)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: the continuation of the last user message's code as the assistant's reply;
    streamed as chat.completion.chunk deltas then [DONE] with `stream: true`."""
    req = parse_chat_request(await read_json_object(request))
    if not req.stream:
        [(completion, prompt_tokens)] = await run_completions(request, req)
        choice = {"index": 0, "message": {"role": "assistant", "content": completion.text},
                  "finish_reason": _finish_reason(completion.stop_reason), "logprobs": None,
                  **cllm_fields(completion)}
        return web.json_response({**_head("chatcmpl", "chat.completion"), "choices": [choice],
                                  "usage": _usage([(completion, prompt_tokens)])})
    head = _head("chatcmpl", "chat.completion.chunk")
    started = False  # the first delta names the role, as OpenAI's do

    def piece(_index: int, text: str) -> dict:
        nonlocal started
        delta = {"content": text} if started else {"role": "assistant", "content": text}
        started = True
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]}

    def ending(results: list[tuple[Any, int]]) -> list[dict]:
        [(completion, _)] = results
        delta = {} if started else {"role": "assistant", "content": ""}
        finished = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": _finish_reason(completion.stop_reason),
                                         **cllm_fields(completion)}]}
        return [finished] + ([{**head, "choices": [], "usage": _usage(results)}] if req.include_usage else [])

    return await stream_response(request, lambda on_text: run_completions(request, req, on_text), piece, ending,
                                 done=True, client="OpenAI chat")


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{id}: the served model under its id `cllm`; 404 for another id or without a model."""
    listed = [m for m in _served(request.app[WORKSPACE]) if m["id"] == request.match_info["id"]]
    if not listed:
        raise error(404, f"The model '{request.match_info['id']}' does not exist (this server has one model, "
                         f"'{MODEL_ID}', once trained)")
    return web.json_response(listed[0])


def _served(workspace: Any) -> list[dict[str, Any]]:
    """The model serving completions, as OpenAI model objects (none before one is trained)."""
    model = workspace.status()["model"]
    if not model.get("present"):
        return []
    return [{"id": MODEL_ID, "object": "model", "created": _unix_time(model.get("trainedAt")),
             "owned_by": "cllm", "workspace": str(workspace.root)}]


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: the model serving completions, if any (OpenAI list shape). It comes from the same
    Workspace state as /v1/status, not from the file on disk, which may be gone or half-written meanwhile."""
    return web.json_response({"object": "list", "data": _served(request.app[WORKSPACE])})


def _unix_time(iso: Any) -> int:
    """Seconds since the epoch of an ISO 8601 time (a model's training date); 0 when unknown or unreadable."""
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return 0
