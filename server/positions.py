"""LSP documents and cursor positions, and the completion at a cursor (run on the workspace's worker).

Positions follow the protocol: lines end at \\n, \\r\\n or \\r, and characters are counted in the client's
position encoding (UTF-16 by default), clamped to the line's end.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from cllm.engine.complete.generate import MAX_SUFFIX_CHARS, context_start
from cllm.engine.config import CorpusConfig

from .workspace import Workspace

C_EXTENSIONS = frozenset(CorpusConfig().extensions)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_WORD_BEFORE = re.compile(r"[A-Za-z0-9_]*\Z")


@dataclass
class Suggestion:
    """The model's continuation at a cursor, the identifier being typed before it (for list filters), and where
    it was copied from ("path:line", or None)."""

    text: str
    word: str
    word_units: int
    source: str | None = None


def split_lines(text: str) -> list[str]:
    """Lines as LSP counts them (\\n, \\r\\n and \\r end a line), each with its ending."""
    return _LINE.findall(text)


def offset_at(text: str, position: types.Position, codec: PositionCodec) -> int | None:
    """Index into `text` of an LSP position (characters past the line end clamp to it); None when the
    line does not exist."""
    lines = split_lines(text)
    if position.line > len(lines) or position.line < 0 or position.character < 0:
        return None
    if position.line == len(lines):  # the empty line after a final line break (or of an empty document)
        return len(text) if not lines or lines[-1][-1] in "\r\n" else None
    start = sum(len(line) for line in lines[: position.line])
    return start + _column(lines[position.line].rstrip("\r\n"), position.character, codec)


def _column(content: str, character: int, codec: PositionCodec) -> int:
    """Index into a line of `character` client units (clamped to its end). Only the line's first `character`
    characters are looked at (a unit is at least part of one), and ASCII is one unit a character, so a keystroke
    in a multi-megabyte line does not count every unit of it."""
    head = content[:character]
    if head.isascii():
        return len(head)
    units = min(character, codec.client_num_units(head))
    return codec.position_from_client_units([head], types.Position(line=0, character=units)).character


def is_c_document(uri: str, language_id: str | None) -> bool:
    """C by language id, or by file extension when the client sends none or a generic one."""
    if language_id == "c":
        return True
    return Path(unquote(uri)).suffix in C_EXTENSIONS and language_id in (None, "", "plaintext", "cpp")


def complete_at(workspace: Workspace, text: str, position: types.Position, codec: PositionCodec,
                 path: str | None, doc_key: str, cancel: threading.Event) -> Suggestion | None:
    """Worker side of a completion request: cut prefix and suffix at the cursor and ask the model."""
    offset = offset_at(text, position, codec)
    if offset is None:
        return None
    prefix = text[context_start(offset): offset]
    suffix = text[offset: offset + MAX_SUFFIX_CHARS]
    lines_before = position.line - prefix.count("\n")  # the cursor's line minus the prefix's lines: bounded work
    completion = workspace.complete(prefix, suffix, path=path, doc_key=doc_key, cancel=cancel,
                                    lines_before=max(0, lines_before))
    if completion is None or not completion.text or cancel.is_set():
        return None
    word = _WORD_BEFORE.search(prefix).group(0)
    return Suggestion(text=completion.text, word=word, word_units=codec.client_num_units(word),
                      source=completion.source)
