"""The trainer's errors: a run that cannot start, and one cancelled before its first step."""

from __future__ import annotations

from ..errors import CllmError


class TrainError(CllmError, ValueError):
    """The training cannot start: the message says why (no C files, impossible settings, bad checkpoint)."""


class TrainCancelled(TrainError):
    """The cancel flag was set before the first step (scan, tokenizer, tokenization): no model was written and
    an existing model file is untouched."""
