"""The event stream of one workspace: subscribers and the fan-out of typed events (server/records.py ServerEvent)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .records import ServerEvent

log = logging.getLogger("cllm.server.workspace.events")  # under the workspace's logger

Subscriber = Callable[[ServerEvent], None]


class EventStream:
    """Hands every published event to the subscribers of the moment, on the publishing thread. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: ServerEvent) -> None:
        """Hand `event` to every subscriber; one that fails is logged and the others still get it."""
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", type(event).__name__)
