"""The `cllm` command: train, pretrain, complete, info, eval, lsp, serve.

The argument names are a contract (scripts and editor integrations rely on them); each subcommand's handler
is a short function that delegates to the engine or the servers. Bad input ends in one line on stderr and a
non-zero exit: argument values are checked while parsing (exit status 2), the engine's errors (CllmError) are
caught once in `main` (exit status 1), and a closed output pipe ends the command quietly.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import __version__
from ..settings import POSITIONS, SHAPE_OPTIONS

if TYPE_CHECKING:
    from cllm.engine.events import TrainingEvent, TrainingMetadata


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("cllm serve: error: argument --port: ...", exit status 2) instead of the
    usage block, and each option's default shown after its help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to an option's help: its argparse default, or for an option left None so that
    the engine's default applies, that default, looked up only when help is shown (see `_engine_default`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        find = getattr(action, "engine_default", None)
        if find is not None:
            return f"{action.help} (default: {find()})"
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _engine_default(action: argparse.Action, find: Callable[[], object]) -> None:
    """Show `find()` as the default of `action` in help. The engine modules holding these defaults take a third
    of a second to import, which every `cllm` command would otherwise pay."""
    action.engine_default = find  # type: ignore[attr-defined]


def _max_tokens_default() -> int:
    from cllm.engine.complete.generate import CompletionOptions

    return CompletionOptions().max_tokens


def _index_memory_default() -> float:
    from cllm.engine import IndexSettings

    return IndexSettings().max_mb


def _temperature_default() -> str:
    from cllm.engine.complete.generate import MAX_TEMPERATURE, CompletionOptions

    return f"{CompletionOptions().temperature}, at most {MAX_TEMPERATURE}"


def _positions_default() -> int:
    from cllm.engine.eval.evaluate import DEFAULT_POSITIONS

    return DEFAULT_POSITIONS


def _checked(kind: type, ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
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


_COUNT = _checked(int, lambda value: value >= 0, "a whole number >= 0")
_POSITIVE = _checked(int, lambda value: value >= 1, "a whole number >= 1")
_POSITIVE_FLOAT = _checked(float, lambda value: value > 0, "a positive number")
_PORT = _checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")


def _api_key(text: str) -> str:
    """An argparse type for --api-key; its error never echoes the key."""
    from cllm.server.http.security import check_api_key

    try:
        return check_api_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Sizes: far beyond any model this CPU engine trains, low enough that a typo is an error or "out of memory"
# rather than an overflow deep in numpy.
_SIZE = _checked(int, lambda value: 1 <= value <= 100_000, "a whole number from 1 to 100000")

def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """An argparse type: one of `choices`, else "must be one of A, B, got TEXT"."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text
    return parse


# Training flags: --flag: (ModelConfig or TrainConfig field, argparse type, help). Unset flags stay None, so the
# defaults, a resumed checkpoint's settings or the time budget's picks apply.
_MODEL_FLAGS = {
    "vocab_size": ("vocab_size", _SIZE, "tokenizer vocabulary size"),
    "d_model": ("d_model", _SIZE, "model width"),
    "layers": ("n_layers", _SIZE, "transformer layers"),
    "heads": ("n_heads", _SIZE, "attention heads (must divide --d-model)"),
    "ffn": ("d_ff", _SIZE, "feed-forward width"),
    "dropout": ("dropout", _checked(float, lambda value: 0 <= value < 1, "a number in [0, 1)"), "dropout rate"),
    "position_encoding": ("positions", _one_of(POSITIONS), "how the model knows where a token is: a learned table, "
                          "or rotary embeddings (rope) on queries and keys"),
}
_TRAIN_FLAGS = {
    "epochs": ("epochs", _POSITIVE, "passes over the training files"),
    "max_steps": ("max_steps", _POSITIVE, "stop after this many optimizer steps"),
    "time_budget": ("time_budget", _POSITIVE_FLOAT, "stop after SECONDS; unset --epochs, --grad-accum, --lr, "
                    "--dropout and --vocab-size are then fitted to the budget"),
    "batch_size": ("batch_size", _SIZE, "sequences per optimizer step"),
    "seq_len": ("seq_len", _SIZE, "tokens per training sequence"),
    "lr": ("lr", _POSITIVE_FLOAT, "peak learning rate"),
    "grad_accum": ("grad_accum", _SIZE, "micro-batches per optimizer step"),
    "seed": ("seed", _COUNT, "random seed (weights, data order, dropout)"),
    "threads": ("threads", _COUNT, "OS threads for the spheres (0 = one per core)"),
    "spheres": ("spheres", _SIZE, "worker spheres"),
}


