"""The OpenAPI 3.1 description of the model server (served at GET /openapi.json).

One entry per route of server/http/app.py, keyed by the route's name: request bodies with their fields and limits,
the responses, and the bearer security scheme on every route that is not public. A test compares the app's
routes with this description, so a new route cannot go undescribed.
"""

from __future__ import annotations

from typing import Any

from cllm.engine.config import editor_settings

from .. import __version__
from ..settings import BASE_CHOICES

ERROR = {"$ref": "#/components/schemas/Error"}
JSON_OBJECT = {"type": "object"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {400: "bad request (the message says which field)", 401: "missing or wrong bearer token",
             403: "Host, Origin or path not allowed", 404: "not found", 413: "body too large",
             429: "too many concurrent requests", 503: "no model yet, or the server is closing"}
    return {str(status): _json(ERROR, words[status]) for status in statuses}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A request object (a body or an object in one); every optional field may also be null, which the server
    takes as absent (as clients that serialise unset options as null expect)."""
    return {"type": "object", "required": required, "properties": {
        name: schema if name in required else {"anyOf": [schema, {"type": "null"}]}
        for name, schema in properties.items()}}


def _completion_body(limits: dict[str, Any]) -> dict[str, Any]:
    """The /v1/completions request: OpenAI's fields that cllm honours, plus `multiline` and `path`."""
    return _object(["prompt"], {
        "model": {"type": "string", "description": "ignored: the server has one model, `cllm`"},
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                                  "maxItems": limits["max_prompts"]}],
                   "description": "text before the cursor; a prompt in a FIM template (<fim_prefix>, <|fim_prefix|>, "
                                  "<PRE>, [SUFFIX], DeepSeek's) is split into prefix and suffix at its markers"},
        "suffix": {"type": "string", "description": "text after the cursor"},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": limits["max_requested_tokens"],
                       "description": f"lowered to {limits['max_completion_tokens']} and to the model's context"},
        "temperature": {"type": "number", "minimum": 0, "maximum": limits["max_temperature"]},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "stop": {"oneOf": [{"type": "string", "minLength": 1},
                           {"type": "array", "items": {"type": "string", "minLength": 1},
                            "maxItems": limits["max_stop_sequences"]}]},
        "stream": {"type": "boolean", "description": "server-sent events as the text is generated, then [DONE]"},
        "stream_options": _object([], {"include_usage": {"type": "boolean"}}),
        "n": {"const": 1}, "best_of": {"const": 1},
        "multiline": {"type": "boolean", "description": "continue while a block is open"},
        "path": {"type": "string", "description": "the file's path in the workspace"},
    })


def _llama_body(limits: dict[str, Any], infill: bool) -> dict[str, Any]:
    """The llama.cpp /infill or /completion request (server/http/llama.py)."""
    fields: dict[str, Any] = {
        "n_predict": {"type": "integer", "minimum": -1, "description": "token limit; -1 the default, 0 answers "
                      f"empty at once (cache warm-up); lowered to {limits['max_completion_tokens']}"},
        "stream": {"type": "boolean", "description": "data: events with content, the last one the final object"},
        "stop": {"type": "array", "items": {"type": "string", "minLength": 1},
                 "maxItems": limits["max_stop_sequences"]},
        "t_max_predict_ms": {"type": "number", "minimum": 0, "description": "time budget; 0 none"},
        "temperature": {"type": "number", "minimum": 0, "maximum": limits["max_temperature"]},
        "top_k": {"type": "integer", "minimum": 0}, "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "maximum": 2**31 - 1},
        "n_cmpl": {"type": "integer", "minimum": 1, "description": "one completion is returned"},
        "samplers": {"type": "array", "items": {"type": "string"}, "description": "ignored"},
        "cache_prompt": {"type": "boolean", "description": "ignored: the cache is always reused"},
    }
    if not infill:
        return _object(["prompt"], {"prompt": {"type": "string"}, **fields})
    extra = {"type": "array", "items": {"type": "object", "properties": {
        "filename": {"type": "string"}, "text": {"type": "string"}}}, "description": "checked, not used"}
    return _object([], {
        "input_prefix": {"type": "string"}, "input_suffix": {"type": "string"}, "input_extra": extra,
        "prompt": {"type": "string", "description": "the cursor line's start, appended to input_prefix"},
        **fields})


# cllm's own field on every answer: where the suggestion was copied from (engine/complete/sources.py)
SOURCE = {"type": ["string", "null"], "description": "where the text was copied from: path:line in the workspace"}

