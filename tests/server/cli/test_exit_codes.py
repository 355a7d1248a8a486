"""Every subcommand given bad values ends in one clean line on stderr and a non-zero exit, never a traceback
or a hang; the engine's errors are caught as one type (CllmError)."""

import os

import pytest

from cllm.engine.errors import CllmError
from cllm.server import cli
from cllm.server.cli import main


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Keep model folders and lock files inside the test's tmp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def places(tmp_path, c_workspace):
    """Named paths the bad command lines point at: a workspace, an empty folder, a FIFO, a missing file."""
    os.mkfifo(tmp_path / "fifo.cllm")
    (tmp_path / "empty").mkdir()
    return {"WS": str(c_workspace), "EMPTY": str(tmp_path / "empty"), "FIFO": str(tmp_path / "fifo.cllm"),
            "MISSING": str(tmp_path / "missing.cllm")}


BAD_COMMAND_LINES = [
    "", "bogus", "--bogus",
    "train", "train MISSING", "train EMPTY", "train WS --epochs 0", "train WS --epochs x", "train WS --lr nan",
    "train WS --lr -1", "train WS --dropout 1", "train WS --time-budget inf", "train WS --threads -1",
    "train WS --d-model 1000000000000", "train WS --heads 3", "train WS --resume FIFO", "train WS --resume MISSING",
    "train WS --out EMPTY", "train WS --ray 127.0.0.1:1", "train WS --ray nonsense",
    "train WS --base MISSING", "train WS --base FIFO", "train WS --base MISSING --no-base",
    "train WS --position-encoding spiral", "pretrain WS --position-encoding spiral",
    "pretrain MISSING", "pretrain EMPTY", "pretrain WS --time-budget -5", "pretrain WS --vocab-size 0",
    "pretrain WS --out EMPTY", "pretrain WS --seed x", "pretrain WS --continue-from MISSING",
    "pretrain WS --continue-from FIFO", "pretrain WS --continue-from MISSING --vocab-size 300",
    "complete MISSING --prompt x", "complete FIFO --prompt x", "complete MISSING", "complete MISSING --prompt x --temperature 5",
    "complete MISSING --prompt x --temperature nan", "complete MISSING --prompt x --temperature -1",
    "complete MISSING --prompt x --max-tokens -1", "complete MISSING --file FIFO --offset 0",
    "complete MISSING --file WS --offset 0", "complete MISSING --file MISSING --offset 0", "complete MISSING --offset 3 --prompt x",
    "info", "info MISSING", "info FIFO", "info EMPTY", "info WS --bogus",
    "eval MISSING", "eval FIFO", "eval MISSING --positions -1", "eval MISSING --positions many",
    "lsp --http-port 99999", "lsp --http-port x", "lsp --with", "lsp --with MISSING",
    "serve --port 99999", "serve --port -1", "serve --port http", "serve --workspace MISSING",
    "serve --api-key", "serve --api-key naïve", "serve --index-memory-mb 0", "serve --index-memory-mb -5",
    "serve --index-memory-mb lots", "serve --index-memory-mb nan",
]


@pytest.mark.parametrize("command_line", BAD_COMMAND_LINES)
def test_bad_values_end_in_one_clean_line(places, capsys, command_line):
    argv = [places.get(word, word) for word in command_line.split()]
    assert main(argv) != 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cllm") and "error" in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_any_engine_error_is_caught_at_the_top(monkeypatch, capsys):
    class Odd(CllmError):
        pass

    def handler(args):
        raise Odd("something the engine explains")

    monkeypatch.setattr(cli, "_cmd_info", handler)
    assert main(["info", "x.cllm"]) == 1
    assert capsys.readouterr().err == "cllm info: error: something the engine explains\n"
