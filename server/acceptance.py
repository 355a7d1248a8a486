"""How often the workspace's suggestions are taken: shown, accepted whole, accepted in part, characters accepted,
and the characters cllm typed today. Counted per workspace, kept in the model folder (acceptance.json), never sent
anywhere.

A suggestion the language server returns gets an id; the editor reports, through the LSP commands `cllm.accepted`
and `cllm.partiallyAccepted`, that the suggestion with that id was taken whole or in part (docs/protocol.md). An
item taken in part and later whole counts as accepted, not as partial, and its characters count once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from cllm.engine.files import atomic_write_bytes

log = logging.getLogger(__name__)

ACCEPTANCE_FILE = "acceptance.json"
FORMAT_VERSION = 1
SAVE_AFTER_SECONDS = 30.0  # shown counts reach the file at most this long after a suggestion (accepts at once)
REMEMBERED_ITEMS = 512  # the latest suggestions whose ids an accept can name; older ids count as unknown


@dataclass
class Counts:
    """The persisted counts. `characters_today` are the characters accepted on the local date `day`."""

    shown: int = 0
    accepted: int = 0
    partially_accepted: int = 0
    characters_accepted: int = 0
    day: str = ""
    characters_today: int = 0

    def to_json(self, today: str) -> dict[str, Any]:
        """The status object's `acceptance` (snake_case): the counts, the rate, and today's characters."""
        taken = self.accepted + self.partially_accepted
        return {"shown": self.shown, "accepted": self.accepted, "partially_accepted": self.partially_accepted,
                "acceptance_rate": taken / self.shown if self.shown else None,
                "characters_accepted": self.characters_accepted,
                "characters_today": self.characters_today if self.day == today else 0}


@dataclass
class Report:
    """One `cllm.accepted` / `cllm.partiallyAccepted` argument: the suggestion's id and the characters taken."""

    id: str
    chars: int
    workspace: str | None = None


@dataclass
class _Item:
    """A suggestion shown recently: its length (None when only an accept named it) and what was taken of it."""

    chars: int | None
    partial_chars: int = 0
    whole: bool = False


def parse_report(args: tuple[Any, ...]) -> Report | str:
    """The report in a command's arguments, `{"id": str, "chars": int >= 0, "workspace"?: uri-or-path}`, or what is
    wrong with them."""
    if len(args) != 1 or not isinstance(args[0], dict):
        return "expected one object {\"id\", \"chars\"}"
    fields = args[0]
    unknown = sorted(set(fields) - {"id", "chars", "workspace", "source"})  # source: a copy's path:line, not counted
    if unknown:
        return f"unknown argument {unknown[0]!r}"
    item_id, chars, workspace = fields.get("id"), fields.get("chars"), fields.get("workspace")
    if not isinstance(item_id, str) or not item_id:
        return f"id must be a non-empty string, got {item_id!r}"
    if isinstance(chars, bool) or not isinstance(chars, int) or chars < 0:
        return f"chars must be a whole number >= 0, got {chars!r}"
    if workspace is not None and not isinstance(workspace, str):
        return f"workspace must be a folder URI or path, got {workspace!r}"
    return Report(item_id, chars, workspace)


def read_counts(path: Path) -> Counts:
    """The counts stored at `path`; zero counts when there is no file, and (with a log line) when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Counts()
    except (OSError, ValueError) as exc:
        log.warning("acceptance counts in %s are unreadable (%s): counting again from zero", path, exc)
        return Counts()
    problem = _counts_problem(data)
    if problem:
        log.warning("acceptance counts in %s are damaged (%s): counting again from zero", path, problem)
        return Counts()
    return Counts(**{f.name: data[f.name] for f in dataclasses.fields(Counts)})


def _counts_problem(data: Any) -> str | None:
    """What makes `data` not a counts file of this version, or None."""
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return f"not a version {FORMAT_VERSION} counts object"
    for f in dataclasses.fields(Counts):
        value = data.get(f.name)
        if f.name == "day":
            if not isinstance(value, str):
                return "day is not a string"
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{f.name} is not a whole number >= 0"
    return None


class Acceptance:
    """The counts of one workspace, kept at `path`. Thread-safe: the language server counts on its event loop and
    saves on helper threads."""

    def __init__(self, path: Path, today: Callable[[], date] = date.today) -> None:
        self.path = path
        self._today = today
        self._lock = threading.Lock()
        self._counts = read_counts(path)
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._prefix = secrets.token_hex(4)  # ids stay unique across restarts of the server
        self._issued = 0
        self._timer: threading.Timer | None = None

    def shown(self, chars: int) -> str:
        """Count a suggestion of `chars` characters as shown; returns the id its accept commands name. The file is
        written within SAVE_AFTER_SECONDS, off the caller's thread."""
        with self._lock:
            self._counts.shown += 1
            self._issued += 1
            item_id = f"{self._prefix}-{self._issued}"
            self._remember(item_id, _Item(chars))
            if self._timer is None:
                self._timer = threading.Timer(SAVE_AFTER_SECONDS, self.save)
                self._timer.daemon = True
                self._timer.start()
        return item_id

    def accepted(self, report: Report) -> bool:
        """The suggestion `report.id` was taken whole (`report.chars` characters, unless its length is known); False
        for one already counted whole. Saves the counts."""
        with self._lock:
            item = self._items.get(report.id) or _Item(report.chars)
            if item.whole:
                return False
            length = report.chars if item.chars is None else item.chars
            if item.partial_chars:
                self._counts.partially_accepted = max(0, self._counts.partially_accepted - 1)
            item.whole = True
            self._remember(report.id, item)
            self._counts.accepted += 1
            self._add_characters(max(0, length - item.partial_chars))
        self.save()
        return True

    def partially_accepted(self, report: Report) -> bool:
        """`report.chars` more characters of the suggestion `report.id` were taken (a word, a line); False when
        nothing is counted (no characters, or the suggestion was already taken whole). Saves the counts."""
        with self._lock:
            item = self._items.get(report.id) or _Item(None)
            room = report.chars if item.chars is None else max(0, item.chars - item.partial_chars)
            chars = min(report.chars, room)
            if item.whole or chars == 0:
                return False
            if not item.partial_chars:
                self._counts.partially_accepted += 1
            item.partial_chars += chars
            self._remember(report.id, item)
            self._add_characters(chars)
        self.save()
        return True

    def to_json(self) -> dict[str, Any]:
        """The counts as the status object's `acceptance` (snake_case)."""
        with self._lock:
            return self._counts.to_json(self._today().isoformat())

    def save(self) -> None:
        """Write the counts to the file (atomically); a failure is logged, never raised."""
        with self._lock:
            self._timer = None
            data = json.dumps({"version": FORMAT_VERSION, **dataclasses.asdict(self._counts)}).encode()
            try:
                atomic_write_bytes(self.path, data)
            except Exception as exc:  # a full disk or a read-only folder must not fail a completion or a command
                log.warning("cannot save the acceptance counts to %s: %s", self.path, exc)

    def close(self) -> None:
        """Stop the pending save and save now (the workspace closes)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.save()

    def _remember(self, item_id: str, item: _Item) -> None:
        self._items[item_id] = item
        self._items.move_to_end(item_id)
        while len(self._items) > REMEMBERED_ITEMS:
            self._items.popitem(last=False)

    def _add_characters(self, chars: int) -> None:
        today = self._today().isoformat()
        if self._counts.day != today:
            self._counts.day, self._counts.characters_today = today, 0
        self._counts.characters_accepted += chars
        self._counts.characters_today += chars
