"""The completion worker both faces share (server/worker.py): newest wins per document, faces take turns,
cancelled requests stop their job, errors reach the caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cllm.server.worker import HTTP, LSP, Worker


async def start_blocking(worker: Worker, face: str = LSP, key: str | None = None):
    """Submit a job that holds the thread until the returned gate is set; returns (job, gate) once it runs."""
    gate, started = threading.Event(), threading.Event()

    def blocking(cancel: threading.Event) -> str:
        started.set()
        gate.wait(10)
        return "stopped early" if cancel.is_set() else "finished"

    job = worker.submit(blocking, face=face, key=key)
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    return job, gate


async def test_only_the_newest_request_per_document_is_computed():
    worker = Worker()
    running, gate = await start_blocking(worker, key="doc")
    queued = worker.submit(lambda cancel: "old", face=LSP, key="doc")
    other = worker.submit(lambda cancel: "other document", face=LSP, key="other")
    newest = worker.submit(lambda cancel: "newest", face=LSP, key="doc")
    gate.set()
    results = await asyncio.gather(running, queued, other, newest)
    worker.close()
    assert results == ["stopped early", None, "other document", "newest"]


async def test_the_same_key_on_another_face_is_another_document():
    worker = Worker()
    running, gate = await start_blocking(worker, face=LSP, key="doc")
    from_http = worker.submit(lambda cancel: "http", face=HTTP, key="doc")
    gate.set()
    results = await asyncio.gather(running, from_http)
    worker.close()
    assert results == ["finished", "http"]


async def test_faces_take_turns():
    worker = Worker()
    order: list[str] = []

    def record(name: str):
        return lambda cancel: order.append(name)

    _, gate = await start_blocking(worker, face=LSP)
    jobs = [worker.submit(record(f"http{i}"), face=HTTP) for i in range(3)]
    jobs += [worker.submit(record(f"lsp{i}"), face=LSP) for i in range(3)]
    gate.set()
    await asyncio.gather(*jobs)
    worker.close()
    assert order == ["http0", "lsp0", "http1", "lsp1", "http2", "lsp2"]


async def test_a_cancelled_request_stops_its_running_job():
    worker = Worker()
    running, gate = await start_blocking(worker)
    waiter = asyncio.ensure_future(running.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert running.cancel.is_set()
    gate.set()
    worker.close()


async def test_a_request_cancelled_while_queued_never_runs():
    worker = Worker()
    ran = threading.Event()
    _, gate = await start_blocking(worker)
    queued = worker.submit(lambda cancel: ran.set(), face=HTTP)
    waiter = asyncio.ensure_future(queued.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter  # the cancellation has reached the job before the worker is free to take it
    after = worker.submit(lambda cancel: "after", face=HTTP)
    gate.set()
    assert await after == "after"
    worker.close()
    assert not ran.is_set()


async def test_errors_reach_the_caller():
    worker = Worker()

    def broken(cancel: threading.Event) -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await worker.submit(broken, face=HTTP)
    worker.close()


async def test_closing_answers_queued_jobs_and_refuses_new_ones():
    worker = Worker()
    _, gate = await start_blocking(worker)
    queued = worker.submit(lambda cancel: "never", face=LSP)
    worker.close()
    gate.set()
    assert await queued is None
    with pytest.raises(RuntimeError, match="closed"):
        await worker.submit(lambda cancel: "late", face=LSP)