def _add_config_flags(p: argparse.ArgumentParser, flags: list[str]) -> None:
    """The training flags named (keys of _TRAIN_FLAGS and _MODEL_FLAGS), each with its config default in its help."""
    from cllm.engine.config import ModelConfig, TrainConfig

    for flag in flags:
        field, kind, text = _TRAIN_FLAGS[flag] if flag in _TRAIN_FLAGS else _MODEL_FLAGS[flag]
        default = getattr(TrainConfig if flag in _TRAIN_FLAGS else ModelConfig, field)
        p.add_argument("--" + flag.replace("_", "-"), type=kind, metavar="SECONDS" if flag == "time_budget" else None,
                       help=f"{text} (default: {'none' if default is None else default})")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on the C files under PATH",
                       description="Train a model on the C files under PATH (Ctrl-C stops and keeps the checkpoint).")
    p.add_argument("path", help="folder of C code to learn from")
    p.add_argument("--out", help="model file to write (default: the workspace's model folder)")
    _add_config_flags(p, [*_TRAIN_FLAGS, *_MODEL_FLAGS])
    p.add_argument("--resume", metavar="FILE", help="continue from this checkpoint, with its settings as defaults (default: start afresh)")
    p.add_argument("--continue-from", metavar="FILE",
                   help="start a new run from this model of the same workspace (its weights and tokenizer; a time "
                        "budget trains on the files it has not seen first) (default: the workspace's model, when "
                        "--out is not given)")
    p.add_argument("--fresh", action="store_true",
                   help="start over even when the workspace's model could be continued")
    p.add_argument("--no-gitignore", action="store_true",
                   help="take every C file: neither git's listing nor .gitignore files leave any out")
    p.add_argument("--base", metavar="FILE",
                   help="fine-tune this base model (default: the cached base of `cllm pretrain`, when there is one)")
    p.add_argument("--no-base", action="store_true", help="train from scratch even when a base model exists")
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.add_argument("--ray", metavar="ADDRESS", help="run the spheres as actors on the Ray cluster at ADDRESS "
                   "(HOST:PORT, or 'auto' for this machine's); same weights as threads; needs pip install "
                   "'cllm[cluster]' (default: threads on this machine)")
    p.set_defaults(handler=_cmd_train)


def _pretrain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="build a base model from the machine's own C (or the folders given)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders of C code; none: /usr/include, /usr/local/include and /usr/src")
    p.add_argument("--out", help="model file to write (default: base.cllm in the user's cache folder, where "
                                 "`cllm train` and the editors find it)")
    _add_config_flags(p, ["time_budget", "max_steps", "epochs", "seed", "threads", "vocab_size", "position_encoding"])
    p.add_argument("--continue-from", metavar="FILE",
                   help="extend this base (its weights, optimizer state and vocabulary) with a new run, the files it "
                        "has not trained on first; --out may name the same file (default: a new base from random "
                        "weights)")
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(handler=_cmd_pretrain)


def _complete_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="complete code with a trained model")
    p.add_argument("model", help="a .cllm model file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text before the cursor")
    src.add_argument("--file", help="file whose bytes before --offset are the prompt")
    src.add_argument("--batch", metavar="IN.jsonl", help='lines of {"id", "file", "offset", ["suffix"]} ("-": stdin)')
    p.add_argument("--offset", type=int, help="cursor offset in bytes into --file")
    p.add_argument("--suffix", help="text after the cursor (default: none)")
    _engine_default(p.add_argument("--max-tokens", type=_COUNT, help="longest completion, in tokens"),
                    _max_tokens_default)
    p.add_argument("--multiline", action="store_true", help="continue while a block is open")
    _engine_default(p.add_argument("--temperature", type=float, help="sampling temperature; 0 picks the likeliest token"),
                    _temperature_default)
    p.add_argument("--json", action="store_true", help="print the completion with its tokens, stop reason and time")
    p.set_defaults(handler=_cmd_complete)


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model's configuration and training metadata")
    p.add_argument("model", help="a .cllm model file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_info)


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a model (bits per byte, line completion) against baselines")
    p.add_argument("model", help="a .cllm model file")
    p.add_argument("--on", metavar="PATH", help="evaluate on every C file under PATH (default: held-out files)")
    _engine_default(p.add_argument("--positions", type=_COUNT, help="line-completion positions to sample"),
                    _positions_default)
    p.add_argument("--compare-scratch", action="store_true",
                   help="also train a model from scratch with the same time budget and compare it")
    p.add_argument("--prefix-only", action="store_true",
                   help="line completions see only the text before the cursor (no suffix), as clients without "
                   "fill-in-the-middle ask")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_eval)


