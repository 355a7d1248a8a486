"""`cllm serve`: one workspace over HTTP (the OpenAI- and llama.cpp-compatible API and the dashboard) until
interrupted, on loopback unless --allow-remote."""

from __future__ import annotations

import argparse
import sys

from cllm.engine.complete.confidence import DEFAULT_EAGERNESS, EAGERNESS

from .errors import BadInput, CommandError
from .flags import PORT, POSITIVE_FLOAT, engine_default


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm serve` subcommand's arguments."""
    p = sub.add_parser("serve", help="run the local model server (HTTP API and dashboard)")
    p.add_argument("--workspace", default=".", help="workspace folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=PORT, default=8765, help="port to listen on (0: any free port)")
    p.add_argument("--model-dir", help="folder holding or receiving the workspace's model.cllm "
                                       "(default: the workspace's folder in the user cache)")
    engine_default(p.add_argument("--index-memory-mb", type=POSITIVE_FLOAT, metavar="MB",
                                   help="memory cap of the workspace index the completions mix in; past it a sample "
                                        "of the files is indexed (as the indexMemoryMB setting)"),
                    _index_memory_default)
    p.add_argument("--eagerness", choices=EAGERNESS, default=DEFAULT_EAGERNESS,
                   help="which suggestions are answered, by their confidence: low answers only the surest ones, high "
                        "more of the uncertain ones; the others come back empty (default: %(default)s)")
    p.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    p.add_argument("--api-key", type=_api_key, metavar="KEY",
                   help="the bearer token clients must send (default: $CLLM_API_KEY, else the `token` file in the "
                        "model folder, created once and kept)")
    return p


def _index_memory_default() -> float:
    from cllm.engine import IndexSettings

    return IndexSettings().max_mb


def _api_key(text: str) -> str:
    """An argparse type for --api-key; its error never echoes the key."""
    from cllm.server.http.security import check_api_key

    try:
        return check_api_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Serve one workspace over HTTP (API and dashboard) until interrupted."""
    import logging
    from pathlib import Path

    from cllm.server.http.app import run_server
    from cllm.server.workspace import Workspace

    from .warmup import start_in_background

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    root = Path(args.workspace).expanduser()
    if not root.is_dir():
        raise BadInput(f"workspace {root} is not a folder")
    settings = {"eagerness": args.eagerness}
    if args.index_memory_mb is not None:
        settings["indexMemoryMB"] = args.index_memory_mb
    workspace = Workspace(root, settings, model_dir=args.model_dir)
    start_in_background()  # the first start of this version compiles every kernel ahead, in a child
    try:
        run_server(workspace, args.host, args.port, allow_remote=args.allow_remote, api_key=args.api_key)
    except ValueError as exc:  # an address it may not listen on
        raise BadInput(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", 1) from exc
    finally:
        workspace.close()
    return 0
