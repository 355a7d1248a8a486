"""Checks on HTTP request bodies: depth, constants, Unicode, paths and flags, each naming the field."""

from __future__ import annotations

import pytest

from cllm.server.http.input import MAX_JSON_DEPTH, MAX_PATH_CHARS, BadInput, flag_field, parse_json_object, path_field


def test_a_json_object_passes_and_an_empty_optional_body_is_empty():
    assert parse_json_object(b'{"a": [1, {"b": "\\u00e9"}]}') == {"a": [1, {"b": "\u00e9"}]}
    assert parse_json_object(b"", optional=True) == {}


@pytest.mark.parametrize("raw, fragment", [
    (b"", "JSON object"),
    (b"[1]", "JSON object"),
    (b'{"a": NaN}', "NaN"),
    (b"{\"a\": " + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}", "nests"),
    (b'{"a": {"b": ["ok", "\\udc00"]}}', "'a.b[1]'"),
    (b'{"\\ud800x": 1}', "field name"),
    (b"\xff", "not valid JSON"),
])
def test_bad_bodies_name_what_is_wrong(raw, fragment):
    with pytest.raises(BadInput, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_json_object(raw)


@pytest.mark.parametrize("value", ["", 3, "a\0b", "a" * (MAX_PATH_CHARS + 1)])
def test_unusable_paths_are_refused(value):
    with pytest.raises(BadInput, match="path"):
        path_field({"path": value}, "path")


def test_a_usable_path_passes():
    assert path_field({"path": "src/a.c"}, "path") == "src/a.c"
    assert path_field({}, "path") is None


@pytest.mark.parametrize("value", ["false", "true", 0, 1, [], {}])
def test_only_json_booleans_are_flags(value):
    with pytest.raises(BadInput, match="stream"):
        flag_field({"stream": value}, "stream")
    assert flag_field({"stream": False}, "stream") is False and flag_field({}, "stream") is None
