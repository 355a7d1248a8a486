"""Checks on what an HTTP client sends, before any of it is used: the JSON body and the fields every endpoint
shares. A hostile body gets a 400 naming the field, never a 500 from deep inside the server:

- nesting deeper than MAX_JSON_DEPTH is refused before parsing (Python's parser recurses once per level);
- NaN and Infinity are refused (Python accepts them, JSON does not);
- every string and field name must be encodable as UTF-8: a "\\ud800" escape parses to a lone surrogate, which
  would fail later, wherever the text is first encoded;
- a path is a non-empty string without NUL bytes and at most MAX_PATH_CHARS characters (the operating system
  refuses the others with errors that are not the client's to read);
- a flag is a real JSON boolean: the string "false" is not false.
"""

from __future__ import annotations

import json
from typing import Any

from cllm.engine.jsontext import json_depth

MAX_JSON_DEPTH = 32  # the API's own bodies nest 3 levels; the limit leaves room without inviting a RecursionError
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux


class BadInput(ValueError):
    """A request the client must fix: answered with 400 and this message."""


def _reject_constant(name: str) -> None:
    """json.loads hook: NaN and Infinity are not JSON and no field takes them."""
    raise ValueError(f"{name} is not a JSON number")


def parse_json_object(raw: bytes, *, optional: bool = False) -> dict[str, Any]:
    """The request body `raw` as a JSON object ({} for an absent optional body); BadInput otherwise. Only no
    bytes at all is an absent body: blanks are a JSON document with nothing in it, which is malformed."""
    if not raw and optional:
        return {}
    if not raw.strip():
        raise BadInput("request body must be a JSON object")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise BadInput(f"request body nests {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise BadInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    _check_text(body, "")
    return body


def _check_text(value: Any, where: str) -> None:
    """BadInput naming the first string or field name inside `value` (at `where`) that is not valid Unicode."""
    if isinstance(value, str):
        if not _encodable(value):
            raise BadInput(f"field {where!r} is not valid Unicode (it holds a lone surrogate such as \\ud800)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                raise BadInput(f"field name {key!r} is not valid Unicode (it holds a lone surrogate)")
            _check_text(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_field(body: dict[str, Any], key: str) -> str | None:
    """The path in `body[key]` (None when absent); BadInput unless it is a usable path string."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadInput(f"{key} must be a non-empty string")
    if "\0" in value:
        raise BadInput(f"{key} must not contain a NUL character")
    if len(value) > MAX_PATH_CHARS:
        raise BadInput(f"{key} is {len(value)} characters long (at most {MAX_PATH_CHARS})")
    return value


def flag_field(body: dict[str, Any], key: str) -> bool | None:
    """The JSON boolean in `body[key]` (None when absent or null); BadInput for anything else."""
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise BadInput(f"{key} must be true or false, got {value!r}")
