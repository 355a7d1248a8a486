"""`cllm train PATH`: train a model on a workspace's C files, as a few named steps: check the command line and
decide what the run starts from, take the workspace's training lock, run in a child under --ray (Ray may end its
driver process by itself, see ray_driver.py), stop cleanly on Ctrl-C or SIGTERM, and report."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import SHAPE_OPTIONS
from .errors import BadInput, CommandError, checking_input
from .flags import MODEL_FLAGS, TRAIN_FLAGS, add_config_flags, add_json_events_flag, check_out_flag, command_flags
from .progress import train_reporter
from .request import add_request_flag, apply_request
from .signals import cancelled_by_signals

if TYPE_CHECKING:
    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.events import DoneEvent, TrainingEvent


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm train` subcommand's arguments."""
    p = sub.add_parser("train", help="train a model on the C files under PATH",
                       description="Train a model on the C files under PATH (Ctrl-C stops and keeps the checkpoint).")
    p.add_argument("path", nargs="?", help="folder of C code to learn from (or in the --request)")
    p.add_argument("--out", help="model file to write (default: the workspace's model folder)")
    add_config_flags(p, command_flags("train"))
    p.add_argument("--resume", metavar="FILE", help="continue from this checkpoint, with its settings as defaults (default: start afresh)")
    p.add_argument("--continue-from", metavar="FILE",
                   help="start a new run from this model of the same workspace (its weights and tokenizer; a time "
                        "budget trains on the files it has not seen first) (default: the workspace's model, when "
                        "--out is not given)")
    p.add_argument("--base", metavar="FILE",
                   help="fine-tune this base model (default: the cached base of `cllm pretrain`, when there is one)")
    p.add_argument("--no-base", action="store_true", help="train from scratch even when a base model exists")
    p.add_argument("--focus", metavar="FILE", action="append",
                   help="a file under PATH to learn most from (repeatable): it trains even when it would be held "
                        "out, and makes at least half of the training text (the editors' learning from saves) "
                        "(default: every file alike)")
    add_json_events_flag(p)
    add_request_flag(p)
    p.add_argument("--ray", metavar="ADDRESS", help="run the spheres as actors on the Ray cluster at ADDRESS "
                   "(HOST:PORT, or 'auto' for this machine's); same weights as threads; needs pip install "
                   "'cllm[cluster]' (default: threads on this machine)")
    return p


def _train_configs(args: argparse.Namespace):
    """ModelConfig and TrainConfig from the defaults (or the resumed checkpoint's) overridden by the flags."""
    from dataclasses import replace

    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.train.loop import load_train_config

    model_overrides = {field: getattr(args, flag) for flag, (field, _, _) in MODEL_FLAGS.items()
                       if getattr(args, flag) is not None}
    train_overrides = {flag: getattr(args, flag) for flag in TRAIN_FLAGS if getattr(args, flag) is not None}
    if args.resume and model_overrides:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in MODEL_FLAGS if getattr(args, flag) is not None)
        raise ValueError(f"{flags} cannot change when resuming: the model's shape comes from {args.resume}")
    base = load_train_config(args.resume) if args.resume else TrainConfig()
    return replace(ModelConfig(), **model_overrides), replace(base, **train_overrides)


def _run_start(args: argparse.Namespace):
    """How `cllm train` starts (engine/train/start.py decide_start): --resume, --continue-from or the workspace's
    model when --out is not given, --base or the best base unless --no-base or a shape flag, else from scratch.
    A model that cannot be continued is said on stderr. ValueError for flags that contradict each other."""
    from cllm.engine.paths import default_model_path
    from cllm.engine.train.start import StartRequest, decide_start

    shape = tuple(flag for flag in SHAPE_OPTIONS if getattr(args, flag) is not None)
    kept = {field: getattr(args, flag) for flag, (field, _, _) in MODEL_FLAGS.items()  # the tokenizer is kept:
            if flag in shape and flag != "vocab_size"}  # no --vocab-size
    request = StartRequest(workspace=args.path, resume=args.resume, continue_from=args.continue_from, fresh=args.fresh,
                           base=args.base, no_base=args.no_base,
                           own_model=None if args.out else default_model_path(args.path), shape=shape, kept_shape=kept)
    return decide_start(request, refused=lambda reason: print(f"cllm train: starting afresh: {reason}", file=sys.stderr))


def _explicit_settings(args: argparse.Namespace) -> set[str]:
    """ModelConfig/TrainConfig field names the user set by flag: the engine's time-budget policy leaves them alone."""
    model = {field for flag, (field, _, _) in MODEL_FLAGS.items() if getattr(args, flag) is not None}
    return model | {flag for flag in TRAIN_FLAGS if getattr(args, flag) is not None}


@dataclass
class _Plan:
    """What `cllm train` decided before training: the settings, what the run starts from, the lock it holds."""

    model_config: ModelConfig
    train_config: TrainConfig
    start: Any  # engine/train/start.py RunStart
    lock: Any  # the workspace's training lock (engine/paths.py), None when the parent process holds it


