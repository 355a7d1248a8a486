"""The nesting depth of JSON text, measured before parsing."""

from __future__ import annotations

import pytest

from cllm.engine.jsontext import json_depth


@pytest.mark.parametrize("text, depth", [
    (b"1", 0), (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4), (b'["[[[[", "}}"]', 1), (b'"\\"[["', 0),
    (b"[" * 100_000, 100_000),
])
def test_json_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth
