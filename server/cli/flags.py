"""The `cllm` parser's parts that several subcommands share: the argparse subclass with one-line errors, the
checked argument types, and the training flags, derived from the option schema (engine/config.py OPTIONS), so a
flag means the same config field, help and check in `cllm train`, `cllm pretrain` and the editor settings."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from cllm.engine import config
from cllm.engine.config import OPTIONS, Check, ModelConfig, TrainConfig, config_options

from ..settings import is_number


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("cllm serve: error: argument --port: ...", exit status 2) instead of the
    usage block, and each option's default shown after its help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to an option's help: its argparse default, or for an option left None so that
    the engine's default applies, that default, looked up only when help is shown (see `engine_default`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        find = getattr(action, "engine_default", None)
        if find is not None:
            return f"{action.help} (default: {find()})"
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def engine_default(action: argparse.Action, find: Callable[[], object]) -> None:
    """Show `find()` as the default of `action` in help. The engine modules holding these defaults take a third
    of a second to import, which every `cllm` command would otherwise pay."""
    action.engine_default = find  # type: ignore[attr-defined]


def argument_type(check: Check) -> Callable[[str], Any]:
    """An argparse type: the text as a `check.kind` that the check accepts (json_value), else "must be EXPECTED,
    got TEXT"."""
    def parse(text: str):
        try:
            return json_value(check, check.kind(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {check.expected()}, got {text!r}") from None
    return parse


def json_value(check: Check, value: Any) -> Any:
    """`value` as a `check.kind` when it is a JSON value of that type (a finite number, a whole one for int) that
    the check accepts, else ValueError "must be EXPECTED, got VALUE": the one check of a flag's value (parsed by
    argument_type) and of a training request's (request.py)."""
    kind = check.kind
    if kind is bool or kind is str:
        fits = isinstance(value, kind)
    else:
        fits = is_number(value) and (kind is float or value == int(value))
    try:
        typed = kind(value) if fits else None
    except OverflowError:  # an int beyond a float's range
        typed = None
    if typed is None or not check.accepts(typed):
        raise ValueError(f"must be {check.expected()}, got {json.dumps(value)}")
    return typed


COUNT = argument_type(config.COUNT)
POSITIVE_FLOAT = argument_type(config.POSITIVE_FLOAT)
PORT = argument_type(Check(int, minimum=0, maximum=65535))

# Training flags: --flag: (ModelConfig or TrainConfig field, argparse type, help). Unset flags stay None, so the
# defaults, a resumed checkpoint's settings or the time budget's picks apply.
MODEL_FLAGS = {o.flag: (name, argument_type(o.check), o.help) for name, o in config_options(ModelConfig).items()}
TRAIN_FLAGS = {o.flag: (name, argument_type(o.check), o.help) for name, o in config_options(TrainConfig).items()}
_DEFAULTS = {o.flag: getattr(cls, name) for cls in (ModelConfig, TrainConfig) for name, o in config_options(cls).items()}


def command_flags(command: str) -> list[str]:
    """The options `cllm COMMAND` takes ("train", "pretrain"), in help order."""
    return [o.flag for o in OPTIONS if command in o.commands]


def add_config_flags(p: argparse.ArgumentParser, flags: list[str]) -> None:
    """The options named (flags of engine/config.py OPTIONS): a switch, or a checked value with its config default
    in its help."""
    by_flag = {o.flag: o for o in OPTIONS}
    for flag in flags:
        option = by_flag[flag]
        if option.check.kind is bool:
            p.add_argument(option.argument, action="store_true", help=option.help)
            continue
        default = _DEFAULTS[flag]
        p.add_argument(option.argument, type=argument_type(option.check), metavar=option.metavar,
                       help=f"{option.help} (default: {'none' if default is None else default})")


def add_json_events_flag(p: argparse.ArgumentParser) -> None:
    """--json for the training commands: JSON Lines events on stdout, a failure among them (see errors.py)."""
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(events=True)


def check_out_flag(out: str | None, example_name: str) -> None:
    """BadInput (exit 2, before anything runs) unless `--out` is unset, absent or a regular file: the write policy
    of engine/files.py, so a folder, a device or a FIFO of that name is refused, never replaced."""
    from cllm.engine.files import OutputPathError, check_output_path

    from .errors import BadInput

    if out is None:
        return
    if os.path.isdir(out):
        raise BadInput(f"--out {out} is a folder: give the model file to write, e.g. {os.path.join(out, example_name)}")
    try:
        check_output_path(out)
    except OutputPathError as exc:
        raise BadInput(f"--out {exc}") from None
