"""The local model server: one Workspace over HTTP (aiohttp), for tools and for the live dashboard. This module
is the app itself: its route table, the middleware every request passes (errors as JSON, then the Host, Origin,
body size and token checks), and starting and stopping the server.

Endpoints, by the module that answers them (security rules and the token hand-over are explained in
security.py, the checks on request bodies in input.py, connection limits and timeouts in limits.py):

    pages.py   GET  /                 dashboard page (public; renders the token in only for `/?token=<valid>`)
               GET  /dashboard/<file> its script and style sheet (public)
    events.py  GET  /v1/status        the Workspace status, the same object as the LSP `cllm.status` (public)
               GET  /v1/events        server-sent events: current state first, then training progress (token);
                                      the events of docs/protocol.md with camelCase keys
    openai.py  GET  /v1/models        the workspace's loaded model (as /v1/status reports it), OpenAI list shape
                                      (public)
               GET  /v1/models/{id}   that model by id (the openai SDK's models.retrieve; public)
               POST /v1/completions   OpenAI-compatible text completion, optionally streamed (token); also at
                                      /completions (Continue with an apiBase without /v1)
               POST /v1/chat/completions  chat for chat-only clients: the reply completes the code of the last
                                      user message (token)
    llama.py   POST /infill           llama.cpp's server routes, for llama.vscode and other llama.cpp clients
               POST /completion       (token)
               GET  /props            llama.cpp's server properties: the context length (token)
               GET  /health           llama.cpp's health check: 200 {"status": "ok"} once the workspace cache
                                      serves, 503 while loading or without a model (public)
    ollama.py  POST /api/generate     Ollama's API, for Continue's ollama provider and Ollama's clients
                                      (token); errors there are Ollama's {"error": "text"}
               GET  /api/tags, /api/ps, /api/version, POST /api/show  the model and server (public)
    train.py   POST /v1/train         start training the workspace or a folder inside it (token)
               POST /v1/train/cancel  cancel the running training (token)
    app.py     GET  /openapi.json     the OpenAPI 3.1 description of every route (public; openapi.py)

Completions run on the Workspace's worker thread (server/worker.py), which the language server's completions
share in turn (the model is not re-entrant and the event loop must never block); a small bounded number may
wait for it, more get 429 (completions.py). Every stream is written by sse.py.
`serve_http` runs the app inside an existing event loop (the language server's), `run_server` is `cllm serve`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from cllm.engine.complete.generate import MAX_TEMPERATURE

from . import llama, ollama, openai, pages, train
from .api import (HUB, LIMITS, MAX_BODY, MAX_COMPLETION_TOKENS, MAX_PROMPTS, MAX_REQUESTED_TOKENS,
                  MAX_STOP_SEQUENCES, POLICY, WORKSPACE, ApiError, error)
from .completions import Limits
from .events import EventHub, events, status
from .input import BadInput
from .limits import ConnectionGate, ConnectionLimits, GatedSite, rate_limit_logs
from .openapi import openapi_document
from .security import API_KEY_ENV, MAX_BODY_BYTES, AccessPolicy, is_loopback_host, stable_token

__all__ = ["HUB", "LIMITS", "MAX_STOP_SEQUENCES", "PUBLIC_ROUTES", "EventHub", "HttpServer", "create_app",
           "run_server", "serve_http"]

log = logging.getLogger("cllm.http")

PUBLIC_ROUTES = {"dashboard", "static", "status", "models", "model", "health", "openapi", "ollama_tags",
                 "ollama_show", "ollama_version", "ollama_ps"}
OLLAMA_PREFIX = "/api/"  # Ollama's routes, whose errors are {"error": "text"}


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings: the dashboard URL carries the token, which must never be logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every error becomes {"error": {"message", "type"}} JSON with its status (on Ollama's routes its shape,
    {"error": "message"}); bugs become a logged 500."""
    try:
        return await handler(request)
    except ConnectionError:
        raise  # the client went away: aiohttp ends the request quietly
    except Exception as exc:  # every answer below is an ApiError's
        api_error = _as_api_error(request, exc)
        return api_error.response(ollama=request.path.startswith(OLLAMA_PREFIX))


