"""The workspace's state for the dashboard and tools: GET /v1/status (the Workspace status, the same object as the
LSP `cllm.status`) and GET /v1/events (server-sent events: the current state first, then training progress).

Workspace events reach clients through per-client bounded queues that drop the oldest event when full (EventHub):
a slow client loses detail, never slows training or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

from cllm.engine.events import to_wire

from .api import HUB, WORKSPACE, error
from .sse import EventStream

log = logging.getLogger("cllm.http")

SSE_PING_SECONDS = 15.0


class EventHub:
    """Fans Workspace events out to SSE clients and remembers the current run for clients that join late.

    Workspace callbacks may come from any thread: they only schedule `_publish` on the loop, which never
    blocks. Each client has a bounded queue; when it is full the oldest event is dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_clients: int = 16, queue_size: int = 256) -> None:
        self.loop = loop
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.clients: set[asyncio.Queue] = set()
        self.steps: deque[dict] = deque(maxlen=4000)
        self.epochs: list[dict] = []
        self.last_step: dict | None = None
        self.dropped = 0

    def on_event(self, event: dict) -> None:
        """Workspace subscriber: hand the event to the loop (thread-safe, non-blocking)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: dict | None) -> None:
        if event is not None:
            self._remember(event)
        for queue in self.clients:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    def _remember(self, event: dict) -> None:
        kind = event.get("event")
        if kind in ("training_started", "start"):
            self.steps.clear()
            self.epochs.clear()
            self.last_step = None
        elif kind == "step":
            self.last_step = event
            self.steps.append({k: v for k, v in event.items() if k != "spheres"})
        elif kind == "epoch":
            self.epochs.append(event)

    def replay(self) -> list[dict]:
        """What a client that connects now needs to draw the current run: history, then the last step."""
        events = [{"event": "history", "steps": list(self.steps), "epochs": list(self.epochs)}]
        if self.last_step is not None:
            events.append(self.last_step)
        return events

    def connect(self) -> asyncio.Queue:
        if len(self.clients) >= self.max_clients:
            raise error(429, f"too many event listeners (at most {self.max_clients})")
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.clients.add(queue)
        return queue

    def disconnect(self, queue: asyncio.Queue) -> None:
        self.clients.discard(queue)

    def close(self) -> None:
        """Wake every client with the end-of-stream marker (None)."""
        self._publish(None)


async def status(request: web.Request) -> web.Response:
    """GET /v1/status: the Workspace status object."""
    return web.json_response(request.app[WORKSPACE].status())


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: SSE; the current status and run history first, then live events, pings while idle.

    Events keep snake_case keys inside the server; here, at the wire, they get camelCase ones (to_wire)."""
    hub: EventHub = request.app[HUB]
    queue = hub.connect()
    stream = EventStream(request)
    try:
        await stream.response.prepare(request)
        await stream.send({"event": "status", "status": request.app[WORKSPACE].status()})
        for event in hub.replay():
            await stream.send(to_wire(event))
        while (event := await _next_event(queue, stream)) is not None:
            await stream.send(to_wire(event))
    except ConnectionResetError:
        log.debug("an event listener went away")
    finally:
        hub.disconnect(queue)
    return stream.response


async def _next_event(queue: asyncio.Queue, stream: EventStream) -> dict | None:
    """The next hub event, writing a comment line every SSE_PING_SECONDS meanwhile (finds dead listeners)."""
    while True:
        try:
            return await asyncio.wait_for(queue.get(), SSE_PING_SECONDS)
        except asyncio.TimeoutError:
            await stream.write(b": ping\n\n")
