"""The `cllm` command: train, pretrain, complete, info, eval, lsp, serve.

The argument names are a contract (scripts and editor integrations rely on them); each subcommand's handler
is a short function that delegates to the engine or the servers.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cllm.engine.events import TrainingEvent, TrainingMetadata


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on the C files under PATH")
    p.add_argument("path", help="folder of C code to learn from")
    p.add_argument("--out", help="model file to write (default: the workspace's model folder)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--time-budget", type=float, metavar="SECONDS")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="OS threads for the spheres (0 = one per core)")
    p.add_argument("--spheres", type=int, help="worker spheres (default 12)")
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--resume", metavar="FILE", help="continue from this checkpoint")
    p.add_argument("--base", metavar="FILE",
                   help="fine-tune this base model (default: the cached base of `cllm pretrain`, when there is one)")
    p.add_argument("--no-base", action="store_true", help="train from scratch even when a base model exists")
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(handler=_cmd_train)


def _pretrain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="build a base model from the machine's own C (or the folders given)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders of C code (default: /usr/include, /usr/local/include and /usr/src)")
    p.add_argument("--out", help="model file to write (default: base.cllm in the user's cache folder, where "
                                 "`cllm train` and the editors find it)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="OS threads for the spheres (0 = one per core)")
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(handler=_cmd_pretrain)


def _complete_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="complete code with a trained model")
    p.add_argument("model", help="a .cllm model file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text before the cursor")
    src.add_argument("--file", help="file whose bytes before --offset are the prompt")
    src.add_argument("--batch", metavar="IN.jsonl", help='lines of {"id", "file", "offset", ["suffix"]}')
    p.add_argument("--offset", type=int, help="cursor offset in bytes into --file")
    p.add_argument("--suffix", help="text after the cursor")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--multiline", action="store_true", help="continue while a block is open")
    p.add_argument("--temperature", type=float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_complete)


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model's configuration and training metadata")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_info)


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a model (bits per byte, line completion) against baselines")
    p.add_argument("model")
    p.add_argument("--on", metavar="PATH", help="evaluate on every C file under PATH (default: held-out files)")
    p.add_argument("--positions", type=int, help="line-completion positions to sample")
    p.add_argument("--compare-scratch", action="store_true",
                   help="also train a model from scratch with the same time budget and compare it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_eval)


def _lsp_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server on stdio")
    p.add_argument("--http-port", type=int, help="also serve the workspace over HTTP on this loopback port")
    p.set_defaults(handler=_cmd_lsp)


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the local model server (HTTP API and dashboard)")
    p.add_argument("--workspace", default=".", help="workspace folder (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--model-dir", help="folder holding or receiving the workspace's model.cllm")
    p.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    p.set_defaults(handler=_cmd_serve)


_MODEL_FLAGS = {"vocab_size": "vocab_size", "d_model": "d_model", "layers": "n_layers", "heads": "n_heads",
                "ffn": "d_ff", "dropout": "dropout"}
_TRAIN_FLAGS = ("epochs", "max_steps", "time_budget", "batch_size", "seq_len", "lr", "grad_accum", "seed",
                "threads", "spheres")


def _train_configs(args: argparse.Namespace):
    """ModelConfig and TrainConfig from the defaults (or the resumed checkpoint's) overridden by the flags."""
    from dataclasses import replace

    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.train import load_train_config

    model_overrides = {field: getattr(args, flag) for flag, field in _MODEL_FLAGS.items() if getattr(args, flag) is not None}
    train_overrides = {flag: getattr(args, flag) for flag in _TRAIN_FLAGS if getattr(args, flag) is not None}
    if args.resume and model_overrides:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in _MODEL_FLAGS if getattr(args, flag) is not None)
        raise ValueError(f"{flags} cannot change when resuming: the model's shape comes from {args.resume}")
    base = load_train_config(args.resume) if args.resume else TrainConfig()
    return replace(ModelConfig(), **model_overrides), replace(base, **train_overrides)


