"""Connection limits of the model server, after nginx's: no client holds a connection, a file descriptor or a
handler forever, and a flood of them leaves the server able to answer.

- header_timeout: a connection that has not sent a whole request head this long after it opened is closed
  (nginx's client_header_timeout, 60 s);
- body_timeout: a request body not received in full this long after its head (say a chunked body that never
  ends) is answered 408 and its connection closed (client_body_timeout, 60 s);
- keepalive_timeout: an idle keep-alive connection is closed after this long (keepalive_timeout, 75 s; aiohttp's
  own knob, which it arms after each response);
- max_connections: past this many open connections a new one is answered at once with 503, `Connection: close`
  and closed, instead of being held until the process runs out of file descriptors (by default half the
  process's open-file limit, at most 512). Connections are counted when accepted, not when aiohttp's handler
  sees them: the event loop accepts a whole burst before any handler starts, so a count taken from the
  handlers let bursts past the cap;
- repeated log lines (an accept error, a refusal) are let through a few times per window, then counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

log = logging.getLogger("cllm.http")

MAX_CONNECTIONS = 512
REFUSAL_LINGER_SECONDS = 2.0  # how long a refused connection may still send before it is closed
MAX_LINGERING_REFUSALS = 32  # past this many, refusals close at once: a flood must not hold descriptors
RATE_LIMITED_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "cllm.http")


def default_max_connections() -> int:
    """Half the process's open-file limit (the other half is for model files, the trainer's pipes, the language
    server), at most MAX_CONNECTIONS."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no such limit on this platform
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // 2))


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many may be connected (see the module docstring)."""

    max_connections: int = field(default_factory=default_max_connections)
    header_timeout: float = 60.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0


class ConnectionGate:
    """The protocol factory in front of aiohttp's server: refuses connections past the cap, closes those that
    send no request head in time, and (as middlewares) marks requests as started and reads bodies in time."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0  # connections accepted and not yet lost: what the cap bounds
        self.refused = 0
        self.lingering: set[asyncio.BaseProtocol] = set()
        self._awaiting: dict[asyncio.BaseProtocol, asyncio.TimerHandle] = {}

    @property
    def waiting(self) -> int:
        """How many open connections have not delivered a request head yet."""
        return len(self._awaiting)

    def accept(self, server: web.Server) -> asyncio.BaseProtocol:
        """The protocol for a connection just accepted by `server`: its request handler, or a refusal past
        the cap."""
        loop = asyncio.get_running_loop()
        if self.open >= self.limits.max_connections:
            self.refused += 1
            log.warning("refusing connections: %d open, at most %d", self.open, self.limits.max_connections)
            return _Refusal(self.limits.max_connections, loop, self.lingering)
        self.open += 1
        handler = server()
        self._awaiting[handler] = loop.call_later(self.limits.header_timeout, self._expire, handler)
        return _Watched(handler, self._ended)

    def _ended(self, handler: asyncio.BaseProtocol) -> None:
        """An accepted connection was lost: it no longer counts against the cap."""
        self.open -= 1
        self._forget(handler)

    def _forget(self, handler: asyncio.BaseProtocol) -> None:
        """The connection sent a request head or ended: drop its header timer (a flood of short connections
        leaves nothing behind)."""
        timer = self._awaiting.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, handler: asyncio.BaseProtocol) -> None:
        """Close a connection that has not started a request within header_timeout."""
        if self._awaiting.pop(handler, None) is not None and handler.transport is not None:
            handler.transport.close()

    @web.middleware
    async def request_started(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Outermost middleware: the connection delivered a request head in time."""
        self._forget(request.protocol)
        return await handler(request)

    @web.middleware
    async def read_body(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Innermost middleware (after the Host, Origin and token checks): the whole body within body_timeout,
        else 408 and the connection is closed; handlers then read it from memory."""
        if request.body_exists:
            try:
                async with asyncio.timeout(self.limits.body_timeout):
                    await request.read()
            except TimeoutError:
                body = {"error": {"message": f"request body not received within {self.limits.body_timeout:g} s",
                                  "type": "timeout_error", "code": 408}}
                response = web.json_response(body, status=408)
                response.force_close()
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()  # sent: close now, no lingering over a body that may never end
                return response
        return await handler(request)

    def install(self, app: web.Application) -> None:
        """Add the two middlewares to `app` (before its runner is set up, which freezes it)."""
        app.middlewares.insert(0, self.request_started)
        app.middlewares.append(self.read_body)


class _Watched(asyncio.Protocol):
    """aiohttp's request handler for one connection, passing every transport event on to it and telling the
    gate when the connection ends."""

    def __init__(self, handler: asyncio.Protocol, ended: Callable[[asyncio.BaseProtocol], None]) -> None:
        self.handler = handler
        self.ended = ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended(self.handler)
        self.handler.connection_lost(exc)


class _Refusal(asyncio.Protocol):
    """Answers a connection past the cap with 503 at once, then closes it: after the client's end or
    REFUSAL_LINGER_SECONDS, so that the answer is not lost to a reset, while fewer than MAX_LINGERING_REFUSALS
    linger (the set `lingering`), else at once."""

    def __init__(self, cap: int, loop: asyncio.AbstractEventLoop, lingering: set[asyncio.BaseProtocol]) -> None:
        self.cap = cap
        self.loop = loop
        self.lingering = lingering
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        message = f"too many connections (at most {self.cap}); retry shortly"
        body = json.dumps({"error": {"message": message, "type": "service_unavailable", "code": 503}}).encode()
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        if len(self.lingering) >= MAX_LINGERING_REFUSALS or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.lingering.add(self)
        self.timer = self.loop.call_later(REFUSAL_LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        """The refused request is discarded unread."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.lingering.discard(self)
        if self.timer is not None:
            self.timer.cancel()


class RepeatFilter(logging.Filter):
    """Lets each kind of log line (logger, level, message template) through at most `burst` times per `window`
    seconds; the first one let through after some were dropped says how many."""

    MAX_KINDS = 1000

    def __init__(self, window: float = 10.0, burst: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.burst = burst
        self.clock = clock
        self._kinds: dict[tuple, tuple[float, int, int]] = {}  # kind -> (window start, lines let through, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        start, count, dropped = self._kinds.get(kind, (now, 0, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.burst:
            self._kinds[kind] = (start, count, dropped + 1)
            return False
        if len(self._kinds) >= self.MAX_KINDS and kind not in self._kinds:
            self._kinds.clear()
        if dropped:
            record.msg = f"{record.msg} ({dropped} more like this were dropped)"
        self._kinds[kind] = (start, count + 1, 0)
        return True


def rate_limit_logs(names: tuple[str, ...] = RATE_LIMITED_LOGGERS) -> None:
    """Put one RepeatFilter on each of the loggers `names` (once per process)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


class GatedSite(web.BaseSite):
    """aiohttp's TCP site, with every accepted connection going through `gate`."""

    def __init__(self, runner: web.BaseRunner, gate: ConnectionGate, host: str, port: int) -> None:
        super().__init__(runner)
        self.gate = gate
        self.host = host
        self.port = port

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        self._server = await asyncio.get_running_loop().create_server(lambda: self.gate.accept(server), self.host,
                                                                      self.port, backlog=self._backlog)