LLAMA_RESULT = {"type": "object", "required": ["content", "stop", "generation_settings", "timings"], "properties": {
    "content": {"type": "string"}, "stop": {"type": "boolean"}, "source": SOURCE,
    "stop_type": {"enum": ["eos", "limit", "word", "none"]},
    "tokens_predicted": {"type": "integer"}, "tokens_evaluated": {"type": "integer"},
    "tokens_cached": {"type": "integer"}, "truncated": {"type": "boolean"},
    "generation_settings": {"type": "object", "properties": {"n_ctx": {"type": "integer"},
                                                             "n_predict": {"type": "integer"}}},
    "timings": {"type": "object", "additionalProperties": {"type": "number"}}}}

LOADING = {"type": "object", "required": ["status"], "properties": {"status": {"const": "loading model"},
                                                                    "completer": {"type": "string"}}}

LLAMA_PIECE = {"type": "object", "required": ["content", "stop"], "properties": {
    "content": {"type": "string"}, "stop": {"const": False}}}

COMPLETION_RESULT = {"type": "object", "properties": {
    "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": {"type": "integer"},
    "model": {"type": "string"},
    "choices": {"type": "array", "items": {"type": "object", "properties": {
        "text": {"type": "string"}, "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length", None]},
        "logprobs": {"type": "null"}, "source": SOURCE}}},
    "usage": {"type": "object", "properties": {k: {"type": "integer"} for k in
                                               ("prompt_tokens", "completion_tokens", "total_tokens")}}}}


def _training_settings() -> dict[str, Any]:
    """The `training` object of /v1/train: the editor settings' training keys, each with its check (engine/config.py
    OPTIONS), and training.base / training.baseCorpus, checked as in the settings (server/settings.py)."""
    return {**_object([], {
        **editor_settings(),
        "base": {"enum": list(BASE_CHOICES), "description": "as the editor setting: what to do while no base exists"},
        "baseCorpus": {"type": "array", "items": {"type": "string", "minLength": 1},
                       "description": "folders a prepared base learns from"}}),
        "additionalProperties": False, "description": "training settings, camelCase as the editor settings"}


CHAT_RESULT = {"type": "object", "properties": {
    "id": {"type": "string"}, "object": {"enum": ["chat.completion", "chat.completion.chunk"]},
    "created": {"type": "integer"}, "model": {"type": "string"},
    "choices": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length", None]}, "source": SOURCE,
        "message": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
        "delta": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}}}}},
    "usage": COMPLETION_RESULT["properties"]["usage"]}}

MODEL_OBJECT = {"type": "object", "required": ["id", "object"], "properties": {
    "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
    "owned_by": {"type": "string"}}}

OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

OLLAMA_MODEL = {"type": "object", "required": ["name", "model", "size", "digest", "details"], "properties": {
    "name": {"type": "string"}, "model": {"type": "string"}, "size": {"type": "integer"},
    "digest": {"type": "string"}, "details": {"type": "object"}}}

GENERATE_RESULT = {"type": "object", "required": ["model", "created_at", "response", "done"], "properties": {
    "model": {"type": "string"}, "created_at": {"type": "string"}, "response": {"type": "string"},
    "done": {"type": "boolean"}, "done_reason": {"enum": ["stop", "length", "load", "unload"]}, "source": SOURCE,
    **{key: {"type": "integer", "minimum": 0} for key in ("total_duration", "load_duration", "prompt_eval_count",
                                                          "prompt_eval_duration", "eval_count", "eval_duration")}}}


def _ollama_errors(*statuses: int) -> dict[str, Any]:
    """Error answers on Ollama's routes, in its shape {"error": "text"}."""
    return {status: {**answer, "content": {"application/json": {"schema": OLLAMA_ERROR}}}
            for status, answer in _errors(*statuses).items()}


def _chat_body(limits: dict[str, Any]) -> dict[str, Any]:
    """The /v1/chat/completions request: messages, and the completion fields that apply to a chat."""
    text_part = {"type": "object", "required": ["type", "text"], "properties": {
        "type": {"const": "text"}, "text": {"type": "string"}}}
    message = {"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string"}, "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": text_part},
                                                          {"type": "null"}]}}}
    shared = _completion_body(limits)["properties"]
    fields = {key: shared[key]["anyOf"][0] for key in ("model", "max_tokens", "temperature", "top_p", "seed",
                                                       "stop", "stream", "stream_options", "n", "multiline",
                                                       "path")}
    return _object(["messages"], {
        "messages": {"type": "array", "items": message, "minItems": 1,
                     "description": "the last user message's code (its last fenced block, else all of it) is "
                                    "what the reply completes"},
        "max_completion_tokens": fields["max_tokens"], **fields})


