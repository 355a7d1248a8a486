"""Stop rules for code completion: where a suggestion should end so that it fits the cursor.

The decoder feeds the growing text to a `StopRules` after every token; `check` says whether to stop and how much
to keep, `finish` tidies the final text, and `settled` says how much no later token can change (what streaming may
send). Single-line mode ends at the end of the line; multi-line mode continues while a block the suggestion opened
is open. Both stop before repeating the text after the cursor or the line above (a greedy decoder that loops never
stops by itself), cut a suggestion where it starts to repeat a span of itself (repetition.py), and stop at user
stop strings. Brackets in literals and comments are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .repetition import repeat_cut, repeat_start, retypes

OPENERS = "([{"
CLOSERS = ")]}"
COMMENT_LOOKBEHIND = 20_000  # characters of the prefix searched for an unclosed /* comment
SUFFIX_LOOKAHEAD = 4_000  # characters of the suffix the rules compare with (its first lines)

_CODE, _STRING, _CHAR, _LINE_COMMENT, _BLOCK_COMMENT = range(5)


class BracketCounter:
    """Incremental bracket depth of C text, ignoring brackets inside literals and comments.

    `depth` counts all brackets, `brace_depth` only braces. `floor` is the lowest depth reached (closing brackets
    opened before the text went below zero), and `opened` tells whether the text opened a brace block of its own
    above that floor, one that it may close again."""

    def __init__(self) -> None:
        self.depth = 0
        self.brace_depth = 0
        self.floor = 0
        self.opened = False
        self.state = _CODE
        self._prev = ""
        self._escaped = False

    def step(self, ch: str) -> None:
        """Consume one character."""
        state = self.state
        if state == _CODE:
            if ch in OPENERS:
                self.opened = self.opened or (ch == "{" and self.depth == self.floor)
                self.depth += 1
                self.brace_depth += ch == "{"
            elif ch in CLOSERS:
                self.depth -= 1
                self.brace_depth -= ch == "}"
                self.floor = min(self.floor, self.depth)
            elif ch == '"':
                self.state = _STRING
            elif ch == "'":
                self.state = _CHAR
            elif ch == "/" and self._prev == "/":
                self.state = _LINE_COMMENT
            elif ch == "*" and self._prev == "/":
                self.state = _BLOCK_COMMENT
                ch = ""  # so that "/*/" does not also close the comment
        elif state in (_STRING, _CHAR):
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == "\n" or ch == ('"' if state == _STRING else "'"):
                self.state = _CODE
        elif state == _LINE_COMMENT:
            if ch == "\n":
                self.state = _CODE
        elif ch == "/" and self._prev == "*":
            self.state = _CODE
            ch = ""
        self._prev = ch

    def feed(self, text: str) -> "BracketCounter":
        """Consume `text`; returns self for chaining."""
        for ch in text:
            self.step(ch)
        return self


def lexer_state_at_end(prefix: str) -> int:
    """The lexer state at the end of `prefix` (in code, a literal or a comment), found cheaply: an unclosed
    `/*` in the recent text means a block comment, otherwise only the cursor's line is scanned."""
    tail = prefix[-COMMENT_LOOKBEHIND:]
    if tail.rfind("/*") > tail.rfind("*/"):
        return _BLOCK_COMMENT
    return BracketCounter().feed(prefix[prefix.rfind("\n") + 1:]).state


def bracket_depth(text: str) -> int:
    """Net bracket depth of `text` (openers minus closers outside literals and comments)."""
    return BracketCounter().feed(text).depth


@dataclass
class Stop:
    """A decision to stop: why, and how many characters of the completion text to keep."""

    reason: str
    keep: int


