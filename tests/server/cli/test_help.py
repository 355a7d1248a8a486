"""`cllm --version`, and help that shows every option's default."""

import argparse
import json
from importlib.metadata import version
from pathlib import Path

import pytest

from cllm.server.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[3]


def test_version_comes_from_the_distribution(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"cllm {version('cllm')}\n"


def test_the_extension_ships_the_same_version():
    """The VS Code extension bundles this wheel: its package.json must carry pyproject's version."""
    package = json.loads((ROOT / "vscode-extension" / "package.json").read_text())
    assert package["version"] == version("cllm")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


INPUTS = {"prompt", "file", "batch", "offset"}  # `cllm complete`'s input: one of them is required, none defaults


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_shows_its_default(name, capsys):
    parser = subcommands()[name]
    options = [action for action in parser._actions if action.option_strings and action.dest not in INPUTS
               and not isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction))]
    for action in options:
        assert "(default: " in parser._get_formatter()._get_help_string(action), action.option_strings
    assert main([name, "--help"]) == 0
    assert " ".join(capsys.readouterr().out.split()).count("(default: ") == len(options)


def test_lsp_accepts_stdio_as_clients_pass_it():
    args = build_parser().parse_args(["lsp", "--stdio"])
    assert args.command == "lsp" and args.stdio is True and args.with_server is None


def test_lsp_with_takes_the_rest_as_the_server_command():
    args = build_parser().parse_args(["lsp", "--stdio", "--with", "clangd", "--background-index", "--log=error"])
    assert args.with_server == ["clangd", "--background-index", "--log=error"]