_SHAPE_FLAGS = ("vocab_size", "d_model", "layers", "heads", "ffn")  # fixed by a base model


def _chosen_base(args: argparse.Namespace) -> str | None:
    """The base model `cllm train` fine-tunes: --base, else the cached base when it exists and no shape flag asks
    for another model; None with --no-base or --resume. ValueError for flags that contradict each other."""
    from cllm.engine.paths import default_base_path

    shape = [flag for flag in _SHAPE_FLAGS if getattr(args, flag) is not None]
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


def _explicit_settings(args: argparse.Namespace) -> set[str]:
    """ModelConfig/TrainConfig field names the user set by flag: the engine's time-budget policy leaves them alone."""
    model = {field for flag, field in _MODEL_FLAGS.items() if getattr(args, flag) is not None}
    return model | {flag for flag in _TRAIN_FLAGS if getattr(args, flag) is not None}


def _train_reporter(as_json: bool):
    """An on_event callback: JSON Lines on stdout (the events' to_json(), engine/events.py), or a tqdm bar and
    epoch lines on stderr. Returns (callback, close)."""
    import json

    from tqdm import tqdm

    from cllm.engine.events import EpochEvent, StartEvent, StepEvent

    if as_json:
        def emit(event: TrainingEvent) -> None:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
            sys.stdout.flush()
        return emit, lambda: None
    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True, disable=None)

    def show(event: TrainingEvent) -> None:
        if isinstance(event, StartEvent):
            c = event.corpus
            bar.write(f"{c['files']:,} files ({c['c_files']:,} .c, {c['h_files']:,} .h), {c['lines']:,} lines, "
                      f"{c['bytes']:,} bytes; {event.train_files} train / {event.val_files} held out; "
                      f"{event.tokens:,} tokens, vocab {event.vocab_size:,}, {event.params:,} parameters")
            if event.auto:
                fields = event.to_json()
                values = {**fields, **fields["settings"]}
                picked = ", ".join(f"{name} {values.get(name)}" for name in event.auto)
                bar.write(f"time budget: picked {picked} for this workspace (flags override)")
            bar.reset(total=event.total_steps)
            bar.update(event.step)
            bar.set_description(f"{event.spheres} spheres · {event.threads} threads")
        elif isinstance(event, StepEvent):
            if event.total_steps != bar.total:  # the schedule was fitted to --time-budget
                bar.total = event.total_steps
            bar.update(event.step - bar.n)
            bar.set_postfix_str(f"{event.tokens_per_second:,.0f} tok/s · loss {event.loss:.3f}")
        elif isinstance(event, EpochEvent):
            bar.update(event.step - bar.n)
            val = "" if event.val_bits_per_byte is None else f", held-out {event.val_bits_per_byte:.3f} bits/byte"
            bar.write(f"epoch {event.epoch}: train loss {event.train_loss:.3f}{val}")
    return show, bar.close


