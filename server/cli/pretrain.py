"""`cllm pretrain [PATH...]`: build the base model that `cllm train` fine-tunes, from the machine's own C headers
and sources (or the folders given), into the user's cache folder where the trainer and the editors find it."""

from __future__ import annotations

import argparse
import sys

from .errors import INTERRUPTED_STATUS, BadInput
from .flags import MODEL_FLAGS, TRAIN_FLAGS, add_config_flags, add_json_events_flag, check_out_flag, command_flags
from .progress import train_reporter
from .request import add_request_flag, apply_request
from .signals import cancelled_by_signals


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm pretrain` subcommand's arguments."""
    p = sub.add_parser("pretrain", help="build a base model from the machine's own C (or the folders given)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders of C code; none: /usr/include, /usr/local/include and /usr/src")
    p.add_argument("--out", help="model file to write (default: base.cllm in the user's cache folder, where "
                                 "`cllm train` and the editors find it)")
    add_config_flags(p, command_flags("pretrain"))
    p.add_argument("--continue-from", metavar="FILE",
                   help="extend this base (its weights, optimizer state and vocabulary) with a new run, the files it "
                        "has not trained on first; --out may name the same file (default: the base shipped in the "
                        "package, or random weights with --vocab-size or --position-encoding)")
    add_json_events_flag(p)
    add_request_flag(p)
    return p


# The shape flags `cllm pretrain` takes (flag: ModelConfig field) and its TrainConfig flags
_SHAPE = {flag: field for flag, (field, _, _) in MODEL_FLAGS.items() if flag in command_flags("pretrain")}
_TRAIN = tuple(flag for flag in TRAIN_FLAGS if flag in command_flags("pretrain"))


def run(args: argparse.Namespace) -> int:
    """Build a base model from the C under PATH... (default: the system's headers and sources); Ctrl-C (or
    SIGTERM) stops at the next step with a resumable base kept (`--continue-from` it), a second one at once (exit
    130 either way)."""
    import json
    from dataclasses import replace

    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.data.corpus import format_stats, stats
    from cllm.engine.paths import default_base_path
    from cllm.engine.train.pretrain import earlier_manifest, pretrain, scan_base_corpus
    from cllm.engine.train.start import decide_start

    if args.request is not None:
        apply_request(args, "pretrain")
    train_cfg = replace(TrainConfig(), **{f: getattr(args, f) for f in _TRAIN if getattr(args, f) is not None})
    model_cfg = replace(ModelConfig(), **{field: getattr(args, f) for f, field in _SHAPE.items()
                                          if getattr(args, f) is not None})
    explicit = {f for f in _TRAIN if getattr(args, f) is not None} | {field for f, field in _SHAPE.items()
                                                                      if getattr(args, f) is not None}
    check_out_flag(args.out, "base.cllm")
    out = args.out or str(default_base_path())
    if args.continue_from and (explicit & set(_SHAPE.values())):
        raise BadInput("--continue-from keeps the base's vocabulary and positions: drop --vocab-size and "
                       "--position-encoding")
    if args.continue_from:
        earlier_manifest(args.continue_from)  # refused before the scan, in one line
    start = decide_start(_start_request(args, out, explicit), verify=False)
    found = scan_base_corpus(args.paths)
    if found.documents and not args.json:
        print(f"base corpus: {format_stats(stats(found.documents))} under {', '.join(found.roots) or '-'}; "
              f"{len(found.skipped):,} files left out (C++, duplicates, ...)", file=sys.stderr)
    report, close = train_reporter(args.json)
    try:
        with cancelled_by_signals() as cancel:
            done = pretrain(found, model_cfg, train_cfg, out, report, cancel=cancel, explicit=explicit, start=start)
    finally:
        close()
    if args.json:
        print(json.dumps(done.to_json()), flush=True)
    else:
        print(f"{done.stop_reason}: {done.steps} steps, {done.tokens:,} tokens in {done.seconds:.0f} s; "
              f"base model: {out}")
    return INTERRUPTED_STATUS if done.stop_reason == "cancelled" else 0


def _start_request(args: argparse.Namespace, out: str, explicit: set[str]):
    """What a pretraining run starts from: --continue-from, else the base shipped in the package (its vocabulary
    and positions: the machine's own C goes on from what it knows), else random weights, which --vocab-size or
    --position-encoding also ask for."""
    from cllm.engine.train.shipped import shipped_base
    from cllm.engine.train.start import StartRequest

    shipped = None if args.continue_from or explicit & set(_SHAPE.values()) else shipped_base()
    return StartRequest(workspace=out, continue_from=args.continue_from, base=shipped and str(shipped),
                        no_base=shipped is None)
