"""Where a suggestion was copied from: the file and line of the text the match model copied most of it from.

The match model (match_model.py) predicts the token that followed an earlier occurrence of the last tokens, in the
workspace index or in the open document, and says where that token lies (its origin). While a suggestion is
decoded, a CopyTracker notes for each picked token whether it was that prediction. A suggestion more than half of
whose tokens were copies names where the longest run of copied tokens starts: the file (relative to the workspace
root) and the line (from 1) of the run's first visible character. The line is counted from per-token newline
counts over that one file's tokens, once per suggestion; nothing is read from disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.tokenizer import Tokenizer
from .match_model import MatchIndex

RUN_GAP = 3  # a copy this many tokens after the last one still continues its run (a renamed word in between)


@dataclass(frozen=True)
class Copy:
    """Where a suggestion's copied text starts. In the open document (`in_document`) `path` is the document's
    (None when unknown) and `line` counts from the start of the text the completer read."""

    path: str | None
    line: int
    in_document: bool


def newline_tables(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: the newlines in its bytes, and the newlines before its first byte that is not whitespace."""
    pieces = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
    newlines = np.array([piece.count(b"\n") for piece in pieces], np.int64)
    leading = np.array([piece[:len(piece) - len(piece.lstrip())].count(b"\n") for piece in pieces], np.int64)
    return newlines, leading


@dataclass
class _Run:
    """Copied tokens that follow each other in one place: the index copied from, the first and last origin."""

    index: MatchIndex
    start: int
    last: int
    tokens: int = 1


class CopyTracker:
    """One suggestion's copies: `expect` the match model's prediction before each pick, then `picked`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.newlines, self.leading = newline_tables(tokenizer)
        self.begin()

    def begin(self) -> None:
        """A new suggestion starts."""
        self.copied = 0
        self._expected: tuple[int, int, MatchIndex | None] = (-1, -1, None)
        self._run: _Run | None = None
        self._best: _Run | None = None

    def expect(self, predicted: int, origin: int, index: MatchIndex) -> None:
        """The match model's prediction for the next token (-1: none) and its origin in `index`
        (match_model._resolve)."""
        self._expected = (predicted, origin, index)

    def picked(self, token: int) -> None:
        """Decoding picked `token`: a copy when it is the expected prediction."""
        predicted, origin, index = self._expected
        self._expected = (-1, -1, None)
        if token != predicted or origin < 0 or index is None:
            return
        self.copied += 1
        run = self._run
        if run is not None and run.index is index and 0 < origin - run.last <= RUN_GAP:
            run.last, run.tokens = origin, run.tokens + 1
        else:
            run = self._run = _Run(index, origin, origin)
        if self._best is None or run.tokens > self._best.tokens:
            self._best = run

    def copy(self, tokens: int, document: np.ndarray, header: int, path: str | None) -> Copy | None:
        """Where the suggestion of `tokens` tokens was copied from, None unless most of them were copies. The open
        `document` (its tokens, the first `header` of them its path header) is the one whose path is `path`."""
        best = self._best
        if best is None or 2 * self.copied <= tokens:
            return None
        workspace = best.index.tokens
        if best.start >= len(workspace):
            at = best.start - len(workspace)
            return Copy(path, max(1, self._line(document, header, at)), in_document=True)
        found = best.index.file_at(best.start)
        if found is None:
            return None
        file_path, start = found
        # the span starts with the file's path header, one line of its own
        return Copy(file_path, max(1, self._line(workspace, start, best.start) - 1), in_document=False)

    def _line(self, tokens: np.ndarray, start: int, at: int) -> int:
        """The line, from 1, of the first visible character of tokens[at] in the text of tokens[start:]."""
        return 1 + int(self.newlines[tokens[start:at]].sum()) + int(self.leading[tokens[at]])
