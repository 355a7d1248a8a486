"""`cllm train --request FILE` and `cllm pretrain --request FILE`: the whole request as one JSON object, read from
FILE or from stdin ("-"). It fills in the same namespace as the command line's flags, each option checked by its
schema entry (engine/config.py OPTIONS) as its flag is, so that everything after parsing is one code path. The
editors' trainer child (server/trainer_job.py) starts this way: its options arrive as values, not as flags.

    {"path": "/ws", "out": "/models/model.cllm.training", "continue_from": "/models/model.cllm", "no_base": false,
     "options": {"time_budget": 600, "layers": 2, "fresh": true, "no_gitignore": true}}

Options are named as in OPTIONS (`Option.flag`: "layers", "time_budget"); null means unset, as an absent key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cllm.engine.config import OPTIONS

from .errors import BadInput
from .flags import json_value

# The request's keys besides "options", per command: the namespace attribute each sets, and its JSON type
_KEYS: dict[str, dict[str, type]] = {
    "train": {"path": str, "out": str, "resume": str, "continue_from": str, "base": str, "no_base": bool,
              "focus": list},
    "pretrain": {"paths": list, "out": str, "continue_from": str},
}
_JSON_TYPES = {str: "a non-empty string", bool: "true or false", list: "a list of paths"}


def add_request_flag(p: argparse.ArgumentParser) -> None:
    """--request FILE for the training commands."""
    p.add_argument("--request", metavar="FILE",
                   help="read the whole request (path, out, options by name, ...) as one JSON object from FILE, "
                        "or from stdin with '-' (see docs/cli.md) (default: the command line)")


def apply_request(args: argparse.Namespace, command: str) -> None:
    """Fill `args` from the JSON request `args.request` names, as the flags would have; BadInput for a request
    that is unreadable, not an object, has an unknown key or a bad value, or comes with flags of its own."""
    given = _flags_given(args, command)
    if given:
        raise BadInput(f"--request holds the whole request: drop {', '.join(given)} (or put it in the request)")
    request = read_request(args.request)
    unknown = sorted(set(request) - set(_KEYS[command]) - {"options"})
    if unknown:
        raise BadInput(f"unknown key {unknown[0]!r} in the request (known: options, {', '.join(_KEYS[command])})")
    for key, kind in _KEYS[command].items():
        if request.get(key) is not None:
            setattr(args, key, _typed(key, request[key], kind))
    for name, value in _options(request, command).items():
        setattr(args, name, value)


def read_request(source: str) -> dict[str, Any]:
    """The JSON object in file `source` ("-": stdin); BadInput when it cannot be read or is not one."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the request {source}: {exc.strerror or exc}") from exc
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"the request in {source} is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise BadInput(f"the request in {source} must be a JSON object, got {json.dumps(request)[:80]}")
    return request


def _options(request: dict[str, Any], command: str) -> dict[str, Any]:
    """The request's "options", each checked by its OPTIONS entry; unset (null) options left out."""
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise BadInput(f"request key 'options' must be an object, got {json.dumps(options)[:80]}")
    known = {o.flag: o for o in OPTIONS if command in o.commands}
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if name not in known:
            raise BadInput(f"unknown option {name!r} in the request (`cllm {command}` takes: {', '.join(known)})")
        if value is None:
            continue
        try:
            checked[name] = json_value(known[name].check, value)
        except ValueError as exc:
            raise BadInput(f"request option {name} {exc}") from None
    return checked


def _typed(key: str, value: Any, kind: type) -> Any:
    """`value` of request key `key` when it is a JSON value of `kind`, else BadInput."""
    if kind is list:
        fits = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    else:
        fits = isinstance(value, kind) and (kind is not str or bool(value))
    if not fits:
        raise BadInput(f"request key {key!r} must be {_JSON_TYPES[kind]}, got {json.dumps(value)[:80]}")
    return value


def _flags_given(args: argparse.Namespace, command: str) -> list[str]:
    """The command line's own training arguments besides --request and --json (the report's form)."""
    names = [*_KEYS[command], "ray", *(o.flag for o in OPTIONS if command in o.commands)]
    return [name if name in ("path", "paths") else "--" + name.replace("_", "-")
            for name in names if getattr(args, name, None) not in (None, False, [])]