def run(args: argparse.Namespace) -> int:
    """Train on the C files under PATH; Ctrl-C (or SIGTERM) stops at the next step with the checkpoint kept, a
    second one at once (exit 130 either way)."""
    import logging

    from cllm.engine.paths import release_training_lock

    from . import ray_driver

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if args.request is not None:
        apply_request(args, "train")
    _check_paths(args)
    plan = _plan(args)
    try:
        if args.ray is not None and ray_driver.CHILD_ENV not in os.environ:
            return _train_in_child(args, plan.lock)
        done = _train(args, plan)
    finally:
        if plan.lock is not None:
            release_training_lock(plan.lock)
    _report_done(args, done)
    return 130 if done.stop_reason == "cancelled" else 0


def _check_paths(args: argparse.Namespace) -> None:
    """BadInput unless PATH is a folder, --out (when given) a file cllm may write (check_out_flag) and every
    --focus a path under PATH (made relative to it)."""
    if args.path is None:
        raise BadInput("give PATH, the folder of C code to learn from (or --request FILE)")
    if not os.path.isdir(args.path):
        raise BadInput(f"{args.path} is not a folder (expected a workspace of C code)")
    check_out_flag(args.out, "model.cllm")
    args.focus = [_under(args.path, focus) for focus in args.focus or ()]


def _under(root: str, path: str) -> str:
    """`path` (absolute, or relative to `root`) as the '/'-separated path under `root` documents have; BadInput
    for a path outside it."""
    root_path = Path(root).resolve()
    try:
        return (root_path / path).resolve().relative_to(root_path).as_posix()
    except (OSError, ValueError):
        raise BadInput(f"--focus {path} is not a file under {root}") from None


def _plan(args: argparse.Namespace) -> _Plan:
    """The settings and the model the run starts from, checked before the workspace's training lock is taken."""
    from cllm.engine.paths import acquire_training_lock

    with checking_input():
        model_config, train_config = _train_configs(args)
        if args.ray is not None:
            from cllm.engine.train.cluster import check_address

            check_address(args.ray)  # Ray missing or no cluster there fails now, not after the tokenization
        return _Plan(model_config, train_config, _run_start(args), acquire_training_lock(args.path))


def _train_in_child(args: argparse.Namespace, lock) -> int:
    """`cllm train --ray`: the same command line in a child process, which the training lock held here covers."""
    from . import ray_driver

    code = ray_driver.run_child(args.argv, None if lock is None else lock.lock_file)
    if code is None:
        raise CommandError("the Ray cluster ended the training process (this machine's Ray node or the head node "
                           "is gone; the last checkpoint, if any, is intact)", 1)
    return code


def _train(args: argparse.Namespace, plan: _Plan) -> DoneEvent:
    """The training run itself, with the progress shown and the signals stopping it."""
    from cllm.engine import train
    from cllm.engine.config import CorpusConfig
    from cllm.engine.paths import default_model_path

    out = args.out or str(default_model_path(args.path))
    show, close = train_reporter(args.json)
    try:
        with cancelled_by_signals() as cancel:
            return train(args.path, plan.model_config, plan.train_config, out, _announcing(args, plan, show),
                         cancel=cancel, explicit=_explicit_settings(args),
                         corpus_config=CorpusConfig(gitignore=not args.no_gitignore), cluster=args.ray,
                         start=plan.start, focus=args.focus)
    finally:
        close()


def _announcing(args: argparse.Namespace, plan: _Plan, show):
    """`show`, saying first (without --json) which base or model the run starts from once it has loaded."""
    from cllm.engine.events import StartEvent
    from cllm.engine.train.start import Continue, FromBase

    def report(event: TrainingEvent) -> None:
        if isinstance(plan.start, FromBase) and not args.json and isinstance(event, StartEvent):  # say which base
            print(f"fine-tuning the base model {plan.start.path} (--no-base trains from scratch)", file=sys.stderr)
        if isinstance(plan.start, Continue) and not args.json and isinstance(event, StartEvent):
            print(f"continuing the model {plan.start.path} (--fresh starts over)", file=sys.stderr)
        show(event)
    return report


def _report_done(args: argparse.Namespace, done: DoneEvent) -> None:
    """The run's end: its "done" event with --json, else one line of what it did and where the model is."""
    import json

    from ..words import exact_match

    if args.json:
        print(json.dumps(done.to_json()), flush=True)
        return
    bpb = "" if done.val_bits_per_byte is None else f", held-out {done.val_bits_per_byte:.3f} bits/byte"
    if done.line_exact_match is not None:
        bpb += f", {exact_match(done.line_exact_match)}"
    print(f"{done.stop_reason}: {done.steps} steps, {done.tokens:,} tokens in {done.seconds:.0f} s "
          f"({done.tokens_per_second:,.0f} tok/s, {done.threads} thread{'s' * (done.threads != 1)}, load imbalance "
          f"{done.load_imbalance:.1%}, sync overhead {done.sync_overhead:.1%}){bpb}; "
          f"{done.corpus_fraction:.1%} of the corpus's windows seen ({done.corpus_seen:.0%} of the corpus in the "
          f"files this model's runs trained on); model: {done.checkpoint}")
