"""Pieces from a worker thread reach the response in order; a failing send cancels the run."""

import asyncio
import threading

import pytest

from cllm.server.http.sse import stream_completions


async def test_pieces_from_another_thread_arrive_in_order_before_the_result():
    async def run(on_text):
        def work():
            for i in range(50):
                on_text(i % 2, f"p{i}")
            return "result"
        return await asyncio.to_thread(work)

    sent = []

    async def send(index, piece):
        sent.append((index, piece))

    assert await stream_completions(run, send) == "result"
    assert sent == [(i % 2, f"p{i}") for i in range(50)]


async def test_a_failing_send_cancels_the_run():
    stopped = threading.Event()
    cancelled = asyncio.Event()

    async def run(on_text):
        on_text(0, "first")
        try:
            await asyncio.to_thread(stopped.wait, 60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def send(index, piece):
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await stream_completions(run, send)
    await asyncio.wait_for(cancelled.wait(), 60)
    stopped.set()
