"""`cllm lsp` under bad input and a typing storm: error responses or empty results, and it stays up."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest

from lsprotocol import types

from conftest import TINY_C_SOURCES
from lsp_helpers import RawServer, end_position, inline_params, lsp_session, model_folder, open_c, wait_until

STORM_SECONDS = 20
STORM_RATE = 50  # requests per second
BURST = 10  # keystrokes per burst; all but the last request of a burst are cancelled


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


async def test_malformed_messages_get_errors_and_the_server_stays_up(tmp_path: Path, tiny_model_path: Path):
    root = tmp_path / "ws"
    root.mkdir()
    server = await RawServer.start(tmp_path / "cache")
    try:
        server.send({"id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": root.as_uri(), "capabilities": {},
            "initializationOptions": {"modelDir": str(model_folder(tmp_path, tiny_model_path))}}})
        assert "result" in await server.response(1)
        server.send({"method": "initialized", "params": {}})
        server.send_bytes(b'{"jsonrpc": "2.0", "id": 2, "method": ')  # truncated JSON
        parse_error = await server.response(None)
        server.send({"id": 3, "method": "textDocument/inlineCompletion",
                     "params": {"textDocument": {"uri": 7}, "position": "here"}})
        wrong_types = await server.response(3)
        server.send({"id": 4, "method": "cllm/noSuchMethod", "params": {}})
        unknown = await server.response(4)
        server.send({"method": "cllm/noSuchNotification", "params": [1, 2]})
        server.send({"id": 5, "method": "workspace/executeCommand", "params": {"command": "cllm.nope"}})
        unknown_command = await server.response(5)
        server.send({"id": 6, "method": "workspace/executeCommand",
                     "params": {"command": "cllm.trainWorkspace", "arguments": [{"epochs": -3}]}})
        bad_options = await server.response(6)
        server.send({"id": 7, "method": "workspace/executeCommand", "params": {"command": "cllm.status"}})
        status = await server.response(7)
    finally:
        await server.close()
    assert parse_error["error"]["code"] == -32700
    assert wrong_types["error"]["code"] == -32602
    assert unknown["error"]["code"] == -32601
    assert "error" in unknown_command
    assert bad_options["result"]["started"] is False and "epochs" in bad_options["result"]["reason"]
    assert status["result"]["model"]["present"] is True
    assert server.process.returncode == 0


async def test_typing_storm_answers_the_last_request_of_each_burst_with_flat_memory(tmp_path: Path,
                                                                                    tiny_model_path: Path):
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    text = "".join(TINY_C_SOURCES.values()) * 4
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 16}
    async with lsp_session(root, options, tmp_path / "cache") as client:
        uri = open_c(client, root / "src/storm.c", "")
        typed, version, last_answers, rss = "", 1, [], []
        pid = client._server.pid
        bursts = STORM_SECONDS * STORM_RATE // BURST
        for burst in range(bursts):
            pending = []
            for _ in range(BURST):
                char = text[len(typed) % len(text)]
                here = end_position(typed)
                typed, version = typed + char, version + 1
                client.text_document_did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(start=here, end=here), text=char)]))
                for msg_id, older in pending:
                    if not older.done():
                        client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
                msg_id = f"storm-{version}"
                pending.append((msg_id, client.protocol.send_request(
                    "textDocument/inlineCompletion", inline_params(uri, end_position(typed)), msg_id=msg_id)))
                await asyncio.sleep(1 / STORM_RATE)
            last_answers.append(await asyncio.wait_for(asyncio.wrap_future(pending[-1][1]), 60))
            for _, older in pending[:-1]:  # every request is answered one way or another
                await asyncio.wait_for(asyncio.gather(asyncio.wrap_future(older), return_exceptions=True), 60)
            if burst in (bursts // 4, bursts - 1):
                rss.append(vm_rss_kb(pid))
    assert len(last_answers) == bursts
    assert all(isinstance(answer, types.InlineCompletionList) for answer in last_answers)
    assert sum(1 for answer in last_answers if answer.items) > bursts // 2
    growth_mb = (rss[-1] - rss[0]) / 1024
    assert growth_mb < 20, f"server memory grew by {growth_mb:.1f} MB during the storm"


async def test_http_port_serves_the_same_workspace(tmp_path: Path, tiny_model_path: Path):
    root = tmp_path / "ws"
    root.mkdir()
    folder = model_folder(tmp_path, tiny_model_path)
    server = await RawServer.start(tmp_path / "cache", "--http-port", "0")
    try:
        server.send({"id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": root.as_uri(), "capabilities": {},
            "initializationOptions": {"modelDir": str(folder)}}})
        await server.response(1)
        server.send({"method": "initialized", "params": {}})

        def serving() -> list[str]:
            return [m["params"]["message"] for m in server.messages
                    if m.get("method") == "window/logMessage" and "over HTTP at" in m["params"]["message"]]

        assert await wait_until(serving, 30), "no HTTP address logged"
        url = re.search(r"(http://\S+/v1)", serving()[0]).group(1)
        token = (folder / "token").read_text().strip()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/status", headers={"Authorization": f"Bearer {token}"}) as response:
                body = await response.json()
    finally:
        await server.close()
    assert response.status == 200
    assert body["workspace"] == str(root.resolve()) and body["model"]["present"] is True
    assert (folder / "token").read_text().strip() == token  # the stable key outlives the server


# -- framing and lifecycle on stdio (issue 14) ---------------------------------------------------------

PROBE = json.dumps({"jsonrpc": "2.0", "id": "probe", "method": "cllm/noSuchMethod", "params": {}}).encode()
BAD_FRAMES = {
    "too_small": b"Content-Length: %d\r\n\r\n" % (len(PROBE) - 9) + PROBE,
    "too_large": b"Content-Length: %d\r\n\r\n" % (len(PROBE) + 9) + PROBE,
    "absent": b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + PROBE,
    "non_numeric": b"Content-Length: twelve\r\n\r\n" + PROBE,
    "raw_garbage_1mb": bytes(range(256)) * 4096,
}


def frame(body: bytes, header: bytes = b"Content-Length") -> bytes:
    return header + b": %d\r\n\r\n" % len(body) + body


def request(msg_id: str, method: str = "cllm/noSuchMethod") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {}}).encode()


@pytest.mark.parametrize("bad", list(BAD_FRAMES))
async def test_a_wrong_or_missing_content_length_resynchronises_at_the_next_header(tmp_path: Path, bad: str):
    server = await RawServer.start(tmp_path / "cache")
    try:
        server.write(BAD_FRAMES[bad] + frame(request("next")))
        answer = await server.response("next")
    finally:
        await server.close()
    assert answer["error"]["code"] == -32601  # the method-not-found answer a well-formed request gets
    assert server.process.returncode == 0


async def test_a_lower_case_content_length_header_is_read(tmp_path: Path):
    server = await RawServer.start(tmp_path / "cache")
    try:
        server.write(frame(request("lower"), b"content-length") + frame(request("next")))
        lower, following = await server.response("lower"), await server.response("next")
    finally:
        await server.close()
    assert lower["error"]["code"] == following["error"]["code"] == -32601


async def test_a_frame_over_the_size_limit_is_refused_and_the_server_lives(tmp_path: Path):
    server = await RawServer.start(tmp_path / "cache")
    try:
        server.write(b"Content-Length: 99999999999999\r\n\r\n" + b"x" * 100_000 + frame(request("next")))
        refused = await server.response(None)
        answer = await server.response("next")
    finally:
        await server.close()
    assert refused["error"]["code"] == -32600 and "limit" in refused["error"]["message"]
    assert answer["error"]["code"] == -32601
    assert server.process.returncode == 0


async def test_requests_after_shutdown_are_invalid_and_exit_then_returns_0(tmp_path: Path):
    server = await RawServer.start(tmp_path / "cache")
    server.send({"id": "down", "method": "shutdown"})
    await server.response("down")
    server.send({"id": "late", "method": "workspace/executeCommand", "params": {"command": "cllm.status"}})
    late = await server.response("late")
    server.send({"method": "exit"})
    code = await asyncio.wait_for(server.process.wait(), 30)
    await server.close()
    assert late["error"]["code"] == -32600
    assert code == 0


async def test_exit_without_shutdown_returns_1(tmp_path: Path):
    server = await RawServer.start(tmp_path / "cache")
    server.send({"method": "exit"})
    code = await asyncio.wait_for(server.process.wait(), 30)
    await server.close()
    assert code == 1


@pytest.mark.parametrize("model_dir", ["~nosuchuser/x", "/tmp/" + "m" * 5000])
async def test_an_impossible_model_dir_or_folder_is_a_message_and_the_session_serves_with_the_default(
        tmp_path: Path, model_dir: str):
    root = tmp_path / "ws"
    root.mkdir()
    server = await RawServer.start(tmp_path / "cache")
    try:
        server.send({"id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": root.as_uri(), "capabilities": {"window": {"showMessage": {}}},
            "workspaceFolders": [{"uri": (tmp_path / ("f" * 300)).as_uri(), "name": "too long"},
                                 {"uri": root.as_uri(), "name": "ws"}],
            "initializationOptions": {"modelDir": model_dir}}})
        initialized = await server.response(1)
        server.send({"method": "initialized", "params": {}})
        server.send({"id": 2, "method": "workspace/executeCommand", "params": {"command": "cllm.status"}})
        status = await server.response(2)
    finally:
        await server.close()
    assert "result" in initialized and "result" in status
    shown = [m["params"]["message"] for m in server.messages if m.get("method") == "window/showMessage"]
    assert any("modelDir" in message and "default model folder" in message for message in shown), shown
    assert status["result"]["modelDir"].startswith(str(tmp_path / "cache"))
