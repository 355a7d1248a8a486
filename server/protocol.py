"""The JSON-RPC layer under the language server: stdin framing and pygls' protocol, made to answer or skip
what pygls alone would choke on.

Framing. pygls reads `Content-Length: N` headers with an exact, case-sensitive pattern and trusts N: a frame
with a wrong or missing length left it deaf (the leftover bytes glued onto the next header line) and a huge N
made it allocate N bytes. `FrameParser` reads the byte stream itself and hands pygls only well-formed frames
(through `FrameReader`, an implementation of the reader interface that pygls.io_.run_async takes):
- headers are matched case-insensitively, other header fields (Content-Type) are ignored;
- bytes that are not a header block are skipped until the next line ending in a `Content-Length:` header
  (also when glued after leftover bytes), and reported once as a parse error;
- a body that runs into a `Content-Length: N` line (among the bytes already read) is cut there: JSON cannot
  contain such a line (a raw line break is not allowed inside a JSON string), so the length was too large
  and the next frame starts there;
- a frame over MAX_FRAME_BYTES is answered with an InvalidRequest error and its body skipped chunk by chunk,
  never held in memory.

Handler futures. pygls 2.1 files the future of every notification handler, and of every step of its generator
handlers (didOpen, didChange, didClose, ...), under a fresh id among its pending requests and never takes it out;
`CllmProtocol` takes each out once it is done (a user typing at 50 keystrokes a second left 3,000 finished futures
a minute behind: the soak's language server grew by 130 MB in ten minutes).

Lifecycle. After `shutdown`, requests are answered with InvalidRequest (pygls drops them); `exit` ends the
process with 0 after a shutdown and 1 without (pygls raises SystemExit so, and `serve_stdio` passes it on).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.io_ import StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024 * 1024  # a larger frame is refused and its body skipped
MAX_HEADER_LINE = 64 * 1024  # a longer "line" without a line break is garbage
CHUNK_BYTES = 64 * 1024  # stdin is read this much at a time
_OVERLAP = 128  # longer than any Content-Length line _HEADER_IN_BODY matches: rescanned when more bytes come
_LENGTH_LINE = re.compile(rb"(.*)content-length[ \t]*:(.*)", re.IGNORECASE | re.DOTALL)  # the last one in a line
_HEADER_FIELD = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+:")  # a field name (RFC 9110 token), then a colon
_HEADER_IN_BODY = re.compile(rb"content-length[ \t]{0,16}:[ \t]{0,16}\d{1,20}[ \t]{0,16}\r?\n", re.IGNORECASE)


# -- framing -------------------------------------------------------------------------------------------


@dataclass
class Skipped:
    """Bytes the parser dropped, and the error that tells the client (a response with id null)."""

    reason: str
    error: type[JsonRpcException]


class FrameParser:
    """Byte stream in (`feed`), frame bodies and `Skipped` reports out, in stream order. No I/O."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._length: int | None = None  # Content-Length of the header block being read
        self._block = 0  # bytes of that header block so far
        self._garbage = 0  # bytes dropped since the last frame, not yet reported
        self._remaining: int | None = None  # body bytes still to come; None while reading headers
        self._keep = True  # False while skipping an oversized body
        self._scanned = 0  # body bytes already searched for a Content-Length line

    def feed(self, data: bytes) -> list[bytes | Skipped]:
        """Take more bytes; return the frames and reports they complete."""
        self._buffer += data
        events: list[bytes | Skipped] = []
        while self._step(events) if self._remaining is None else self._body_step(events):
            pass
        return events

    def _drop(self, count: int) -> None:
        """Count bytes of the current header block and `count` more as garbage; the block starts over."""
        self._garbage += self._block + count
        self._block, self._length = 0, None

    def _step(self, events: list[bytes | Skipped]) -> bool:
        """Read one header line; False when a whole line has not arrived yet."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_LINE:
                drop = len(self._buffer) - _OVERLAP
                del self._buffer[:drop]
                self._drop(drop)
            return False
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        if not text:
            if self._length is None:
                self._drop(len(line))
            else:
                self._start_body(events)
            return True
        match = _LENGTH_LINE.fullmatch(text)
        if match is not None:
            self._drop(len(match.group(1)))
            value = match.group(2).strip(b" \t")
            if value.isdigit() and len(value) <= 20 and int(value) > 0:
                self._block, self._length = len(line) - len(match.group(1)), int(value)
            else:
                self._drop(len(line) - len(match.group(1)))
        elif _HEADER_FIELD.match(text):
            self._block += len(line)
        else:
            self._drop(len(line))
        return True

    def _start_body(self, events: list[bytes | Skipped]) -> None:
        length = self._length
        assert length is not None
        if self._garbage:
            events.append(Skipped(f"skipped {self._garbage} bytes that were not a message frame", JsonRpcParseError))
        self._garbage, self._block, self._length = 0, 0, None
        self._remaining, self._scanned, self._keep = length, 0, length <= self.max_frame
        if not self._keep:
            events.append(Skipped(f"a message of {length} bytes is over the limit of {self.max_frame} bytes: skipped",
                                  JsonRpcInvalidRequest))

    def _body_step(self, events: list[bytes | Skipped]) -> bool:
        """Take the body (or skip it); False when more bytes are needed."""
        remaining = self._remaining
        assert remaining is not None
        limit = min(len(self._buffer), remaining)
        # a Content-Length line may start in the body and end after it: look a little past the end too
        cut = _HEADER_IN_BODY.search(self._buffer, max(0, self._scanned - _OVERLAP), min(len(self._buffer),
                                                                                          remaining + _OVERLAP))
        if cut is not None and cut.start() >= remaining:
            cut = None
        if cut is not None or limit == remaining:
            size = cut.start() if cut is not None else remaining
            body = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._remaining = None
            if self._keep and body.strip():
                events.append(body)
            elif self._keep:
                self._garbage += size
            return True
        if not self._keep:  # skipping: forget all but the tail a Content-Length line may start in
            drop = max(0, len(self._buffer) - _OVERLAP)
            del self._buffer[:drop]
            self._remaining = remaining - drop
        self._scanned = len(self._buffer)
        return False


class FrameReader:
    """The reader pygls.io_.run_async takes (readline, readexactly), over a binary stream: it presents each
    frame FrameParser accepts as `Content-Length: N`, a blank line and the body, and hands skip reports to
    `on_skipped`. Blocking reads run on `executor` (None: the loop's default)."""

    def __init__(self, stream: BinaryIO, on_skipped: Callable[[Skipped], None],
                 executor: Executor | None = None, parser: FrameParser | None = None) -> None:
        self._stream = stream
        self._on_skipped = on_skipped
        self._executor = executor
        self._parser = parser or FrameParser()
        self._events: deque[bytes | Skipped] = deque()
        self._body: bytes | None = None

    async def readline(self) -> bytes:
        if self._body is not None:
            return b"\r\n"
        body = await self._next_frame()
        if body is None:
            return b""
        self._body = body
        return b"Content-Length: %d\r\n" % len(body)

    async def readexactly(self, n: int) -> bytes:
        body, self._body = self._body or b"", None
        return body

    async def _next_frame(self) -> bytes | None:
        """The next frame's body; None at the end of the stream."""
        loop = asyncio.get_running_loop()
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, bytes):
                    return event
                self._on_skipped(event)
            chunk = await loop.run_in_executor(self._executor, self._stream.read1, CHUNK_BYTES)
            if not chunk:
                return None
            self._events.extend(self._parser.feed(chunk))


