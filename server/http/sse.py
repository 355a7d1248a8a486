"""Server-sent events, the one way every streaming route writes: the OpenAI and llama.cpp completions as the text
is generated, and the training events of /v1/events.

The completer calls its `on_text` callback on the workspace's worker thread (engine/complete/generate.py: each piece is
final once sent). `stream_completions` hands every piece to the event loop through a thread-safe queue and gives
them to `send` as they come, while the completions run. When `send` fails (the client went away, e.g. Continue
ending a stream it no longer needs) the run is cancelled, which stops the running completion between tokens.
`EventStream` is the response those pieces (or events) are written to as `data:` lines, and `stream_response` is
the whole streamed answer of a completion route.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

log = logging.getLogger("cllm.http")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
NDJSON_HEADERS = {**SSE_HEADERS, "Content-Type": "application/x-ndjson"}

Send = Callable[[int, str], Awaitable[None]]
Run = Callable[[Callable[[int, str], None]], Awaitable[Any]]


class EventStream:
    """A text/event-stream response to `request`, sent (with its headers) at its first write, so that an error
    before any event can still be answered as plain JSON. With `ndjson`, Ollama's framing instead: one JSON
    object a line (application/x-ndjson)."""

    def __init__(self, request: web.Request, *, ndjson: bool = False) -> None:
        self.request = request
        self.ndjson = ndjson
        self.response = web.StreamResponse(headers=NDJSON_HEADERS if ndjson else SSE_HEADERS)

    async def send(self, data: dict) -> None:
        """One `data:` event (or NDJSON line) holding `data` as compact JSON."""
        line = json.dumps(data, separators=(',', ':'))
        await self.write(f"{line}\n".encode() if self.ndjson else f"data: {line}\n\n".encode())

    async def write(self, raw: bytes) -> None:
        """Raw event-stream bytes: `data: [DONE]`, or a `: ping` comment."""
        if not self.response.prepared:
            await self.response.prepare(self.request)
        await self.response.write(raw)


async def stream_response(request: web.Request, run: Run, piece: Callable[[int, str], dict],
                          ending: Callable[[Any], Iterable[dict]], *, done: bool, client: str,
                          ndjson: bool = False) -> web.StreamResponse:
    """A completion streamed as it is generated: `piece(prompt index, text)` for each piece, then the events
    `ending(run's result)` and, with `done`, `data: [DONE]` (`ndjson`: as NDJSON lines, no end marker). A client
    that goes away cancels the completion (said in the debug log as a `client` client); an error before the
    first piece propagates, answered as JSON."""
    stream = EventStream(request, ndjson=ndjson)
    try:
        result = await stream_completions(run, lambda index, text: stream.send(piece(index, text)))
        for data in ending(result):
            await stream.send(data)
        if done:
            await stream.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        log.debug("a streaming %s client went away: its completion is cancelled", client)
    return stream.response


async def stream_completions(run: Run, send: Send) -> Any:
    """Start `run(on_text)` (it calls on_text(prompt_index, piece) from any thread), await `send(index, piece)`
    for each piece in order, and return run's result once every piece is sent. An exception from `send`
    cancels the run and propagates; one from the run propagates after the pieces sent before it."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    def on_text(index: int, piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, (index, piece))

    task = asyncio.ensure_future(run(on_text))
    try:
        while not task.done():
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await send(*getter.result())
            else:
                getter.cancel()
        while not pieces.empty():  # pieces queued before the run's result reached the loop
            await send(*pieces.get_nowait())
        return task.result()
    finally:
        if not task.done():
            task.cancel()