def _lsp_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server on stdio")
    p.add_argument("--stdio", action="store_true", help="accepted for clients that pass it: stdio is the transport")
    p.add_argument("--http-port", type=_PORT, help="also serve the workspace over HTTP on this loopback port, with the "
                                                   "key in $CLLM_API_KEY or the model folder's `token` file (default: off)")
    p.add_argument("--with", dest="with_server", nargs=argparse.REMAINDER, metavar="SERVER ...",
                   help="start the language server SERVER (with the arguments that follow) too and serve both as one: "
                        "its answers plus cllm's completions, for clients that run one server per language; the last option "
                        "(default: cllm alone)")
    p.set_defaults(handler=_cmd_lsp)


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the local model server (HTTP API and dashboard)")
    p.add_argument("--workspace", default=".", help="workspace folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_PORT, default=8765, help="port to listen on (0: any free port)")
    p.add_argument("--model-dir", help="folder holding or receiving the workspace's model.cllm "
                                       "(default: the workspace's folder in the user cache)")
    _engine_default(p.add_argument("--index-memory-mb", type=_POSITIVE_FLOAT, metavar="MB",
                                   help="memory cap of the workspace index the completions mix in; past it a sample "
                                        "of the files is indexed (as the indexMemoryMB setting)"),
                    _index_memory_default)
    p.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    p.add_argument("--api-key", type=_api_key, metavar="KEY",
                   help="the bearer token clients must send (default: $CLLM_API_KEY, else the `token` file in the "
                        "model folder, created once and kept)")
    p.set_defaults(handler=_cmd_serve)


def _train_configs(args: argparse.Namespace):
    """ModelConfig and TrainConfig from the defaults (or the resumed checkpoint's) overridden by the flags."""
    from dataclasses import replace

    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.train.loop import load_train_config

    model_overrides = {field: getattr(args, flag) for flag, (field, _, _) in _MODEL_FLAGS.items()
                       if getattr(args, flag) is not None}
    train_overrides = {flag: getattr(args, flag) for flag in _TRAIN_FLAGS if getattr(args, flag) is not None}
    if args.resume and model_overrides:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in _MODEL_FLAGS if getattr(args, flag) is not None)
        raise ValueError(f"{flags} cannot change when resuming: the model's shape comes from {args.resume}")
    base = load_train_config(args.resume) if args.resume else TrainConfig()
    return replace(ModelConfig(), **model_overrides), replace(base, **train_overrides)


def _chosen_base(args: argparse.Namespace) -> str | None:
    """The base model `cllm train` fine-tunes: --base, else the cached base when it exists and no shape flag asks
    for another model; None with --no-base or --resume. ValueError for flags that contradict each other."""
    from cllm.engine.paths import default_base_path

    shape = [flag for flag in SHAPE_OPTIONS if getattr(args, flag) is not None]
    if args.base and args.no_base:
        raise ValueError("--base and --no-base contradict each other: give one")
    if args.base and args.resume:
        raise ValueError("--base does not go with --resume: the resumed model already started from its base")
    if args.base and shape:
        raise ValueError(f"--{shape[0].replace('_', '-')} cannot change with --base: the model's shape and "
                         "vocabulary come from the base")
    if args.base:
        return args.base
    cached = default_base_path()
    return str(cached) if cached.is_file() and not (args.no_base or args.resume or shape) else None


def _continued_model(args: argparse.Namespace) -> str | None:
    """The model `cllm train` continues: --continue-from, else the workspace's model when --out is not given and it
    is there; None with --fresh, --resume or --base, or when that model cannot be continued (another workspace, a
    shape flag other than the model's; said on stderr, unless the default model is simply absent). The continued
    run keeps the model's tokenizer, so --vocab-size does not count. ValueError for flags that contradict."""
    import os

    from cllm.engine.paths import default_model_path
    from cllm.engine.train.loop import continuable

    for other in ("fresh", "resume", "base"):
        if args.continue_from and getattr(args, other):
            raise ValueError(f"--continue-from and --{other} contradict each other: give one")
    if args.fresh or args.resume or args.base:
        return None
    candidate = args.continue_from or (None if args.out else str(default_model_path(args.path)))
    if candidate is None or not (args.continue_from or os.path.isfile(candidate)):
        return None
    shape = {field: getattr(args, flag) for flag, (field, _, _) in _MODEL_FLAGS.items()  # the tokenizer is kept:
             if flag in SHAPE_OPTIONS and flag != "vocab_size" and getattr(args, flag) is not None}  # no --vocab-size
    reason = continuable(candidate, args.path, shape)
    if reason is not None:
        print(f"cllm train: starting afresh: {reason}", file=sys.stderr)
        return None
    return candidate


def _explicit_settings(args: argparse.Namespace) -> set[str]:
    """ModelConfig/TrainConfig field names the user set by flag: the engine's time-budget policy leaves them alone."""
    model = {field for flag, (field, _, _) in _MODEL_FLAGS.items() if getattr(args, flag) is not None}
    return model | {flag for flag in _TRAIN_FLAGS if getattr(args, flag) is not None}