def _cmd_train(args: argparse.Namespace) -> int:
    """Train on the C files under PATH; Ctrl-C (or SIGTERM) stops at the next step with the checkpoint kept, a
    second one at once (exit 130 either way)."""
    import json
    import logging
    import os
    import signal
    import threading

    from cllm.engine import CheckpointError, TrainError, train
    from cllm.engine.events import FailedEvent
    from cllm.engine.paths import WorkspaceBusy, acquire_training_lock, default_model_path
    from cllm.engine.spheres import SphereError

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
        base = _chosen_base(args)
        lock = acquire_training_lock(args.path)
    except (ValueError, CheckpointError, WorkspaceBusy, OSError) as exc:
        return fail(str(exc), 2)
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
    report, close = _train_reporter(args.json)
    if base and not args.json:
        print(f"fine-tuning the base model {base} (--no-base trains from scratch)", file=sys.stderr)
    try:
        done = train(args.path, model_cfg, train_cfg, out, report, resume=args.resume, cancel=cancel,
                     explicit=_explicit_settings(args), base=base)
    except (TrainError, CheckpointError) as exc:
        return fail(str(exc), 2 if isinstance(exc, TrainError) else 1)
    except SphereError as exc:
        return fail(f"{exc} (the last checkpoint, if any, is intact)", 1)
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
            lock.release()
    if args.json:
        report(done)
    else:
        bpb = "" if done.val_bits_per_byte is None else f", held-out {done.val_bits_per_byte:.3f} bits/byte"
        print(f"{done.stop_reason}: {done.steps} steps, {done.tokens:,} tokens in {done.seconds:.0f} s "
              f"({done.tokens_per_second:,.0f} tok/s, {done.threads} thread{'s' * (done.threads != 1)}, load imbalance "
              f"{done.load_imbalance:.1%}, sync overhead {done.sync_overhead:.1%}){bpb}; model: {done.checkpoint}")
    return 130 if done.stop_reason == "cancelled" else 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """Build a base model from the C under PATH... (default: the system's headers and sources)."""
    import json
    from dataclasses import replace

    from cllm.engine import CheckpointError, TrainError
    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.corpus import format_stats, stats
    from cllm.engine.events import FailedEvent
    from cllm.engine.paths import default_base_path
    from cllm.engine.pretrain import pretrain, scan_base_corpus
    from cllm.engine.spheres import SphereError

    def fail(message: str, code: int) -> int:
        if args.json:
            print(json.dumps(FailedEvent(message=message).to_json()), flush=True)
        print(f"cllm pretrain: error: {message}", file=sys.stderr)
        return code

    flags = ("time_budget", "max_steps", "epochs", "seed", "threads")
    train_cfg = replace(TrainConfig(), **{f: getattr(args, f) for f in flags if getattr(args, f) is not None})
    model_cfg = ModelConfig() if args.vocab_size is None else replace(ModelConfig(), vocab_size=args.vocab_size)
    explicit = {f for f in (*flags, "vocab_size") if getattr(args, f) is not None}
    out = args.out or str(default_base_path())
    try:
        found = scan_base_corpus(args.paths)
        if not args.json:
            print(f"base corpus: {format_stats(stats(found.documents))} under {', '.join(found.roots) or '-'}; "
                  f"{len(found.skipped):,} files left out (C++, duplicates, ...)", file=sys.stderr)
        report, close = _train_reporter(args.json)
        try:
            done = pretrain(found, model_cfg, train_cfg, out, report, explicit=explicit)
        finally:
            close()
    except (TrainError, CheckpointError) as exc:
        return fail(str(exc), 2 if isinstance(exc, TrainError) else 1)
    except SphereError as exc:
        return fail(str(exc), 1)
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

    from cllm.engine import CheckpointError, CompletionOptions, complete, load_model

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
        temperature=0.0 if args.temperature is None else args.temperature,
        max_ms=math.inf,  # the command line waits for the whole suggestion
    )
    try:
        options.validate()
        prefix = args.prompt if args.file is None else _complete_read_prefix(args.file, args.offset)
    except ValueError as exc:
        return fail(str(exc), 2)
    try:
        model = load_model(args.model)
    except CheckpointError as exc:
        return fail(str(exc), 1)
    try:
        if args.batch is not None:
            return _complete_batch(model, args.batch, options, args.json)
        path = None if args.file is None else _complete_doc_path(args.file, model)
        result = complete(model, prefix, args.suffix or "", options, path=path)
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

    try:
        if os.path.isdir(file):
            raise ValueError(f"{file} is a folder, not a file")
        size = os.path.getsize(file)
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

    workspace = model.metadata.get("workspace")
    resolved = Path(file).resolve()
    if isinstance(workspace, str) and workspace:
        try:
            return resolved.relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return resolved.name if Path(file).is_absolute() else Path(file).as_posix()


