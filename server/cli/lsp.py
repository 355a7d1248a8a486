"""`cllm lsp`: the language server on stdio for the editors, alone or with another language server behind the
same connection (--with), optionally also serving the workspace over HTTP."""

from __future__ import annotations

import argparse

from .errors import BadInput
from .flags import PORT


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm lsp` subcommand's arguments."""
    p = sub.add_parser("lsp", help="run the language server on stdio")
    p.add_argument("--stdio", action="store_true", help="accepted for clients that pass it: stdio is the transport")
    p.add_argument("--http-port", type=PORT, help="also serve the workspace over HTTP on this loopback port, with the "
                                                   "key in $CLLM_API_KEY or the model folder's `token` file (default: off)")
    p.add_argument("--with", dest="with_server", nargs=argparse.REMAINDER, metavar="SERVER ...",
                   help="start the language server SERVER (with the arguments that follow) too and serve both as one: "
                        "its answers plus cllm's completions, for clients that run one server per language; the last option "
                        "(default: cllm alone)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the language server on stdio (optionally also the HTTP API of the first workspace folder), alone or
    with another server behind the same connection (--with)."""
    if args.with_server is not None:
        if not args.with_server:
            raise BadInput("--with needs a server command, e.g. --with clangd")
        from cllm.server.proxy import run_proxy

        return run_proxy(args.with_server, [] if args.http_port is None else ["--http-port", str(args.http_port)])
    from cllm.server.lsp import run_stdio

    from .warmup import start_in_background

    start_in_background()  # the first start of this version compiles every kernel ahead, in a child
    return run_stdio(http_port=args.http_port)