def _as_api_error(request: web.Request, exc: Exception) -> ApiError:
    """The ApiError that answers `exc`; re-raises a non-error HTTP answer (a redirect)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadInput):
        return error(400, str(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status_code < 400:
            raise exc
        message = exc.reason
        if exc.status_code == 413:
            message = f"request body too large (limit {request.app[MAX_BODY]} bytes)"
        return error(exc.status_code, message)
    log.exception("internal error on %s %s", request.method, request.path, exc_info=exc)
    return ApiError(500, "internal server error (see the server log)", "server_error")


@web.middleware
async def guard_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Host, Origin, body size and bearer token checks, before any handler reads or starts anything."""
    policy = request.app[POLICY]
    if not policy.host_allowed(request.headers.get("Host")):
        raise error(403, "Host header does not name this server (requests must use 127.0.0.1, localhost or [::1] "
                         f"with port {policy.port})")
    if not policy.origin_allowed(request.headers.get("Origin")):
        raise error(403, "cross-origin requests are not allowed")
    if request.content_length is not None and request.content_length > request.app[MAX_BODY]:
        raise error(413, f"request body too large (limit {request.app[MAX_BODY]} bytes)")
    route = request.match_info.route
    if request.match_info.http_exception is None and route.name not in PUBLIC_ROUTES:
        if not policy.authorized(request.headers.get("Authorization")):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>; the token is in "
                                f"{request.app[WORKSPACE].token_path})", "authentication_error")
    return await handler(request)


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 description of this server (server/http/openapi.py)."""
    limits = {"max_prompts": MAX_PROMPTS, "max_completion_tokens": MAX_COMPLETION_TOKENS,
              "max_requested_tokens": MAX_REQUESTED_TOKENS, "max_stop_sequences": MAX_STOP_SEQUENCES,
              "max_temperature": MAX_TEMPERATURE, "max_body_bytes": request.app[MAX_BODY]}
    return web.json_response(openapi_document(limits, public=PUBLIC_ROUTES))


def create_app(workspace: Any, policy: AccessPolicy, *, max_body: int = MAX_BODY_BYTES,
               max_pending_completions: int = 4, max_event_clients: int = 16) -> web.Application:
    """The aiohttp application over `workspace`; `policy` carries the bound address, port and token."""
    app = web.Application(middlewares=[error_middleware, guard_middleware], client_max_size=max_body)
    app[WORKSPACE] = workspace
    app[POLICY] = policy
    app[MAX_BODY] = max_body
    app.router.add_get("/", pages.dashboard, name="dashboard")
    app.router.add_get("/dashboard/{name}", pages.static, name="static")
    app.router.add_get("/v1/status", status, name="status")
    app.router.add_get("/v1/models", openai.models, name="models")
    app.router.add_get("/v1/models/{id}", openai.retrieve_model, name="model")
    app.router.add_post("/v1/completions", openai.completions, name="completions")
    app.router.add_post("/completions", openai.completions, name="completions_without_v1")
    app.router.add_post("/v1/chat/completions", openai.chat_completions, name="chat_completions")
    app.router.add_post("/infill", llama.infill, name="infill")
    app.router.add_post("/completion", llama.llama_completion, name="llama_completion")
    app.router.add_get("/props", llama.props, name="props")
    app.router.add_get("/health", llama.health, name="health")
    app.router.add_post("/api/generate", ollama.generate, name="ollama_generate")
    app.router.add_get("/api/tags", ollama.tags, name="ollama_tags")
    app.router.add_post("/api/show", ollama.show, name="ollama_show")
    app.router.add_get("/api/version", ollama.version, name="ollama_version")
    app.router.add_get("/api/ps", ollama.ps, name="ollama_ps")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_post("/v1/train", train.train, name="train")
    app.router.add_post("/v1/train/cancel", train.cancel, name="cancel")
    app.router.add_get("/v1/events", events, name="events")

    async def lifecycle(app: web.Application):
        hub = EventHub(asyncio.get_running_loop(), max_clients=max_event_clients)
        app[HUB] = hub
        app[LIMITS] = Limits(max_pending_completions)
        unsubscribe = workspace.subscribe(lambda event: hub.on_event(event.to_json()))
        yield
        unsubscribe()

    async def wake_listeners(app: web.Application) -> None:
        app[HUB].close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(wake_listeners)
    return app


@dataclass
class HttpServer:
    """A running server: where it listens, its token, and how to stop it."""

    runner: web.AppRunner
    policy: AccessPolicy
    token_path: Path

    @property
    def port(self) -> int:
        return self.policy.port

    @property
    def url(self) -> str:
        host = self.policy.bind_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard link for the user (printed at start, opened by the editor): it carries the token."""
        return f"{self.url}/?token={self.policy.token}"

    async def close(self) -> None:
        """Stop serving (the token file stays: it is the workspace's stable key)."""
        await self.runner.cleanup()


