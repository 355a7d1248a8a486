"""The `cllm` command: train, complete, info, eval, lsp, serve.

The argument names are a contract (scripts and editor integrations rely on them); each subcommand's handler
is a short function that delegates to the engine or the servers.
"""

from __future__ import annotations

import argparse
import sys


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
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.set_defaults(handler=_cmd_train)


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


def _cmd_train(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_complete(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_info(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_lsp(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_serve(args: argparse.Namespace) -> int:
    raise NotImplementedError


def build_parser() -> argparse.ArgumentParser:
    """The full `cllm` argument parser."""
    parser = argparse.ArgumentParser(prog="cllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _complete_parser, _info_parser, _eval_parser, _lsp_parser, _serve_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cllm` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