def _train_reporter(as_json: bool):
    """An on_event callback: JSON Lines on stdout (the events' to_json(), engine/events.py), or a tqdm bar and
    epoch lines on stderr. Returns (callback, close)."""
    import json

    from tqdm import tqdm

    from cllm.engine.data.corpus import skip_summary
    from cllm.engine.events import EpochEvent, PhaseEvent, StartEvent, StepEvent

    from ..words import time_left

    if as_json:
        def emit(event: TrainingEvent) -> None:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
            sys.stdout.flush()
        return emit, lambda: None
    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True, disable=None)
    budgeted = False  # under a time budget tqdm's own ETA (from the schedule's steps) is not the whole story
    phases: dict[str, float] = {}

    def show(event: TrainingEvent) -> None:
        nonlocal budgeted
        if isinstance(event, PhaseEvent) and event.phase != "train":
            _show_phase(bar, event, phases)
        elif isinstance(event, StartEvent):
            c = event.corpus
            bar.write(f"{c['files']:,} files ({c['c_files']:,} .c, {c['h_files']:,} .h), {c['lines']:,} lines, "
                      f"{c['bytes']:,} bytes; {event.train_files} train / {event.val_files} held out; "
                      f"{event.tokens:,} tokens, vocab {event.vocab_size:,}, {event.params:,} parameters")
            if event.skipped:
                bar.write(skip_summary(skipped.reason for skipped in event.skipped))
            if event.auto:
                fields = event.to_json()
                values = {**fields, **fields["settings"]}
                picked = ", ".join(f"{name} {values.get(name)}" for name in event.auto)
                bar.write(f"time budget: picked {picked} for this workspace (flags override)")
            bar.reset(total=event.total_steps)
            bar.update(event.step)
            bar.set_description(f"{event.spheres} spheres · {event.threads} threads")
            budgeted = event.settings.time_budget is not None
        elif isinstance(event, StepEvent):
            if event.total_steps != bar.total:  # the schedule was fitted to --time-budget
                bar.total = event.total_steps
            bar.update(event.step - bar.n)
            left = f" · {time_left(event.seconds_remaining)}" if budgeted else ""
            bar.set_postfix_str(f"{event.tokens_per_second:,.0f} tok/s · loss {event.loss:.3f}{left}")
        elif isinstance(event, EpochEvent):
            bar.update(event.step - bar.n)
            val = "" if event.val_bits_per_byte is None else f", held-out {event.val_bits_per_byte:.3f} bits/byte"
            bar.write(f"epoch {event.epoch}: train loss {event.train_loss:.3f}{val}")
    return show, bar.close


def _show_phase(bar, event, started: dict[str, float]) -> None:
    """The bar follows a phase before training (files or bytes; `started` holds when each phase shown so far
    began); a line on stderr when it ends."""
    import time

    if event.phase not in started:
        started[event.phase] = time.monotonic()
        bar.reset(total=event.total)
        bar.unit, bar.unit_scale = event.unit, event.unit == "bytes"
        bar.set_description(event.phase)
    bar.total = event.total
    bar.update(event.done - bar.n)
    if event.done == event.total and event.done:  # an empty phase says nothing the error does not
        bar.write(f"{event.phase}: {event.done:,} {event.unit} in {time.monotonic() - started[event.phase]:.1f} s",
                  file=sys.stderr)
        bar.unit, bar.unit_scale = "step", False


