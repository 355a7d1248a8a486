"""A cheap look at untrusted JSON text before parsing it: how deep its arrays and objects nest.

Python's json parser recurses once per nesting level, so a short text of 50,000 opening brackets ends in a
RecursionError. Readers of untrusted JSON (model file headers, HTTP request bodies) measure the depth first and
refuse deep texts with their own clear error.
"""

from __future__ import annotations

import re

import numpy as np

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_OPENERS, _JSON_CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of the JSON text `data` nest (brackets inside strings do not count)."""
    codes = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    steps = np.isin(codes, _JSON_OPENERS).astype(np.int64) - np.isin(codes, _JSON_CLOSERS)
    return int(np.cumsum(steps).max(initial=0))