# -- the protocol --------------------------------------------------------------------------------------


class _Answered:
    """Stands in for a request already answered with an error: pygls drops messages whose jsonrpc is not 2.0."""

    jsonrpc = "answered"


class CllmProtocol(LanguageServerProtocol):
    """LanguageServerProtocol that answers requests whose parameters do not fit the method with an error
    (pygls alone would drop them and leave the client waiting), and requests after `shutdown` with
    InvalidRequest (pygls drops those too), and that keeps no finished handler's future."""

    shutdown_received = False

    def _execute_handler(self, msg_id: int | str, handler: Callable[..., Any],
                         callback: Callable[[Future[Any]], None], args: tuple[Any, ...] | None = None,
                         kwargs: dict[str, Any] | None = None) -> None:
        """pygls' handler execution, with the handler's future taken out of the pending requests once it is
        done (pygls leaves those of notifications there for good; a request's goes as before)."""
        def forget_then(future: Future[Any]) -> None:
            if self._request_futures.get(msg_id) is future:
                del self._request_futures[msg_id]
            callback(future)

        super()._execute_handler(msg_id, handler, forget_then, args, kwargs)

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "jsonrpc" not in data or "method" not in data or "id" not in data:
                raise
            msg_id = data["id"] if isinstance(data["id"], (int, str)) else None  # JSON-RPC: null when unusable
            self._send_response(msg_id, None, exc.to_response_error())
            log.warning("invalid parameters for %s: %s", data.get("method"), exc.__cause__ or exc)
            return _Answered()

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if self.shutdown_received and method != types.EXIT:
            msg_id = getattr(message, "id", None)
            if method is not None and msg_id is not None:
                error = JsonRpcInvalidRequest(f"the server is shut down: {method} refused, only exit is accepted")
                self._send_response(msg_id, None, error.to_response_error())
            return
        if method == types.SHUTDOWN:
            self.shutdown_received = True
        super().handle_message(message)

    def report_skipped(self, skipped: Skipped) -> None:
        """Tell the client about bytes the framing dropped: an error response with id null."""
        log.warning("protocol error: %s", skipped.reason)
        self._send_response(None, None, skipped.error(skipped.reason).to_response_error())


def serve_stdio(server: LanguageServer, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve `server` (its protocol a CllmProtocol) on a byte stream pair until `exit` or the end of stdin,
    as pygls' start_io does but reading through FrameReader. Returns the exit code: the one `exit` asked for
    (0 after shutdown, 1 without), 0 when stdin ends."""
    protocol = server.protocol
    assert isinstance(protocol, CllmProtocol)
    protocol.set_writer(StdoutWriter(stdout))
    reader = FrameReader(stdin, protocol.report_skipped, server.thread_pool)
    try:
        asyncio.run(run_async(stop_event=threading.Event(), reader=reader, protocol=protocol,
                              logger=logging.getLogger("pygls.io_"), error_handler=server.report_server_error))
    except BrokenPipeError:
        log.error("the client closed the connection: shutting down")
    except KeyboardInterrupt:
        log.info("interrupted: shutting down")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        server.shutdown()
    return 0
