"""The completion worker a Workspace's faces share: one thread that owns the blocking model work.

The model is not re-entrant and the event loops must never block, so every completion of a workspace, from
the language server and from the HTTP server alike, runs here, one at a time.

- Newest wins per document: a job submitted with the same face and key as an older one supersedes it. A
  queued older job resolves to None at once, a running one has its cancel event set (the completer stops
  early and the job resolves to whatever it returns then). Jobs without a key never supersede each other.
- Fair share between faces: each face ("lsp", "http", ...) has its own queue and the thread takes jobs from
  the faces in turn, so a burst of HTTP requests cannot starve the editor (or the other way round).
- A job is awaited from any asyncio event loop (`await job`); cancelling the awaiting task sets the job's
  cancel event, so a dropped request stops its computation too.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generator

LSP, HTTP = "lsp", "http"


@dataclass(eq=False)  # a job is itself: hashable, so asyncio.gather takes it
class Job:
    """One unit of blocking work: `fn(cancel)` runs on the worker thread and resolves `future`."""

    fn: Callable[[threading.Event], Any]
    face: str
    key: Hashable | None = None
    future: Future = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)

    async def wait(self) -> Any:
        """The job's result (its exception is raised here); a cancelled awaiting task cancels the job."""
        try:
            return await asyncio.wrap_future(self.future)
        except asyncio.CancelledError:
            self.cancel.set()
            raise

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wait().__await__()


class Worker:
    """A single thread for a workspace's blocking work, fed by per-face queues taken in turn.

    The thread starts with the first job and ends after `close()` (a job already running finishes first).
    """

    def __init__(self, name: str = "cllm-worker") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._queues: dict[str, OrderedDict[object, Job]] = {}
        self._last_face: str | None = None
        self._running: Job | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[threading.Event], Any], *, face: str, key: Hashable | None = None) -> Job:
        """Queue `fn` for `face`; a job with the same face and key supersedes this one's older twin.
        Await the returned job for the result. After close() the job fails with RuntimeError."""
        job = Job(fn=fn, face=face, key=key)
        with self._cond:
            if self._closed:
                job.future.set_exception(RuntimeError("the completion worker is closed"))
                return job
            queue = self._queues.setdefault(face, OrderedDict())
            slot: object = key if key is not None else object()
            older = queue.pop(slot, None)
            if older is not None and older.future.set_running_or_notify_cancel():
                older.future.set_result(None)
            running = self._running
            if key is not None and running is not None and (running.face, running.key) == (face, key):
                running.cancel.set()
            queue[slot] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return job

    def _next_job(self) -> Job | None:
        """The oldest job of the face after the one served last (round robin); None when all are empty."""
        faces = list(self._queues)
        start = faces.index(self._last_face) + 1 if self._last_face in faces else 0
        for face in faces[start:] + faces[:start]:
            if self._queues[face]:
                self._last_face = face
                return self._queues[face].popitem(last=False)[1]
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (job := self._next_job()) is None:
                    self._cond.wait()
                if self._closed:
                    return
                self._running = job
            try:
                if not job.future.set_running_or_notify_cancel():
                    continue  # the caller gave up on it while it waited
                if job.cancel.is_set():
                    job.future.set_result(None)
                    continue
                try:
                    job.future.set_result(job.fn(job.cancel))
                except Exception as exc:  # reported to the awaiting caller, which answers with an error
                    job.future.set_exception(exc)
            finally:
                with self._cond:
                    self._running = None

    def close(self) -> None:
        """Stop taking jobs: queued ones resolve to None, the thread ends after the one running."""
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for job in queue.values():
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_result(None)
                queue.clear()
            self._cond.notify()
