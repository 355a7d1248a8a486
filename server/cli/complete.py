"""`cllm complete MODEL`: complete one prompt (--prompt, or a file up to a byte offset) or every line of a
--batch file with a trained model, as a script or a benchmark asks; the text after the cursor is never read."""

from __future__ import annotations

import argparse
import sys

from .errors import BadInput, checking_input
from .flags import COUNT, engine_default


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm complete` subcommand's arguments."""
    p = sub.add_parser("complete", help="complete code with a trained model")
    p.add_argument("model", help="a .cllm model file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text before the cursor")
    src.add_argument("--file", help="file whose bytes before --offset are the prompt")
    src.add_argument("--batch", metavar="IN.jsonl", help='lines of {"id", "file", "offset", ["suffix"]} ("-": stdin)')
    p.add_argument("--offset", type=int, help="cursor offset in bytes into --file")
    p.add_argument("--suffix", help="text after the cursor (default: none)")
    engine_default(p.add_argument("--max-tokens", type=COUNT, help="longest completion, in tokens"),
                    _max_tokens_default)
    p.add_argument("--multiline", action="store_true", help="continue while a block is open")
    engine_default(p.add_argument("--temperature", type=float, help="sampling temperature; 0 picks the likeliest token"),
                    _temperature_default)
    p.add_argument("--json", action="store_true", help="print the completion with its tokens, stop reason and time")
    return p


def _max_tokens_default() -> int:
    from cllm.engine.complete.generate import CompletionOptions

    return CompletionOptions().max_tokens


def _temperature_default() -> str:
    from cllm.engine.complete.generate import MAX_TEMPERATURE, CompletionOptions

    return f"{CompletionOptions().temperature}, at most {MAX_TEMPERATURE}"


def run(args: argparse.Namespace) -> int:
    """Complete one prompt (--prompt, or --file's bytes before --offset) or every line of a --batch file.

    The text after --offset is never read: it may hold the answer. Only an explicit --suffix (or a batch line's
    "suffix") is used as the text after the cursor. Paths in batch lines are relative to the current folder."""
    import json

    from cllm.engine import ServedModel

    _check_inputs(args)
    options = _options(args)
    with checking_input():
        options.validate()
        prefix = args.prompt if args.file is None else _read_prefix(args.file, args.offset)
    served = ServedModel.open(args.model)
    served.build()  # the workspace cache model, as the servers build it
    if args.batch is not None:
        return _complete_batch(served, args.batch, options, args.json)
    path = None if args.file is None else _doc_path(args.file, served.model)
    result = served.complete(prefix, args.suffix or "", options, path=path)
    if args.json:
        print(json.dumps({"completion": result.text, "tokens": result.tokens, "stop_reason": result.stop_reason,
                          "ms": round(result.ms, 3), "source": result.source}))
    else:
        print(result.text)
    return 0


def _check_inputs(args: argparse.Namespace) -> None:
    """BadInput for --offset without --file (or the other way round), or --suffix with --batch."""
    if args.offset is not None and args.file is None:
        raise BadInput("--offset only goes with --file")
    if args.file is not None and args.offset is None:
        raise BadInput("--file needs --offset BYTES (the cursor position in the file)")
    if args.batch is not None and args.suffix is not None:
        raise BadInput('--suffix does not apply to --batch (give each line its own "suffix")')


def _options(args: argparse.Namespace):
    """The CompletionOptions the flags ask for; the command line waits for the whole suggestion."""
    import math

    from cllm.engine import CompletionOptions

    defaults = CompletionOptions()
    return CompletionOptions(
        max_tokens=defaults.max_tokens if args.max_tokens is None else args.max_tokens,
        multiline=args.multiline,
        temperature=defaults.temperature if args.temperature is None else args.temperature,
        max_ms=math.inf,
    )


def _read_prefix(file: str, offset: int) -> str:
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


def _doc_path(file: str, model) -> str:
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
    stop_reason, ms and source with --json), or {"id", "error"} for a line that cannot be completed."""
    import json

    try:
        if batch == "-":
            lines = sys.stdin.readlines()
        else:
            with open(batch, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read batch file {batch}: {exc}") from exc
    failed = total = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        total += 1
        request_id = None
        try:
            request = _batch_request(line)
            request_id = request.get("id")
            file, offset, suffix = _batch_fields(request)
            result = served.complete(_read_prefix(file, offset), suffix, options, path=_doc_path(file, served.model))
            out = {"id": request_id, "completion": result.text}
            if full:
                out.update(tokens=result.tokens, stop_reason=result.stop_reason, ms=round(result.ms, 3),
                           source=result.source)
        except ValueError as exc:
            failed += 1
            out = {"id": request_id, "error": f"line {number}: {exc}"}
        print(json.dumps(out), flush=True)
    if failed:
        print(f"cllm complete: {failed} of {total} batch lines failed", file=sys.stderr)
    return 0


def _batch_request(line: str) -> dict:
    """A batch line as a JSON object; ValueError when it is not one."""
    import json

    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise ValueError("a batch line must be a JSON object")
    return request


def _batch_fields(request: dict) -> tuple[str, int, str]:
    """A batch request's file, offset and suffix; ValueError saying which is wrong."""
    file, offset, suffix = request.get("file"), request.get("offset"), request.get("suffix", "")
    if not isinstance(file, str) or not file:
        raise ValueError('"file" must be a path')
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise ValueError('"offset" must be an integer number of bytes')
    if not isinstance(suffix, str):
        raise ValueError('"suffix" must be a string')
    return file, offset, suffix
