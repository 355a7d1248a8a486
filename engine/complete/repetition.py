"""The repetition guard's text tests: a suggestion that starts to repeat a span of itself, or retypes a line.

A greedy decoder that loops writes the same few words again and again (`PyObject* identity, Py_hash_t hash,
PyObject* identity, Py_hash_t hash, ...`); stops.py's StopRules cut such a suggestion where the repetition starts
and drop a line that only retypes the line above it. Only a repeated span naming at least MIN_WORDS distinct
identifiers counts, so that `NULL, NULL, NULL` or `0x00, 0x00` in a table stay as they are.
See docs/decisions.md, "Repetition guard and a small beam".
"""

from __future__ import annotations

import re

MIN_UNIT = 4  # characters: a shorter repeated unit is never cut (`0, 0, 0`)
MAX_UNIT = 240  # characters: the longest repeated unit looked for (a few lines)
MIN_WORDS = 2  # distinct identifiers a repeated span (or a retyped line) must name to count
MIN_PARTIAL = 12  # characters: a repeat of this much at the end of a suggestion is cut even when unfinished
SEPARATORS = ",;{}\n"  # a cut moves on to the end of the first of these

_WORD = re.compile(r"\b[A-Za-z_]\w*")


def names_words(text: str) -> bool:
    """Whether `text` names at least MIN_WORDS distinct identifiers."""
    return len(set(_WORD.findall(text))) >= MIN_WORDS


def repeat_length(text: str, period: int) -> int:
    """The length of the longest end of `text` equal to the text `period` characters before it (0 when none)."""
    n = len(text)
    if period >= n or text[-1] != text[-1 - period]:
        return 0
    lo, hi = 1, n - period  # text[n - lo:] repeats; find the longest such end by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[n - mid:] == text[n - mid - period:n - period]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def repeat_start(text: str) -> int:
    """Where the repetition at the end of `text` starts: the smallest n - repeat_length(text, p) over the periods p
    looked for (len(text) when the end repeats nothing). Nothing before it can be cut by repeat_cut, now or later."""
    n = len(text)
    start = n
    for period in range(MIN_UNIT, min(MAX_UNIT, n - 1) + 1):
        start = min(start, n - repeat_length(text, period))
    return start


def repeat_cut(text: str, unfinished: bool = False) -> int | None:
    """Where to cut `text` that ends by repeating a span of itself (None: it does not): a whole unit written twice,
    or with `unfinished` (the suggestion ends here) at least MIN_PARTIAL characters of a second copy. One copy
    stays: the cut is where the copy starts, moved on to the first separator after it (the copy's phase is
    arbitrary: `a, b, a, b` is also `, b, a` repeated), else to the end of a word it would split."""
    n = len(text)
    for period in range(MIN_UNIT, min(MAX_UNIT, n - 1) + 1):
        q = repeat_length(text, period)
        if (q >= period or (unfinished and q >= MIN_PARTIAL)) and names_words(_whole_words(text, n - q, unfinished)):
            return _boundary(text, n - q)
    return None


def _whole_words(text: str, at: int, final: bool) -> str:
    """text[at:] without the piece of a word cut at `at`, nor (unless the text is `final`) the last word, which
    may still grow."""
    while 0 < at < len(text) and _in_word(text[at - 1]) and _in_word(text[at]):
        at += 1
    end = len(text)
    while not final and end > at and _in_word(text[end - 1]):
        end -= 1
    return text[at:end]


def _boundary(text: str, at: int) -> int:
    """`at` if a separator ends the text before it, else the end of the first separator after it, else `at` moved
    past the rest of a word it falls inside."""
    if text[:at].rstrip()[-1:] in tuple(SEPARATORS):
        return at
    ends = [found + 1 for found in (text.find(sep, at) for sep in SEPARATORS) if found >= 0]
    if ends:
        return min(ends)
    while 0 < at < len(text) and _in_word(text[at - 1]) and _in_word(text[at]):
        at += 1
    return at


def _in_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def retypes(line: str, above: str) -> bool:
    """Whether the (stripped) `line` merely retypes the line `above` it, one naming MIN_WORDS identifiers."""
    return bool(line) and line == above and names_words(line)