def _cmd_train(args: argparse.Namespace) -> int:
    """Train on the C files under PATH; Ctrl-C (or SIGTERM) stops at the next step with the checkpoint kept, a
    second one at once (exit 130 either way)."""
    import json
    import logging
    import os
    import signal
    import threading

    from cllm.engine import TrainError, train
    from cllm.engine.train.cluster import ClusterAuthError
    from cllm.engine.config import CorpusConfig
    from cllm.engine.errors import CllmError
    from cllm.engine.events import FailedEvent, StartEvent
    from cllm.engine.paths import acquire_training_lock, default_model_path, release_training_lock
    from cllm.engine.train.spheres import SphereError
    from cllm.engine.train.loop import TrainCancelled

    from . import ray_driver
    from ..words import exact_match

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

    def fail(message: str, code: int) -> int:
        if args.json:
            print(json.dumps(FailedEvent(message=message).to_json()), flush=True)
        print(f"cllm train: error: {message}", file=sys.stderr)
        return code

    if not os.path.isdir(args.path):
        return fail(f"{args.path} is not a folder (expected a workspace of C code)", 2)
    if args.out is not None and os.path.isdir(args.out):
        example = os.path.join(args.out, "model.cllm")
        return fail(f"--out {args.out} is a folder: give the model file to write, e.g. {example}", 2)
    try:
        model_cfg, train_cfg = _train_configs(args)
        if args.ray is not None:
            from cllm.engine.train.cluster import check_address

            check_address(args.ray)  # Ray missing or no cluster there fails now, not after the tokenization
        continue_from = _continued_model(args)
        base = None if continue_from else _chosen_base(args)
        lock = acquire_training_lock(args.path)
    except ClusterAuthError as exc:  # not a bad command line: the cluster wants another token
        return fail(str(exc), 1)
    except (ValueError, CllmError, OSError) as exc:
        return fail(str(exc), 2)
    if args.ray is not None and ray_driver.CHILD_ENV not in os.environ:
        try:  # Ray may end its driver process by itself: the training runs in a child that this one watches
            code = ray_driver.run_child(args.argv, None if lock is None else lock.lock_file)
        finally:
            if lock is not None:
                release_training_lock(lock)
        if code is None:
            return fail("the Ray cluster ended the training process (this machine's Ray node or the head node is gone; "
                        "the last checkpoint, if any, is intact)", 1)
        return code
    out = args.out or str(default_model_path(args.path))
    cancel = threading.Event()

    def on_signal(*_) -> None:
        """First signal: stop after this step and keep the checkpoint; a second one: stop now."""
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller handles interruption
            pass
    show, close = _train_reporter(args.json)

    def report(event: TrainingEvent) -> None:
        if base and not args.json and isinstance(event, StartEvent):  # the base loaded: say which
            print(f"fine-tuning the base model {base} (--no-base trains from scratch)", file=sys.stderr)
        if continue_from and not args.json and isinstance(event, StartEvent):
            print(f"continuing the model {continue_from} (--fresh starts over)", file=sys.stderr)
        show(event)
    try:
        done = train(args.path, model_cfg, train_cfg, out, report, resume=args.resume, cancel=cancel,
                     explicit=_explicit_settings(args), corpus_config=CorpusConfig(gitignore=not args.no_gitignore),
                     cluster=args.ray, base=base, continue_from=continue_from)
    except TrainCancelled as exc:
        return fail(str(exc), 130)
    except SphereError as exc:
        return fail(f"{exc} (the last checkpoint, if any, is intact)", 1)
    except CllmError as exc:
        return fail(str(exc), 2 if isinstance(exc, TrainError) else 1)
    except MemoryError:
        return fail("out of memory: try a smaller --batch-size, --seq-len or model", 1)
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename or ''} (check free disk space and permissions)", 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    finally:
        close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if lock is not None:
            release_training_lock(lock)
    if args.json:
        report(done)
    else:
        bpb = "" if done.val_bits_per_byte is None else f", held-out {done.val_bits_per_byte:.3f} bits/byte"
        if done.line_exact_match is not None:
            bpb += f", {exact_match(done.line_exact_match)}"
        print(f"{done.stop_reason}: {done.steps} steps, {done.tokens:,} tokens in {done.seconds:.0f} s "
              f"({done.tokens_per_second:,.0f} tok/s, {done.threads} thread{'s' * (done.threads != 1)}, load imbalance "
              f"{done.load_imbalance:.1%}, sync overhead {done.sync_overhead:.1%}){bpb}; "
              f"{done.corpus_fraction:.1%} of the corpus's windows seen ({done.corpus_seen:.0%} of the corpus in the "
              f"files this model's runs trained on); model: {done.checkpoint}")
    return 130 if done.stop_reason == "cancelled" else 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """Build a base model from the C under PATH... (default: the system's headers and sources)."""
    import json
    import os
    from dataclasses import replace

    from cllm.engine import TrainError
    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.data.corpus import format_stats, stats
    from cllm.engine.errors import CllmError
    from cllm.engine.events import FailedEvent
    from cllm.engine.paths import default_base_path
    from cllm.engine.train.pretrain import earlier_manifest, pretrain, scan_base_corpus

    def fail(message: str, code: int) -> int:
        if args.json:
            print(json.dumps(FailedEvent(message=message).to_json()), flush=True)
        print(f"cllm pretrain: error: {message}", file=sys.stderr)
        return code

    flags = ("time_budget", "max_steps", "epochs", "seed", "threads")
    train_cfg = replace(TrainConfig(), **{f: getattr(args, f) for f in flags if getattr(args, f) is not None})
    shape = {"vocab_size": "vocab_size", "position_encoding": "positions"}  # flag: ModelConfig field
    model_cfg = replace(ModelConfig(), **{field: getattr(args, f) for f, field in shape.items()
                                          if getattr(args, f) is not None})
    explicit = {f for f in flags if getattr(args, f) is not None} | {field for f, field in shape.items()
                                                                     if getattr(args, f) is not None}
    if args.out is not None and os.path.isdir(args.out):
        return fail(f"--out {args.out} is a folder: give the model file to write, e.g. "
                    f"{os.path.join(args.out, 'base.cllm')}", 2)
    out = args.out or str(default_base_path())
    if args.continue_from and (explicit & set(shape.values())):
        return fail("--continue-from keeps the base's vocabulary and positions: drop --vocab-size and "
                    "--position-encoding", 2)
    try:
        if args.continue_from:
            earlier_manifest(args.continue_from)  # refused before the scan, in one line
        found = scan_base_corpus(args.paths)
        if found.documents and not args.json:
            print(f"base corpus: {format_stats(stats(found.documents))} under {', '.join(found.roots) or '-'}; "
                  f"{len(found.skipped):,} files left out (C++, duplicates, ...)", file=sys.stderr)
        report, close = _train_reporter(args.json)
        try:
            done = pretrain(found, model_cfg, train_cfg, out, report, explicit=explicit,
                            continue_from=args.continue_from)
        finally:
            close()
    except CllmError as exc:
        return fail(str(exc), 2 if isinstance(exc, TrainError) else 1)
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename or ''} (check free disk space and permissions)", 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    if args.json:
        report(done)
    else:
        print(f"{done.stop_reason}: {done.steps} steps, {done.tokens:,} tokens in {done.seconds:.0f} s; "
              f"base model: {out}")
    return 0


