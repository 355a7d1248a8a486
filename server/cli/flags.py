"""The `cllm` parser's parts that several subcommands share: the argparse subclass with one-line errors, the
checked argument types, and the training flags (`cllm train` and `cllm pretrain` take them from one table, so a
flag means the same config field in both)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..settings import POSITIONS


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


def checked(kind: type, ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: a finite `kind` (int or float) that `ok` accepts, else "must be EXPECTED, got TEXT"."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value
    return parse


COUNT = checked(int, lambda value: value >= 0, "a whole number >= 0")
POSITIVE = checked(int, lambda value: value >= 1, "a whole number >= 1")
POSITIVE_FLOAT = checked(float, lambda value: value > 0, "a positive number")
PORT = checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")

# Sizes: far beyond any model this CPU engine trains, low enough that a typo is an error or "out of memory"
# rather than an overflow deep in numpy.
SIZE = checked(int, lambda value: 1 <= value <= 100_000, "a whole number from 1 to 100000")


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """An argparse type: one of `choices`, else "must be one of A, B, got TEXT"."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text
    return parse


# Training flags: --flag: (ModelConfig or TrainConfig field, argparse type, help). Unset flags stay None, so the
# defaults, a resumed checkpoint's settings or the time budget's picks apply.
MODEL_FLAGS = {
    "vocab_size": ("vocab_size", SIZE, "tokenizer vocabulary size"),
    "d_model": ("d_model", SIZE, "model width"),
    "layers": ("n_layers", SIZE, "transformer layers"),
    "heads": ("n_heads", SIZE, "attention heads (must divide --d-model)"),
    "ffn": ("d_ff", SIZE, "feed-forward width"),
    "dropout": ("dropout", checked(float, lambda value: 0 <= value < 1, "a number in [0, 1)"), "dropout rate"),
    "position_encoding": ("positions", one_of(POSITIONS), "how the model knows where a token is: a learned table, "
                          "or rotary embeddings (rope) on queries and keys"),
}
TRAIN_FLAGS = {
    "epochs": ("epochs", POSITIVE, "passes over the training files"),
    "max_steps": ("max_steps", POSITIVE, "stop after this many optimizer steps"),
    "time_budget": ("time_budget", POSITIVE_FLOAT, "stop after SECONDS; unset --epochs, --grad-accum, --lr, "
                    "--dropout and --vocab-size are then fitted to the budget"),
    "batch_size": ("batch_size", SIZE, "sequences per optimizer step"),
    "seq_len": ("seq_len", SIZE, "tokens per training sequence"),
    "lr": ("lr", POSITIVE_FLOAT, "peak learning rate"),
    "grad_accum": ("grad_accum", SIZE, "micro-batches per optimizer step"),
    "seed": ("seed", COUNT, "random seed (weights, data order, dropout)"),
    "threads": ("threads", COUNT, "OS threads for the spheres (0 = one per core)"),
    "spheres": ("spheres", SIZE, "worker spheres"),
}


def add_config_flags(p: argparse.ArgumentParser, flags: list[str]) -> None:
    """The training flags named (keys of TRAIN_FLAGS and MODEL_FLAGS), each with its config default in its help."""
    from cllm.engine.config import ModelConfig, TrainConfig

    for flag in flags:
        field, kind, text = TRAIN_FLAGS[flag] if flag in TRAIN_FLAGS else MODEL_FLAGS[flag]
        default = getattr(TrainConfig if flag in TRAIN_FLAGS else ModelConfig, field)
        p.add_argument("--" + flag.replace("_", "-"), type=kind, metavar="SECONDS" if flag == "time_budget" else None,
                       help=f"{text} (default: {'none' if default is None else default})")


def add_json_events_flag(p: argparse.ArgumentParser) -> None:
    """--json for the training commands: JSON Lines events on stdout, a failure among them (see errors.py)."""
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(events=True)
