"""What every route module of the HTTP server shares: the keys of the app's state, the JSON error answer
(ApiError, in OpenAI's shape), the request body reader and the limits the completion routes enforce. It imports
no route module, so that app.py can import them all."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .input import parse_json_object
from .security import AccessPolicy

WORKSPACE = web.AppKey("workspace", object)
POLICY = web.AppKey("policy", AccessPolicy)
HUB = web.AppKey("hub", object)
LIMITS = web.AppKey("limits", object)
MAX_BODY = web.AppKey("max_body", int)

MAX_PROMPTS = 8
MAX_COMPLETION_TOKENS = 2048
MAX_REQUESTED_TOKENS = 32768  # a larger max_tokens is refused; up to it, one above MAX_COMPLETION_TOKENS is lowered
MAX_STOP_SEQUENCES = 32
NO_MODEL = "no model yet: train the workspace first (POST /v1/train, the editor command or `cllm train`)"


class ApiError(Exception):
    """An error answered as OpenAI-style JSON {"error": {"message", "type", "code"}} with `status`."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind

    def response(self, *, ollama: bool = False) -> web.Response:
        """The JSON answer; `ollama`: in Ollama's shape, {"error": "message"} (its clients show the string)."""
        body = {"error": self.message} if ollama else {"error": {"message": self.message, "type": self.kind,
                                                                  "code": self.status}}
        return web.json_response(body, status=self.status)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "service_unavailable"}


def error(status: int, message: str) -> ApiError:
    """An ApiError with the OpenAI error type of `status`."""
    return ApiError(status, message, ERROR_TYPES.get(status, "server_error"))


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a checked JSON object (server/http/input.py); 400 when it is not one, {} for an empty
    optional body."""
    return parse_json_object(await request.read(), optional=optional)