def _ollama_generate_body(limits: dict[str, Any]) -> dict[str, Any]:
    """The Ollama /api/generate request (server/http/ollama.py)."""
    stop = {"type": "string", "minLength": 1}
    options = _object([], {
        "num_predict": {"type": "integer", "minimum": -2, "description": "-1, -2: the default"},
        "temperature": {"type": "number", "minimum": 0, "maximum": limits["max_temperature"]},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "top_k": {"type": "integer", "minimum": 0},
        "seed": {"type": "integer", "maximum": 2**31 - 1},
        "stop": {"oneOf": [stop, {"type": "array", "items": stop, "maxItems": limits["max_stop_sequences"]}]}})
    return _object([], {
        "model": {"type": "string", "description": "any name: the server has one model"},
        "prompt": {"type": "string"}, "suffix": {"type": "string", "description": "text after the cursor"},
        "raw": {"type": "boolean"}, "system": {"type": "string"}, "template": {"type": "string"},
        "stream": {"type": "boolean", "description": "NDJSON lines unless false"},
        "keep_alive": {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "accepted, ignored"},
        "options": options})


def _ollama_routes(limits: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Ollama's routes: route name -> (method, path, operation)."""
    tags = {"type": "object", "required": ["models"], "properties": {"models": {"type": "array",
                                                                                  "items": OLLAMA_MODEL}}}
    show_body = _object([], {"model": {"type": "string"}, "name": {"type": "string"}})
    return {
        "ollama_generate": ("post", "/api/generate", {
            "summary": "Ollama completion (prompt, suffix)", "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ollama_generate_body(limits)}}},
            "responses": {"200": {"description": "the final object, or NDJSON lines ending with done: true",
                                  "content": {"application/json": {"schema": GENERATE_RESULT},
                                              "application/x-ndjson": {"schema": GENERATE_RESULT}}},
                          **_ollama_errors(400, 401, 403, 404, 413, 429, 503)}}),
        "ollama_tags": ("get", "/api/tags", {"summary": "Ollama's model list",
                                             "responses": {"200": _json(tags, "the served model, if any")}}),
        "ollama_ps": ("get", "/api/ps", {"summary": "Ollama's loaded models",
                                         "responses": {"200": _json(tags, "the loaded model, if any")}}),
        "ollama_show": ("post", "/api/show", {
            "summary": "Ollama's model details", "requestBody": {"required": True, "content": {
                "application/json": {"schema": show_body}}},
            "responses": {"200": _json({"type": "object", "required": ["template", "details", "model_info"]},
                                       "the served model, under any name"),
                          **_ollama_errors(400, 404, 413)}}),
        "ollama_version": ("get", "/api/version", {"summary": "cllm's version", "responses": {"200": _json(
            {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
            "version")}}),
    }


def _sse_event(data: dict[str, Any], done: str | None = None) -> dict[str, Any]:
    """One server-sent event whose `data` is a JSON document matching `data` (or the end marker `done`)."""
    json_data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json", "contentSchema": data}
    return {"type": "object", "required": ["data"], "properties": {
        "data": json_data if done is None else {"anyOf": [{"const": done}, json_data]}}}


def _routes(limits: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Route name -> (method, path, operation)."""
    completion = {"summary": "OpenAI text completion", "requestBody": {"required": True, "content": {
        "application/json": {"schema": _completion_body(limits)}}},
        "responses": {"200": {"description": "the completion, or with stream a text/event-stream of chunks",
                              "content": {"application/json": {"schema": COMPLETION_RESULT},
                                          "text/event-stream": {"schema": _sse_event(COMPLETION_RESULT,
                                                                                     done="[DONE]")}}},
                      **_errors(400, 401, 403, 413, 429, 503)}}
    train_body = {**_object([], {
        "path": {"type": "string", "minLength": 1, "description": "a folder inside the workspace"},
        "training": _training_settings()}), "additionalProperties": False}
    return {
        "dashboard": ("get", "/", {"summary": "the dashboard page; /?token=<token> hands it the token",
                                   "responses": {"200": {"description": "HTML page"}}}),
        "static": ("get", "/dashboard/{name}", {
            "summary": "the dashboard's script or style sheet",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"enum": ["app.js", "style.css"]}}],
            "responses": {"200": {"description": "the file"}, **_errors(404)}}),
        "status": ("get", "/v1/status", {"summary": "the workspace status (as the LSP cllm.status)",
                                         "responses": {"200": _json(JSON_OBJECT, "status object")}}),
        "models": ("get", "/v1/models", {"summary": "the model list, OpenAI shape",
                                         "responses": {"200": _json(JSON_OBJECT, "list of models")}}),
        "completions": ("post", "/v1/completions", completion),
        "completions_without_v1": ("post", "/completions", {**completion,
                                                            "summary": "/v1/completions, for an apiBase without /v1"}),
        "chat_completions": ("post", "/v1/chat/completions", _chat_operation(limits)),
        "model": ("get", "/v1/models/{id}", {
            "summary": "one model by id (openai models.retrieve)",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]+$"}}],
            "responses": {"200": _json(MODEL_OBJECT, "the model"), **_errors(404)}}),
        "openapi": ("get", "/openapi.json", {"summary": "this description",
                                             "responses": {"200": _json(JSON_OBJECT, "OpenAPI 3.1 document")}}),
        "train": ("post", "/v1/train", {"summary": "start training", "requestBody": {
            "required": False, "content": {"application/json": {"schema": train_body}}},
            "responses": {"202": _json(JSON_OBJECT, "started"), **_errors(400, 401, 403, 404, 429, 503)}}),
        "cancel": ("post", "/v1/train/cancel", {"summary": "cancel the running training",
                                                "responses": {"200": _json({"type": "object", "properties": {
                                                    "cancelled": {"type": "boolean"}}}, "whether a run stopped"),
                                                    **_errors(401, 403)}}),
        "events": ("get", "/v1/events", {"summary": "server-sent training events (docs/protocol.md)",
                                         "responses": {"200": {"description": "text/event-stream"},
                                                       **_errors(401, 403, 429)}}),
        **_llama_routes(limits),
        **_ollama_routes(limits),
    }


def _llama_routes(limits: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """llama.cpp's routes: route name -> (method, path, operation)."""
    llama = {"responses": {"200": {"description": "the final object, or with stream a text/event-stream",
                                   "content": {"application/json": {"schema": LLAMA_RESULT},
                                               "text/event-stream": {"schema": _sse_event(
                                                   {"oneOf": [LLAMA_PIECE, LLAMA_RESULT]})}}},
                           **_errors(400, 401, 403, 413, 429, 503)}}
    return {
        "infill": ("post", "/infill", {**llama, "summary": "llama.cpp fill-in-the-middle", "requestBody": {
            "required": True, "content": {"application/json": {"schema": _llama_body(limits, True)}}}}),
        "llama_completion": ("post", "/completion", {**llama, "summary": "llama.cpp completion", "requestBody": {
            "required": True, "content": {"application/json": {"schema": _llama_body(limits, False)}}}}),
        "props": ("get", "/props", {"summary": "llama.cpp server properties (the context length)",
                                    "responses": {"200": _json({"type": "object", "required": [
                                        "default_generation_settings"]}, "properties"),
                                        **_errors(401, 403, 503)}}),
        "health": ("get", "/health", {"summary": "llama.cpp health check", "responses": {
            "200": _json({"type": "object", "properties": {"status": {"const": "ok"}}},
                         "the model serves with its workspace cache"),
            "503": _json({"oneOf": [ERROR, LOADING]}, "no model yet, or the workspace cache is loading")}}),
    }


def _chat_operation(limits: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/chat/completions: the reply completes the code of the last user message."""
    return {"summary": "chat for chat-only clients: the reply completes the last user message's code",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _chat_body(limits)}}},
            "responses": {"200": {"description": "the reply, or with stream a text/event-stream of chunks",
                                  "content": {"application/json": {"schema": CHAT_RESULT},
                                              "text/event-stream": {"schema": _sse_event(CHAT_RESULT,
                                                                                         done="[DONE]")}}},
                          **_errors(400, 401, 403, 413, 429, 503)}}


def openapi_document(limits: dict[str, Any], public: set[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document; `limits` are the server's request limits, `public` the route names that need
    no token (every other route requires `Authorization: Bearer <token>`)."""
    paths: dict[str, dict[str, Any]] = {}
    for name, (method, path, operation) in _routes(limits).items():
        security = [] if name in public else [{"bearer": []}]
        paths.setdefault(path, {})[method] = {"operationId": name, **operation, "security": security}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cllm model server", "version": __version__,
                 "description": "Local C code completion over one workspace. Requests must name the server in "
                                "Host, carry no foreign Origin, and stay under "
                                f"{limits['max_body_bytes']} bytes."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description":
                                           "the --api-key / CLLM_API_KEY key, else the model folder's `token` file"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                                 "code": {"type": "integer"}}}}}},
        },
    }
