"""Language-server pieces that need no client: positions, document kinds, messages and the worker thread.

The protocol itself is tested end to end against `cllm lsp` in tests/e2e/test_lsp_*.py."""

from __future__ import annotations

import asyncio
import threading

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from cllm.server.lsp import Worker, cllm_section, is_c_document, offset_at, progress_message, run_job, split_lines

UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)


def test_lines_end_only_at_lsp_line_breaks():
    assert split_lines("a\nb\r\nc\rd\x0ce") == ["a\n", "b\r\n", "c\r", "d\x0ce"]
    assert split_lines("") == []


def test_offsets_follow_utf16_and_clamp_to_the_line():
    text = "int x = 1;\r\n/* 😀 */ y\nlast"
    assert offset_at(text, types.Position(line=0, character=4), UTF16) == 4
    # the emoji is two UTF-16 units but one Python character
    assert text[offset_at(text, types.Position(line=1, character=5), UTF16):].startswith(" */")
    assert offset_at(text, types.Position(line=0, character=99), UTF16) == len("int x = 1;")
    assert offset_at(text, types.Position(line=2, character=4), UTF16) == len(text)
    assert offset_at(text, types.Position(line=3, character=0), UTF16) is None
    assert offset_at("a\n", types.Position(line=1, character=0), UTF16) == 2


def test_only_c_documents_are_completed():
    assert is_c_document("file:///w/a.c", "c")
    assert is_c_document("file:///w/a.h", "cpp")
    assert is_c_document("file:///w/weird.txt", "c")
    assert not is_c_document("file:///w/a.py", "python")
    assert not is_c_document("file:///w/a.cpp", "cpp")


def test_settings_may_come_wrapped_in_their_section():
    assert cllm_section({"cllm": {"enable": False}}) == {"enable": False}
    assert cllm_section({"enable": False}) == {"enable": False}
    assert cllm_section(None) is None


def test_progress_messages_read_like_the_issue():
    live = {"epoch": 3, "epochs": 10, "loss": 2.4137, "tokensPerSecond": 3140.0}
    assert progress_message(live) == "epoch 3/10 · loss 2.41 · 3.1k tok/s"
    assert progress_message({"epoch": 1, "epochs": 2, "tokensPerSecond": 950}) == "epoch 1/2 · 950 tok/s"
    assert progress_message({}) == "starting"
    assert progress_message({"phase": "scan", "done": 1200, "total": None, "unit": "files"}) == "scan 1,200 files"
    tokenize = {"phase": "tokenize", "done": 120_000_000, "total": 820_000_000, "unit": "bytes"}
    assert progress_message(tokenize) == "tokenize 120/820 MB"
    assert progress_message({**tokenize, "phase": "train", "epoch": 1, "epochs": 2}) == "epoch 1/2"


async def test_the_worker_computes_only_the_newest_request_per_document():
    worker = Worker(asyncio.get_running_loop(), superseded="superseded")
    gate, started = threading.Event(), threading.Event()

    def blocking(cancel: threading.Event) -> str:
        started.set()
        gate.wait(10)
        return "stopped early" if cancel.is_set() else "finished"

    running = worker.submit(blocking, key="doc")
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    queued = worker.submit(lambda cancel: "old", key="doc")
    other = worker.submit(lambda cancel: "other document", key="other")
    newest = worker.submit(lambda cancel: "newest", key="doc")
    gate.set()
    results = await asyncio.gather(run_job(running), run_job(queued), run_job(other), run_job(newest))
    worker.close()
    assert results == ["stopped early", "superseded", "other document", "newest"]


async def test_worker_errors_reach_the_caller():
    worker = Worker(asyncio.get_running_loop())

    def broken(cancel: threading.Event) -> None:
        raise ValueError("bad input")

    job = worker.submit(broken)
    try:
        await run_job(job)
    except ValueError as exc:
        assert "bad input" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    finally:
        worker.close()
