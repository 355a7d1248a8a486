"""Running a checked completion request on the workspace's worker thread, for the OpenAI routes (openai.py) and
the llama.cpp ones (llama.py) alike: the request both fill in, the cursor taken from another model's FIM markers,
and the bound on completions running or waiting at once (more get 429)."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..worker import HTTP
from .api import LIMITS, NO_MODEL, WORKSPACE, error
from .fim import split_fim_prompt


@dataclass
class CompletionRequest:
    """A checked /v1/completions request."""

    prompts: list[str]
    suffix: str
    path: str | None
    stream: bool
    include_usage: bool
    options: dict[str, Any]


@dataclass
class Limits:
    """Completion concurrency: at most `max_pending` requests running or waiting for the workspace's worker."""

    max_pending: int
    pending: int = 0


def cllm_fields(completion: Any) -> dict[str, Any]:
    """The two fields of cllm's own in every API's answer (docs/protocol.md), which other clients ignore: `source`,
    where the text was copied from ("path:line" or None), and the completer's `confidence` (None without one)."""
    if completion is None:
        return {"source": None, "confidence": None}
    return {"source": completion.source, "confidence": completion.confidence}


def with_cursor_from_fim_markers(req: CompletionRequest) -> CompletionRequest:
    """`req` with a prompt written in another model's FIM template (server/http/fim.py) split into the text before
    the cursor and the `suffix`; 400 when the request also gives a `suffix`."""
    cursors = [split_fim_prompt(prompt) for prompt in req.prompts]
    if not any(cursors):
        return req
    if req.suffix or len(req.prompts) > 1:
        raise error(400, "a prompt with FIM markers carries its own suffix: send one prompt and no suffix field")
    return dataclasses.replace(req, prompts=[cursors[0].before], suffix=cursors[0].after)


def _complete_one(workspace: Any, prompt: str, req: CompletionRequest, cancel: threading.Event,
                  on_text: Callable[[str], None] | None) -> tuple[Any, int]:
    """(Completion or None, prompt tokens): runs on the workspace's worker thread, tokenizing there too."""
    completion = workspace.complete(prompt, req.suffix, path=req.path, cancel=cancel, on_text=on_text,
                                    **req.options)
    return completion, (completion.prompt_tokens if completion is not None else 0)


async def run_completions(request: web.Request, req: CompletionRequest,
                          on_text: Callable[[int, str], None] | None = None) -> list[tuple[Any, int]]:
    """Complete every prompt on the workspace's worker: [(Completion, prompt_tokens)]; 429/503 as needed.
    `on_text(prompt index, piece)` streams the text as it is generated (on the worker thread).
    A request whose client goes away stops its running completion (the awaiting task is cancelled)."""
    workspace = request.app[WORKSPACE]
    limits: Limits = request.app[LIMITS]
    if not workspace.has_model:
        raise error(503, NO_MODEL)
    if limits.pending >= limits.max_pending:
        raise error(429, f"too many concurrent completions (at most {limits.max_pending}); retry shortly")
    limits.pending += 1
    try:
        results = []
        for index, prompt in enumerate(req.prompts):
            pieces = None if on_text is None else functools.partial(on_text, index)
            job = workspace.worker.submit(
                lambda cancel, prompt=prompt, pieces=pieces: _complete_one(workspace, prompt, req, cancel, pieces),
                face=HTTP)
            try:
                outcome = await job
            except ValueError as exc:
                raise error(400, str(exc)) from None
            if outcome is None:  # the worker closed before reaching it
                raise error(503, "the workspace is closing")
            if outcome[0] is None:
                raise error(503, NO_MODEL)
            results.append(outcome)
        return results
    finally:
        limits.pending -= 1