async def serve_http(workspace: Any, host: str = "127.0.0.1", port: int = 0, *,
                     allow_remote: bool = False, api_key: str | None = None,
                     limits: ConnectionLimits | None = None) -> HttpServer:
    """Serve `workspace` over HTTP inside the running event loop; port 0 picks a free one.

    The token is `api_key`, else $CLLM_API_KEY, else the workspace's token file, created once (0600) and
    reused (http_security.stable_token). A non-loopback `host` is refused unless `allow_remote` is set (then a
    warning is logged). Connections are bounded by `limits` (server/http/limits.py; nginx-like defaults). Call
    `await server.close()` to stop.
    """
    if not is_loopback_host(host):
        if not allow_remote:
            raise ValueError(f"refusing to listen on non-loopback address {host!r}: pass --allow-remote to expose "
                             "the model server to other machines")
        log.warning("listening on %s: the model server is reachable from other machines (token still required)",
                    host)
    token_path = Path(workspace.token_path)
    token = stable_token(token_path, api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None)
    policy = AccessPolicy(bind_host=host, port=port, token=token, allowed_roots=(Path(workspace.root),))
    limits = limits or ConnectionLimits()
    app = create_app(workspace, policy)
    # handler_cancellation: a handler whose client hangs up is cancelled at once (aiohttp's default lets it run
    # on), so an event listener frees its slot and a dropped completion stops its work (server/worker.py)
    runner = web.AppRunner(app, access_log_class=PathOnlyAccessLogger, shutdown_timeout=2.0,
                           keepalive_timeout=limits.keepalive_timeout, handler_cancellation=True)
    gate = ConnectionGate(limits)
    gate.install(app)
    await runner.setup()
    rate_limit_logs()
    try:
        await GatedSite(runner, gate, host, port).start()
        policy.port = runner.addresses[0][1]
    except OSError:  # the port is taken: stop serving before reporting it
        await runner.cleanup()
        raise
    return HttpServer(runner, policy, token_path)


def run_server(workspace: Any, host: str, port: int, *, allow_remote: bool = False,
               api_key: str | None = None) -> None:
    """`cllm serve`: serve until SIGINT/SIGTERM, printing the address and the dashboard link (with the token
    only when stdout is a terminal: the token must not end up in log files)."""

    async def main() -> None:
        server = await serve_http(workspace, host, port, allow_remote=allow_remote, api_key=api_key)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"cllm: serving {workspace.root} at {server.url}/v1 (token in {server.token_path})", flush=True)
        if sys.stdout.isatty():
            print(f"cllm: dashboard {server.dashboard_url}", flush=True)
        else:  # stdout may be a log file: keep the token out of it
            print(f"cllm: dashboard {server.url}/?token=<the content of {server.token_path}>", flush=True)
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())