class StopRules:
    """The stop rules of one request (see the module docstring). `check` is given the whole completion so far,
    which only ever grows; it scans only the new characters."""

    def __init__(self, prefix: str, suffix: str, multiline: bool, stop: Sequence[str] = ()) -> None:
        self.multiline = multiline
        self.stop_strings = tuple(s for s in stop if s)
        suffix = suffix[:SUFFIX_LOOKAHEAD]
        self.suffix = suffix
        self.cursor_line = prefix[prefix.rfind("\n") + 1:]
        self.cursor_after_code = bool(self.cursor_line.strip())
        self._counter = BracketCounter()
        self._counter.state = lexer_state_at_end(prefix)  # a suggestion inside a comment counts no brackets
        rest_of_line, _, following = suffix.partition("\n")
        self.suffix_line = rest_of_line.strip()
        # The line a multi-line suggestion must not repeat: the rest of the cursor's line, else the next non-blank one.
        self.next_line = self.suffix_line or next((ln.strip() for ln in following.split("\n") if ln.strip()), "")
        self._fed = 0
        self._line_start = 0
        self._line_index = 0
        above = prefix[:len(prefix) - len(self.cursor_line)].rstrip("\r\n")
        self._previous_line = above[above.rfind("\n") + 1:].strip()  # the line above the suggestion's current one
        self._previous_typed = True  # whether the user typed it (then only a line naming two words counts)
        self._decision: Stop | None = None

    def check(self, text: str) -> Stop | None:
        """Whether to stop now that the completion reads `text`, and where to cut it."""
        for s in self.stop_strings:
            at = text.find(s, max(0, self._fed - len(s)))
            if at >= 0:
                return Stop("stop", at)
        while self._decision is None and self._fed < len(text):
            ch = text[self._fed]
            self._counter.step(ch)
            if ch == "\n":
                self._decision = self._end_of_line(text, self._fed)
                self._line_start = self._fed + 1
                self._line_index += 1
            elif self.multiline and self._counter.brace_depth < 0:
                self._decision = Stop("block_end", self._fed)
            self._fed += 1
        if self._decision is None and (cut := repeat_cut(text)) is not None:
            self._decision = Stop("repetition", cut)
        if self._decision is None and not self.multiline and self._repeats_rest_of_line(text):
            return Stop("suffix", len(text))
        return self._decision

    def _end_of_line(self, text: str, end: int) -> Stop | None:
        """The rules judged when a line of the suggestion is complete (`end` is the index of its newline)."""
        start, index = self._line_start, self._line_index
        line = text[start:end].strip()
        first = index == 0
        # The first line continues the cursor's line; it repeats the next line only if the cursor's line is empty.
        continues_cursor_line = first and (self.cursor_after_code or bool(self.suffix_line))
        if self.next_line and line == self.next_line and not continues_cursor_line:
            return Stop("suffix", start)
        if first and not line and self.cursor_after_code and not self.suffix_line:
            self._previous_line = self.cursor_line.strip()
            return None  # the model ends the cursor's line first; the suggestion is the next line
        if self._repeats_line_above(self._whole(line, first)):
            return Stop("repetition", start)
        self._previous_line, self._previous_typed = self._whole(line, first), False
        if not self.multiline:
            return Stop("newline", end)
        if not line:
            return Stop("blank_line", start)
        if self._counter.opened and self._counter.depth <= self._counter.floor:
            return Stop("balanced", end)
        return None

    def _whole(self, line: str, first: bool) -> str:
        """The whole (stripped) editor line a suggestion's `line` ends up on: the first continues the cursor's."""
        return (self.cursor_line + line).strip() if first else line.strip()

    def _repeats_line_above(self, line: str) -> bool:
        """Whether the whole `line` retypes the line above it: a typed one naming two words, or the suggestion's own
        previous line with any word or number in it."""
        if self._previous_typed:
            return retypes(line, self._previous_line)
        return line == self._previous_line and any(c.isalnum() for c in line)

    def settled(self, text: str) -> int:
        """How many characters at the start of `text` (the completion so far, accepted by `check`) are final: no later
        token, cut or `finish` can change them. A conservative bound: it stops before a stop string that may still
        appear, at the start of a line that may still repeat a neighbour, at nothing while the text is only the start of
        the suffix, and before trailing whitespace or an end that starts the suffix's first line."""
        end = len(text)
        if self.stop_strings:
            end -= max(len(s) for s in self.stop_strings) - 1
        if self._may_repeat(text[self._line_start:]):
            end = min(end, self._line_start)
        end = min(end, repeat_start(text))
        if end <= 0 or self.suffix.lstrip().startswith(text[:end].strip()):
            return 0
        head = self.suffix.partition("\n")[0]
        while end > 0 and (text[end - 1].isspace() or _ends_with_start_of(text, end, head)):
            end -= 1
        return end

    def _may_repeat(self, line: str) -> bool:
        """Whether the unfinished `line` may still end up cut at its start as a repeat (see _end_of_line)."""
        first = self._line_index == 0
        targets = []
        if self.next_line and not (first and (self.cursor_after_code or self.suffix_line)):
            targets.append(self.next_line)
        if any(target.startswith(line.strip()) for target in targets):
            return True
        previous = self._previous_line
        return any(c.isalnum() for c in previous) and previous.startswith(self._whole(line, first))

    def _repeats_rest_of_line(self, text: str) -> bool:
        """Single-line: the suggestion has reached the text already after the cursor (trimmed by `finish`)."""
        return bool(self.suffix_line) and trim_suffix_overlap(text, self.suffix) != text

    def finish(self, text: str) -> str:
        """The final suggestion: no repeat of the text after the cursor, of a span of itself (even unfinished) or, on
        a line no rule judged yet, of the line above; no trailing whitespace."""
        text = trim_suffix_overlap(text.rstrip(), self.suffix).rstrip()
        if (cut := repeat_cut(text, unfinished=True)) is not None:
            text = text[:cut].rstrip()
        if len(text) > self._line_start and self._repeats_line_above(self._whole(text[self._line_start:],
                                                                                 self._line_index == 0)):
            text = text[:self._line_start].rstrip()
        return text


def _ends_with_start_of(text: str, end: int, head: str) -> bool:
    """Whether text[:end] ends with a non-empty start of `head` (an overlap trim_suffix_overlap may cut)."""
    last = text[end - 1]
    return any(head[k - 1] == last and text.endswith(head[:k], 0, end) for k in range(1, min(len(head), end) + 1))


def trim_suffix_overlap(text: str, suffix: str) -> str:
    """Drop what merely repeats the text after the cursor.

    A suggestion that is only the start of the suffix becomes empty; otherwise the longest end of the suggestion
    that equals the start of the suffix's first line is cut, unless cutting it would leave a bracket open
    (in `f(|)` the suggestion `g()` keeps its `)`, while `a, b)` loses it)."""
    body = text.rstrip()
    if body.strip() and suffix.lstrip().startswith(body.strip()):
        return ""
    head = suffix.partition("\n")[0]
    allowed_depth = None
    for k in range(min(len(head), len(body)), 0, -1):
        overlap = head[:k]
        if body.endswith(overlap) and overlap.strip():
            if allowed_depth is None:
                allowed_depth = max(bracket_depth(body), 0)
            if bracket_depth(body[:-k]) <= allowed_depth:
                return body[:-k]
    return text
