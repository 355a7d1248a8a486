"""One Workspace's training events as LSP messages: `$/progress` (work-done progress) and the
`cllm/sphereActivity` notification, at most 4 a second, sent in order from the event loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from lsprotocol import types

from pygls.lsp.server import LanguageServer

from cllm.engine.events import EpochEvent, StepEvent, to_wire

from .records import ServerEvent, TrainingFinished, TrainingStarted, WorkspaceStatus
from .words import exact_match, time_left
from .workspace import Workspace

log = logging.getLogger(__name__)

ACTIVITY_NOTIFICATION = "cllm/sphereActivity"
ACTIVITY_INTERVAL = 0.25  # seconds: cllm/sphereActivity and progress reports at most 4 per second
PROGRESS_CREATE_TIMEOUT = 10.0
PRETRAIN_TITLE = "Preparing the cllm base model"  # the progress of Workspace.start_pretraining's first step


def _rate(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "? tok/s"
    return f"{value / 1000:.1f}k tok/s" if value >= 1000 else f"{value:.0f} tok/s"


def progress_message(live: dict[str, Any]) -> str:
    """ "epoch 3/10 · loss 2.41 · 3.1k tok/s · ~7 min left" from the live training status; before the first step,
    the phase: "tokenize 120/820 MB"."""
    phase, done, total = live.get("phase"), live.get("done"), live.get("total")
    if "epoch" not in live and phase in ("scan", "tokenizer", "tokenize") and isinstance(done, int):
        if live.get("unit") == "bytes":
            return f"{phase} {done / 1e6:,.0f}" + (f"/{total / 1e6:,.0f}" if isinstance(total, int) else "") + " MB"
        return f"{phase} {done:,}" + (f"/{total:,}" if isinstance(total, int) else "") + f" {live.get('unit', '')}"
    parts = []
    if "epoch" in live:
        parts.append(f"epoch {live['epoch']}/{live.get('epochs', '?')}")
    if isinstance(live.get("loss"), (int, float)):
        parts.append(f"loss {live['loss']:.2f}")
    if "tokensPerSecond" in live:
        parts.append(_rate(live["tokensPerSecond"]))
    if isinstance(live.get("secondsRemaining"), (int, float)):
        parts.append(time_left(live["secondsRemaining"]))
    return " · ".join(parts) or "starting"


def done_message(model: dict[str, Any]) -> str:
    """ "done · 38 % lines exact · 2.05 bits/byte" from the new model's summary."""
    parts = ["done"]
    if isinstance(model.get("lineExactMatch"), (int, float)):
        parts.append(exact_match(model["lineExactMatch"]))
    if isinstance(model.get("valBitsPerByte"), (int, float)):
        parts.append(f"{model['valBitsPerByte']:.2f} bits/byte")
    return " · ".join(parts)


def sphere_activity(workspace: Workspace, live: dict[str, Any]) -> dict[str, Any]:
    """The cllm/sphereActivity payload from the live training status."""
    spheres = [{key: s.get(key) for key in ("id", "busy", "tokens", "loss", "node", "wait", "transfer")}
               for s in live.get("spheres") or [] if isinstance(s, dict)]
    return {"workspace": workspace.root.as_uri(), "state": live.get("state"), "epoch": live.get("epoch"),
            "epochs": live.get("epochs"), "step": live.get("step"), "totalSteps": live.get("totalSteps"),
            "loss": live.get("loss"), "tokensPerSecond": live.get("tokensPerSecond"),
            "secondsRemaining": live.get("secondsRemaining"), "spheres": spheres}


class TrainingRelay:
    """Turns one Workspace's events into $/progress and cllm/sphereActivity, in order, on the event loop."""

    _tokens = itertools.count(1)

    def __init__(self, server: LanguageServer, workspace: Workspace, progress_tokens: dict[str, Workspace]):
        self.server = server
        self.workspace = workspace
        self.progress_tokens = progress_tokens  # the server's token -> workspace map, for $/progress cancels
        self.queue: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self.token: str | None = None
        self._last_sent = 0.0
        self.task = asyncio.ensure_future(self._run())
        self.unsubscribe = workspace.subscribe(self._from_thread)

    def _from_thread(self, event: ServerEvent) -> None:
        loop = self.server.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("cannot relay training event %s", type(event).__name__)

    async def _handle(self, event: ServerEvent) -> None:
        status = self.workspace.state()
        live = to_wire(status.training.to_json())
        match event:
            case TrainingStarted():
                await self._begin(event.job)
            case StepEvent() | EpochEvent() if time.monotonic() - self._last_sent >= ACTIVITY_INTERVAL:
                self._last_sent = time.monotonic()
                self._report(live)
                self.server.protocol.notify(ACTIVITY_NOTIFICATION, sphere_activity(self.workspace, live))
            case TrainingFinished():
                self._end(event, status)
                self.server.protocol.notify(ACTIVITY_NOTIFICATION, sphere_activity(self.workspace, live))

    def _progress_supported(self) -> bool:
        window = self.server.client_capabilities.window
        return bool(window and window.work_done_progress)

    async def _begin(self, job: str | None) -> None:
        self.token = None
        if job == "learn" or not self._progress_supported():  # background learning is quiet (server/learning.py)
            return
        token = f"cllm-train-{next(self._tokens)}"
        try:
            await asyncio.wait_for(self.server.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT)
        except Exception as exc:  # the client refused or did not answer: train without a progress bar
            log.warning("client did not create the progress token: %s", exc)
            return
        self.token = token
        self.progress_tokens[token] = self.workspace
        self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=PRETRAIN_TITLE if job == "pretrain" else f"Training cllm on {self.workspace.root.name}", cancellable=True, message="starting",
            percentage=0))

    def _report(self, live: dict[str, Any]) -> None:
        if self.token is None:
            return
        percentage = live.get("percent")
        self.server.work_done_progress.report(self.token, types.WorkDoneProgressReport(
            message=progress_message(live), percentage=percentage if isinstance(percentage, int) else None,
            cancellable=True))

    def _end(self, event: TrainingFinished, status: WorkspaceStatus) -> None:
        state, reason = event.state, event.reason
        if state == "done" and event.job == "pretrain":
            message = "base model ready: training the workspace next"
        elif state == "done":
            message = done_message(to_wire(status.model.to_json()))
        else:
            message = f"{state}: {reason}" if reason else str(state)
        if state == "failed" and event.job != "learn":
            self.server.window_show_message(types.ShowMessageParams(
                type=types.MessageType.Error, message=f"cllm training failed: {reason}"))
        if self.token is not None:
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.progress_tokens.pop(self.token, None)
            self.token = None

    def close(self) -> None:
        self.unsubscribe()
        self.task.cancel()
