"""The `cllm` command: train, pretrain, complete, info, eval, lsp, serve, warmup.

The argument names are a contract (scripts and editor integrations rely on them). Each subcommand is a module of
this package holding its arguments (`add_parser`) and its handler (`run`), which delegates to the engine or the
servers; flags.py holds the argument types they share. Bad input ends in one line on stderr and a non-zero exit:
argument values are checked while parsing (exit status 2), and whatever a handler raises is turned into its exit
status and message here, by the one table in errors.py.
"""

from __future__ import annotations

import sys

from .. import __version__
from .complete import add_parser as _complete_parser, run as _cmd_complete
from .errors import SIGPIPE_STATUS, outcome, report
from .eval import add_parser as _eval_parser, run as _cmd_eval
from .flags import Parser
from .info import add_parser as _info_parser, run as _cmd_info
from .lsp import add_parser as _lsp_parser, run as _cmd_lsp
from .pretrain import add_parser as _pretrain_parser, run as _cmd_pretrain
from .serve import add_parser as _serve_parser, run as _cmd_serve
from .train import add_parser as _train_parser, run as _cmd_train
from .warmup import add_parser as _warmup_parser, run as _cmd_warmup


def build_parser() -> Parser:
    """The full `cllm` argument parser; each subcommand's parse result names its handler (`args.handler`)."""
    parser = Parser(prog="cllm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, handler in ((_train_parser, _cmd_train), (_pretrain_parser, _cmd_pretrain),
                         (_complete_parser, _cmd_complete), (_info_parser, _cmd_info), (_eval_parser, _cmd_eval),
                         (_lsp_parser, _cmd_lsp), (_serve_parser, _cmd_serve), (_warmup_parser, _cmd_warmup)):
        add(sub).set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cllm` console script: a failure ends in the exit status and one line on stderr that
    errors.py gives it, a closed output pipe (`cllm info MODEL | head`) in a quiet exit."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (its one-line error already printed)
        return done.code
    args.argv = sys.argv[1:] if argv is None else list(argv)  # `cllm train --ray` runs them again in a child
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows here, while it can still be handled
    except (Exception, KeyboardInterrupt) as exc:
        ended = outcome(exc)
        if ended is None:
            raise
        status, message = ended
        if status == SIGPIPE_STATUS:
            _drop_stdout()
        if message is not None:
            report(args.command, message, events=getattr(args, "events", False) and args.json)
        return status
    return code


def _drop_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush of the unwritten rest of its
    buffer does not raise again on the closed pipe."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
