"""Streaming a completion while it is generated: pieces move from the worker thread to the response.

The completer calls its `on_text` callback on the workspace's worker thread (engine/complete/generate.py: each piece is
final once sent). `stream_completions` hands every piece to the event loop through a thread-safe queue and gives
them to `send` as they come, while the completions run. When `send` fails (the client went away, e.g. Continue
ending a stream it no longer needs) the run is cancelled, which stops the running completion between tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[int, str], Awaitable[None]]
Run = Callable[[Callable[[int, str], None]], Awaitable[Any]]


async def stream_completions(run: Run, send: Send) -> Any:
    """Start `run(on_text)` (it calls on_text(prompt_index, piece) from any thread), await `send(index, piece)`
    for each piece in order, and return run's result once every piece is sent. An exception from `send`
    cancels the run and propagates; one from the run propagates after the pieces sent before it."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    def on_text(index: int, piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, (index, piece))

    task = asyncio.ensure_future(run(on_text))
    try:
        while not task.done():
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await send(*getter.result())
            else:
                getter.cancel()
        while not pieces.empty():  # pieces queued before the run's result reached the loop
            await send(*pieces.get_nowait())
        return task.result()
    finally:
        if not task.done():
            task.cancel()