def _complete_batch(model, batch: str, options, full: bool) -> int:
    """Answer each {"id", "file", "offset", ["suffix"]} line with {"id", "completion"} (plus tokens,
    stop_reason and ms with --json), or {"id", "error"} for a line that cannot be completed."""
    import json

    from cllm.engine import complete

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
            path = _complete_doc_path(file, model)
            result = complete(model, prefix, suffix, options, path=path)
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

    from cllm.engine.checkpoint import load_checkpoint, weights_sha256
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
                  f"dropout {c['dropout']}"),
        ("resumable", f"yes (optimizer state at step {info['optimizer_step']})" if info["resumable"] else "no"),
    ]
    recorded = meta.to_json()
    rows += [(label, _info_value(recorded[key])) for key, label in _INFO_FIELDS.items() if recorded[key] is not None]
    if meta.last_loss is not None:
        rows.append(("final train loss", f"{meta.last_loss:.4f}"))
    speed = meta.sphere_stats
    if speed is not None:
        rows.append(("throughput", f"{speed.tokens_per_second:,.0f} tokens/s, load imbalance "
                                   f"{speed.load_imbalance:.1%}, sync overhead {speed.sync_overhead:.1%}"))
    if meta.base is not None:
        rows.append(("fine-tuned from", f"{meta.base.path} (weights sha256 {meta.base.weights_sha256})"))
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

    from cllm.engine.checkpoint import CheckpointError
    from cllm.engine.events import EventError, TrainingMetadata

    try:
        info = _model_info(args.model)
        meta = TrainingMetadata.from_json(info["metadata"])
    except (CheckpointError, EventError) as exc:
        print(f"cllm info: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else _format_info(info, meta))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a model on its held-out files (or --on PATH) next to the xz and 5-gram baselines, and next to the
    base it was fine-tuned from (and with --compare-scratch a scratch model of the same budget); files the base
    learned from are left out."""
    import json
    import tempfile

    from cllm.engine import (DEFAULT_POSITIONS, CheckpointError, EvalError, TrainError, evaluate, evaluation_files,
                             format_table, load_model)
    from cllm.engine.evaluate import format_comparison, leave_out_base_files, recorded_base, train_scratch_twin

    positions = DEFAULT_POSITIONS if args.positions is None else args.positions
    if positions < 0:
        print("cllm eval: --positions must be 0 or more", file=sys.stderr)
        return 2

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
            return evaluate(which, documents, train_documents, positions=positions,
                            progress=progress if sys.stderr.isatty() else None)

        report = measure(model)
        report["left_out"] = left_out
        others = {"base": base} if base is not None else {}
        with tempfile.TemporaryDirectory(prefix="cllm-scratch-") as tmp:
            if args.compare_scratch:
                print("cllm eval: training the scratch model (same time budget)...", file=sys.stderr)
                others["scratch"] = train_scratch_twin(model, f"{tmp}/scratch.cllm")
            report.update({name: measure(other) for name, other in others.items()})
    except (CheckpointError, EvalError, TrainError, OSError) as exc:
        print(f"cllm eval: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        if others:
            print("\n" + format_comparison({"this model": report, **{name: report[name] for name in others}}))
    return 0


def _cmd_lsp(args: argparse.Namespace) -> int:
    """Run the language server on stdio (optionally also the HTTP API of the first workspace folder)."""
    from cllm.server.lsp import run_stdio

    return run_stdio(http_port=args.http_port)


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve one workspace over HTTP (API and dashboard) until interrupted."""
    import logging
    from pathlib import Path

    from cllm.server.http import run_server
    from cllm.server.workspace import Workspace

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    root = Path(args.workspace).expanduser()
    if not root.is_dir():
        print(f"cllm serve: workspace {root} is not a folder", file=sys.stderr)
        return 2
    workspace = Workspace(root, model_dir=args.model_dir)
    try:
        run_server(workspace, args.host, args.port, allow_remote=args.allow_remote)
    except ValueError as exc:
        print(f"cllm serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cllm serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        workspace.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full `cllm` argument parser."""
    parser = argparse.ArgumentParser(prog="cllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _pretrain_parser, _complete_parser, _info_parser, _eval_parser, _lsp_parser,
                _serve_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cllm` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
