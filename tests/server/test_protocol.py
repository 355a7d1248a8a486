"""The stdio framing and protocol layer (server/protocol.py): FrameParser cases, then a property test that
drives the real server's protocol through FrameReader with random frames, each followed by a valid request.

The property test runs CLLM_FUZZ_EXAMPLES examples (200 by default)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygls.io_ import StdoutWriter, run_async

from cllm.server.lsp import CllmServer, build_server
from cllm.server.protocol import MAX_FRAME_BYTES, FrameParser, FrameReader, Skipped

EXAMPLES = int(os.environ.get("CLLM_FUZZ_EXAMPLES", "200"))
PROBE = {"jsonrpc": "2.0", "id": "probe", "method": "cllm/noSuchMethod", "params": {}}
REQUESTS = ["cllm/noSuchMethod", "textDocument/completion", "textDocument/inlineCompletion",
            "workspace/executeCommand", "shutdown"]
NOTIFICATIONS = ["$/cancelRequest", "textDocument/didOpen", "initialized", "cllm/noSuchNotification"]
_OUT_FRAME = re.compile(rb"Content-Length: (\d+)\r\n(?:[^\r\n]+\r\n)*\r\n")


def frame(body: bytes, header: bytes = b"Content-Length") -> bytes:
    return header + b": %d\r\n\r\n" % len(body) + body


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


# -- the parser alone ----------------------------------------------------------------------------------


def test_a_stream_cut_anywhere_gives_the_same_frames():
    body = encode(PROBE)
    stream = frame(body) + b"garbage\r\n" + frame(body, b"content-length")
    whole = FrameParser().feed(stream)
    for size in (1, 2, 7, 64):
        parser, pieces = FrameParser(), []
        for start in range(0, len(stream), size):
            pieces += parser.feed(stream[start: start + size])
        assert pieces == whole
    assert whole[0] == whole[2] == body and isinstance(whole[1], Skipped)


def test_an_oversized_body_is_skipped_without_being_held():
    parser = FrameParser(max_frame=1000)
    events = parser.feed(b"Content-Length: 5000\r\n\r\n")
    assert len(events) == 1 and "over the limit of 1000" in events[0].reason
    for _ in range(4):
        assert parser.feed(b"x" * 1000) == []
        assert len(parser._buffer) < 1000  # only the tail a header may start in is kept
    assert parser.feed(b"x" * 1000 + frame(b"{}")) == [b"{}"]
    assert MAX_FRAME_BYTES == 64 * 1024 * 1024


def test_a_body_longer_than_announced_is_recovered_when_the_next_header_follows():
    body = encode(PROBE)
    assert FrameParser().feed(b"Content-Length: %d\r\n\r\n" % (len(body) + 30) + body + frame(body)) == [body, body]


# -- the property: every case is answered or refused, and the next request is answered -----------------


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4),
                           max_leaves=12)
params = json_values | st.just({"command": "cllm.status"}) | st.just({"id": 1})


@st.composite
def cases(draw) -> tuple[bytes, int | None, bool]:
    """(bytes, the id a response must carry or None, whether an error with id null must come)."""
    kind = draw(st.sampled_from(["request", "notification", "bad_length", "no_length", "raw"]))
    method = draw(st.sampled_from(NOTIFICATIONS if kind == "notification" else REQUESTS))
    msg_id = draw(st.integers(0, 10**6))
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": draw(params)}
    header = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-length"]))
    if kind == "request":
        return frame(encode(message), header), msg_id, False
    if kind == "notification":
        del message["id"]
        return frame(encode(message), header), None, False
    body = encode(message)
    if kind == "bad_length":
        length = draw(st.sampled_from([b"%d" % (len(body) + draw(st.integers(-len(body) + 1, 200).filter(bool))),
                                       b"99999999999999", b"-3", b"twelve", b"", b"0x10"]))
        return header + b": " + length + b"\r\n\r\n" + body, None, True
    if kind == "no_length":
        return b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body, None, True
    return draw(st.binary(min_size=1, max_size=2000)), None, True


def responses(out: bytes) -> list[dict[str, Any]]:
    messages, position = [], 0
    while (match := _OUT_FRAME.match(out, position)) is not None:
        end = match.end() + int(match.group(1))
        messages.append(json.loads(out[match.end(): end]))
        position = end
    assert position == len(out), "the server wrote something that is not a frame"
    return messages


async def drive(data: bytes, server: CllmServer | None = None) -> list[dict[str, Any]]:
    """Run a server's protocol (a fresh one's by default) over `data` (as serve_stdio does), until the probe is
    answered."""
    server = server or build_server()
    out = io.BytesIO()
    server.protocol.set_writer(StdoutWriter(out))
    reader = FrameReader(io.BytesIO(data), server.protocol.report_skipped)
    await run_async(threading.Event(), reader, server.protocol, error_handler=server.report_server_error)
    for _ in range(200):
        if any(m.get("id") == "probe" for m in responses(out.getvalue())):
            break
        await asyncio.sleep(0.01)
    server.shutdown()
    return responses(out.getvalue())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_every_frame_is_answered_or_refused_and_the_next_request_is_answered(case):
    data, answer_id, refused = case
    messages = asyncio.run(drive(data + frame(encode(PROBE))))
    assert all(m.get("jsonrpc") == "2.0" and ("result" in m) != ("error" in m) for m in messages)
    probe = [m for m in messages if m.get("id") == "probe"]
    assert len(probe) == 1 and probe[0]["error"]["code"] in (-32601, -32600)  # -32600 after a shutdown
    others = [m for m in messages if m.get("id") != "probe"]
    if answer_id is not None:
        assert any(m.get("id") == answer_id for m in others)
    if refused:
        assert others, "a malformed frame was neither answered nor refused"


# -- what the protocol keeps ---------------------------------------------------------------------------


def test_no_handler_future_is_kept_after_documents_are_opened_typed_and_closed():
    """pygls filed the future of every notification (didOpen, didChange, didClose) for good: a typing user left
    3,000 a minute behind. Handled messages leave nothing pending."""
    messages = [{"id": 0, "method": "initialize", "params": {"capabilities": {}}},
                {"method": "initialized", "params": {}}]
    uris = [f"file:///nowhere/doc{n}.c" for n in range(20)]
    for uri in uris:
        messages.append({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "c", "version": 1, "text": "int main(void) {\n"}}})
        for version in range(2, 12):
            messages.append({"method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": {"start": {"line": 1, "character": version - 2},
                                              "end": {"line": 1, "character": version - 2}}, "text": "x"}]}})
        if uri != uris[-1]:
            messages.append({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
    data = b"".join(frame(encode({"jsonrpc": "2.0", **m})) for m in messages) + frame(encode(PROBE))
    server = build_server()
    asyncio.run(drive(data, server))
    assert list(server.workspace.text_documents) == [uris[-1]], "all handled: the last document alone is open"
    assert server.workspace.text_documents[uris[-1]].source == "int main(void) {\n" + "x" * 10
    assert server.protocol._request_futures == {}