def _cmd_complete(args: argparse.Namespace) -> int:
    """Complete one prompt (--prompt, or --file's bytes before --offset) or every line of a --batch file.

    The text after --offset is never read: it may hold the answer. Only an explicit --suffix (or a batch line's
    "suffix") is used as the text after the cursor. Paths in batch lines are relative to the current folder."""
    import json
    import math

    from cllm.engine import CompletionOptions, ServedModel

    def fail(message: str, code: int) -> int:
        print(f"cllm complete: error: {message}", file=sys.stderr)
        return code

    if args.offset is not None and args.file is None:
        return fail("--offset only goes with --file", 2)
    if args.file is not None and args.offset is None:
        return fail("--file needs --offset BYTES (the cursor position in the file)", 2)
    if args.batch is not None and args.suffix is not None:
        return fail('--suffix does not apply to --batch (give each line its own "suffix")', 2)
    defaults = CompletionOptions()
    options = CompletionOptions(
        max_tokens=defaults.max_tokens if args.max_tokens is None else args.max_tokens,
        multiline=args.multiline,
        temperature=defaults.temperature if args.temperature is None else args.temperature,
        max_ms=math.inf,  # the command line waits for the whole suggestion
    )
    try:
        options.validate()
        prefix = args.prompt if args.file is None else _complete_read_prefix(args.file, args.offset)
    except ValueError as exc:
        return fail(str(exc), 2)
    served = ServedModel.open(args.model)
    try:
        served.build()  # the workspace cache model, as the servers build it
        if args.batch is not None:
            return _complete_batch(served, args.batch, options, args.json)
        path = None if args.file is None else _complete_doc_path(args.file, served.model)
        result = served.complete(prefix, args.suffix or "", options, path=path)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    if args.json:
        print(json.dumps({"completion": result.text, "tokens": result.tokens, "stop_reason": result.stop_reason,
                          "ms": round(result.ms, 3)}))
    else:
        print(result.text)
    return 0


