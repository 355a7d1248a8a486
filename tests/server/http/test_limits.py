"""Connection limits of a live model server: a cap with a clear refusal, header, body and keep-alive
timeouts, and rate-limited log lines. Limits are lowered so that no test depends on the machine's own."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import pytest

from cllm.server.http.app import serve_http
from cllm.server.http.limits import ConnectionLimits, RepeatFilter
from cllm.server.workspace import Workspace

PATIENCE = 60  # seconds to wait for an event that should come far sooner; never a timing assertion


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.c").write_text("int a;\n")
    ws = Workspace(root, model_dir=tmp_path / "model")
    yield ws
    ws.close()


async def serve(workspace: Workspace, **limits):
    return await serve_http(workspace, "127.0.0.1", 0, limits=ConnectionLimits(**limits))


async def status_answers(server) -> bool:
    """True once GET /v1/status answers 200 (retrying while refused or reset)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(PATIENCE * 10):
            try:
                async with session.get(f"{server.url}/v1/status") as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return False


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), PATIENCE)


def request_head(server, method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_connections_past_the_cap_are_refused_clearly(workspace):
    server = await serve(workspace, max_connections=8)
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(8)]
    try:
        for _ in range(PATIENCE * 10):  # until the server has taken all eight in
            if len(server.runner.server.connections) == 8:
                break
            await asyncio.sleep(0.1)
        extra = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
        for reader, writer in extra:
            writer.write(request_head(server, "GET", "/v1/status"))
        for reader, writer in extra:
            answer = await until_closed(reader)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
            assert b"Connection: close" in answer and b"too many connections (at most 8)" in answer
            writer.close()
    finally:
        for _, writer in idle:
            writer.close()
    assert await status_answers(server), "once the idle clients leave, the server answers again"
    await server.close()


async def test_the_cap_holds_when_a_burst_arrives_at_once(workspace):
    """Three times the cap connect before the server runs at all: the event loop then accepts the whole burst
    before any handler starts, and exactly the cap's worth are served, the rest refused with 503."""
    cap, burst = 8, 24
    server = await serve(workspace, max_connections=cap)
    gate = next(iter(server.runner.sites)).gate
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(burst)]  # loop not running
    streams = [await asyncio.open_connection(sock=sock) for sock in sockets]
    for _, writer in streams:
        writer.write(request_head(server, "GET", "/v1/status", "Connection: close"))
    answers = [await until_closed(reader) for reader, _ in streams]
    statuses = sorted(answer.split(b" ", 2)[1].decode() for answer in answers)
    assert statuses == ["200"] * cap + ["503"] * (burst - cap)
    for _, writer in streams:
        writer.close()
    for _ in range(PATIENCE * 10):  # every connection lost gives its place back
        if gate.open == 0:
            break
        await asyncio.sleep(0.1)
    assert gate.open == 0
    assert await status_answers(server)
    await server.close()


async def test_a_connection_without_a_request_is_closed(workspace):
    server = await serve(workspace, header_timeout=0.2)
    silent = await asyncio.open_connection("127.0.0.1", server.port)
    slow = await asyncio.open_connection("127.0.0.1", server.port)
    slow[1].write(b"GET /v1/status HTTP/1.1\r\nHo")  # a head that never ends
    assert await until_closed(silent[0]) == b""
    assert await until_closed(slow[0]) == b""
    assert await status_answers(server)
    await server.close()


async def test_an_idle_keep_alive_connection_is_closed(workspace):
    server = await serve(workspace, keepalive_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_head(server, "GET", "/v1/status"))
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"workspace"' in answer
    writer.close()
    await server.close()


async def test_a_never_ending_chunked_body_is_dropped(workspace):
    server = await serve(workspace, body_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_head(server, "POST", "/v1/completions", f"Authorization: Bearer {server.policy.token}",
                              "Content-Type: application/json", "Transfer-Encoding: chunked")
                 + b"5\r\n{\"pro\r\n")
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request body not received" in answer
    writer.close()
    assert await status_answers(server)
    await server.close()


def test_repeated_log_lines_are_rate_limited():
    now = [0.0]
    repeats = RepeatFilter(window=10.0, burst=3, clock=lambda: now[0])
    logger = logging.getLogger("test_http_limits.flood")
    lines = []

    def emit(message: str) -> None:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, (), None)
        if repeats.filter(record):
            lines.append(record.getMessage())

    for _ in range(1000):
        emit("socket.accept() out of system resource")
    emit("another line")
    assert lines == ["socket.accept() out of system resource"] * 3 + ["another line"]
    now[0] = 11.0
    emit("socket.accept() out of system resource")
    assert lines[-1] == "socket.accept() out of system resource (997 more like this were dropped)"


async def test_connections_that_end_leave_no_timer_behind(workspace):
    server = await serve(workspace)
    manager = server.runner.server  # aiohttp's list of open connections
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        await writer.wait_closed()
    for _ in range(PATIENCE * 10):
        if not manager.connections:
            break
        await asyncio.sleep(0.1)
    site = next(iter(server.runner.sites))
    assert not manager.connections and site.gate.waiting == 0
    await server.close()