def _complete_read_prefix(file: str, offset: int) -> str:
    """The text of `file` before byte `offset`, reading nothing after it; ValueError saying what is wrong."""
    import os
    import stat

    try:
        info = os.stat(file)
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"{file} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read below
            raise ValueError(f"{file} is not a regular file")
        size = info.st_size
        if not 0 <= offset <= size:
            raise ValueError(f"offset {offset} is outside {file}, which has {size} bytes (valid: 0..{size})")
        with open(file, "rb") as f:
            data = f.read(offset)
    except OSError as exc:
        raise ValueError(f"cannot read {file}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            raise ValueError(f"offset {offset} falls inside a multi-byte UTF-8 character of {file}") from exc
        raise ValueError(f"{file} is not UTF-8 text (invalid byte at offset {exc.start})") from exc


def _complete_doc_path(file: str, model) -> str:
    """The path announced in the prompt header: relative to the model's workspace when the file lies in it."""
    from pathlib import Path

    workspace = model.metadata.workspace
    resolved = Path(file).resolve()
    if isinstance(workspace, str) and workspace:
        try:
            return resolved.relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return resolved.name if Path(file).is_absolute() else Path(file).as_posix()


def _complete_batch(served, batch: str, options, full: bool) -> int:
    """Answer each {"id", "file", "offset", ["suffix"]} line with {"id", "completion"} (plus tokens,
    stop_reason and ms with --json), or {"id", "error"} for a line that cannot be completed."""
    import json

    try:
        if batch == "-":
            lines = sys.stdin.readlines()
        else:
            with open(batch, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cllm complete: error: cannot read batch file {batch}: {exc}", file=sys.stderr)
        return 2
    failed = total = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        total += 1
        request_id = None
        try:
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
            if not isinstance(request, dict):
                raise ValueError("a batch line must be a JSON object")
            request_id = request.get("id")
            file, offset, suffix = request.get("file"), request.get("offset"), request.get("suffix", "")
            if not isinstance(file, str) or not file:
                raise ValueError('"file" must be a path')
            if not isinstance(offset, int) or isinstance(offset, bool):
                raise ValueError('"offset" must be an integer number of bytes')
            if not isinstance(suffix, str):
                raise ValueError('"suffix" must be a string')
            prefix = _complete_read_prefix(file, offset)
            path = _complete_doc_path(file, served.model)
            result = served.complete(prefix, suffix, options, path=path)
            out = {"id": request_id, "completion": result.text}
            if full:
                out.update(tokens=result.tokens, stop_reason=result.stop_reason, ms=round(result.ms, 3))
        except ValueError as exc:
            failed += 1
            out = {"id": request_id, "error": f"line {number}: {exc}"}
        print(json.dumps(out), flush=True)
    if failed:
        print(f"cllm complete: {failed} of {total} batch lines failed", file=sys.stderr)
    return 0


def _model_info(path: str) -> dict:
    """Everything `cllm info` reports about a model file (all checksums verified, optimizer state included)."""
    import os

    from cllm.engine.model.checkpoint import load_checkpoint, weights_sha256
    from cllm.engine.config import to_dict

    ckpt = load_checkpoint(path, with_optimizer=True)
    return {
        "path": os.path.abspath(path),
        "file_bytes": os.path.getsize(path),
        "model_config": to_dict(ckpt.model_config),
        "parameters": int(ckpt.params.size),
        "weights_sha256": weights_sha256(ckpt),
        "resumable": ckpt.optimizer is not None,
        "optimizer_step": None if ckpt.optimizer is None else ckpt.optimizer["step"],
        "metadata": ckpt.metadata,
    }


_INFO_FIELDS = {
    "created": "created", "workspace": "workspace", "files": "files", "train_files": "train files",
    "val_files": "held-out files", "tokens": "tokens", "trained_tokens": "trained tokens", "epochs": "epochs",
    "steps": "steps", "val_bits_per_byte": "held-out bits/byte", "spheres": "spheres", "threads": "threads",
    "seq_len": "seq_len",
}


def _info_value(value) -> str:
    """A metadata value for `cllm info` text: lists as their length, numbers with separators."""
    if isinstance(value, list):
        return f"{len(value):,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return str(value)


def _format_info(info: dict, meta: TrainingMetadata) -> str:
    """Readable `cllm info` text: the model, then the training record `meta` (a TrainingMetadata; long lists
    summarised)."""
    c = info["model_config"]
    rows = [
        ("weights sha256", info["weights_sha256"]),
        ("model", f"{info['parameters']:,} parameters: vocab {c['vocab_size']:,}, d_model {c['d_model']}, "
                  f"{c['n_layers']} layers, {c['n_heads']} heads, ffn {c['d_ff']}, context {c['max_seq_len']}, "
                  f"{c['positions']} positions, dropout {c['dropout']}"),
        ("resumable", f"yes (optimizer state at step {info['optimizer_step']})" if info["resumable"] else "no"),
    ]
    rows += [(label, _info_value(getattr(meta, key))) for key, label in _INFO_FIELDS.items()
             if getattr(meta, key) is not None]
    if meta.last_loss is not None:
        rows.append(("final train loss", f"{meta.last_loss:.4f}"))
    speed = meta.sphere_stats
    if speed is not None:
        rows.append(("throughput", f"{speed.tokens_per_second:,.0f} tokens/s, load imbalance "
                                   f"{speed.load_imbalance:.1%}, sync overhead {speed.sync_overhead:.1%}"))
    if meta.base is not None:
        rows.append(("fine-tuned from", f"{meta.base.path} (weights sha256 {meta.base.weights_sha256})"))
    if meta.base_share is not None:
        rows.append(("base weights kept", f"{meta.base_share:.0%} of the stored weights are the base's (blended back)"))
    if meta.replay_files:
        rows.append(("replayed base files", f"{len(meta.replay_files):,}"))
    if meta.manifest:
        rows.append(("base corpus", f"{len(meta.manifest):,} files in its manifest (a base model)"))
    if meta.train_config:
        rows.append(("train config", _info_value(meta.train_config)))
    header = f"{info['path']}  ({info['file_bytes'] / 1e6:.1f} MB)"
    return "\n".join([header] + [f"  {label:<18} {text}" for label, text in rows])


def _cmd_info(args: argparse.Namespace) -> int:
    """Show a model's configuration, training metadata and weights_sha256 (text, or one JSON object with --json)."""
    import json

    from cllm.engine.events import TrainingMetadata

    info = _model_info(args.model)
    meta = TrainingMetadata.from_json(info["metadata"])
    print(json.dumps(info, indent=2) if args.json else _format_info(info, meta))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a model on its held-out files (or --on PATH) next to the xz and 5-gram baselines, and next to the
    base it was fine-tuned from (and with --compare-scratch a scratch model of the same budget); files the base
    learned from are left out."""
    import json
    import tempfile

    from cllm.engine import DEFAULT_POSITIONS, EvalError, evaluate, evaluation_files, format_table, load_model
    from cllm.engine.eval.evaluate import format_comparison, leave_out_base_files, recorded_base
    from cllm.engine.train.pretrain import train_scratch_twin

    positions = DEFAULT_POSITIONS if args.positions is None else args.positions

    def progress(stage: str, done: int, total: int) -> None:  # a live counter on a terminal, nothing in logs
        print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        model = load_model(args.model)
        documents, train_documents, notes = evaluation_files(model, args.on)
        if notes.get("missing_files"):
            print(f"cllm eval: {notes['missing_files']} held-out files no longer exist; evaluating the rest", file=sys.stderr)
        base, why_not = recorded_base(model)
        if why_not:
            print(f"cllm eval: {why_not}", file=sys.stderr)
        documents, left_out = leave_out_base_files(documents, model, base)
        if not documents:
            raise EvalError(f"all {len(left_out)} files are in the base model's corpus: nothing left to score")
        if left_out:
            print(f"cllm eval: warning: {len(left_out)} of the files are in the base model's corpus and are left out "
                  f"of the scores: {', '.join(left_out[:5])}{' ...' if len(left_out) > 5 else ''}", file=sys.stderr)

        def measure(which) -> dict:
            return evaluate(which, documents, train_documents, positions=positions, prefix_only=args.prefix_only,
                            progress=progress if sys.stderr.isatty() else None)

        report = measure(model)
        report["left_out"] = left_out
        others = {"base": base} if base is not None else {}
        with tempfile.TemporaryDirectory(prefix="cllm-scratch-") as tmp:
            if args.compare_scratch:
                print("cllm eval: training the scratch model (same time budget)...", file=sys.stderr)
                others["scratch"] = train_scratch_twin(model, f"{tmp}/scratch.cllm")
            report.update({name: measure(other) for name, other in others.items()})
    except OSError as exc:
        print(f"cllm eval: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        if others:
            print("\n" + format_comparison({"this model": report, **{name: report[name] for name in others}}))
    return 0


def _cmd_lsp(args: argparse.Namespace) -> int:
    """Run the language server on stdio (optionally also the HTTP API of the first workspace folder), alone or
    with another server behind the same connection (--with)."""
    if args.with_server is not None:
        if not args.with_server:
            print("cllm lsp: error: --with needs a server command, e.g. --with clangd", file=sys.stderr)
            return 2
        from cllm.server.proxy import run_proxy

        return run_proxy(args.with_server, [] if args.http_port is None else ["--http-port", str(args.http_port)])
    from cllm.server.lsp import run_stdio

    return run_stdio(http_port=args.http_port)


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve one workspace over HTTP (API and dashboard) until interrupted."""
    import logging
    from pathlib import Path

    from cllm.server.http.app import run_server
    from cllm.server.workspace import Workspace

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    root = Path(args.workspace).expanduser()
    if not root.is_dir():
        print(f"cllm serve: error: workspace {root} is not a folder", file=sys.stderr)
        return 2
    settings = None if args.index_memory_mb is None else {"indexMemoryMB": args.index_memory_mb}
    workspace = Workspace(root, settings, model_dir=args.model_dir)
    try:
        run_server(workspace, args.host, args.port, allow_remote=args.allow_remote, api_key=args.api_key)
    except ValueError as exc:
        print(f"cllm serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cllm serve: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        workspace.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full `cllm` argument parser."""
    parser = _Parser(prog="cllm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _pretrain_parser, _complete_parser, _info_parser, _eval_parser, _lsp_parser,
                _serve_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cllm` console script: the engine's errors end in one line on stderr (exit status 1),
    a closed output pipe (`cllm info MODEL | head`) in a quiet exit."""
    from cllm.engine.errors import CllmError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (its one-line error already printed)
        return done.code
    args.argv = sys.argv[1:] if argv is None else list(argv)  # `cllm train --ray` runs them again in a child
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows here, while it can still be handled
    except BrokenPipeError:
        _drop_stdout()
        return _SIGPIPE_STATUS
    except CllmError as exc:
        print(f"cllm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return code


_SIGPIPE_STATUS = 128 + 13  # what a shell reports for a Unix tool killed by SIGPIPE


def _drop_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush of the unwritten rest of its
    buffer does not raise again on the closed pipe."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

