"""server/cli/errors.py: the one table from a handler's exception to the command's exit status and message."""

import pytest

from cllm.engine.errors import CllmError
from cllm.engine.train.loop import TrainCancelled, TrainError
from cllm.server import cli
from cllm.server.cli import main
from cllm.server.cli.errors import BadInput, CommandError, checking_input, outcome


@pytest.mark.parametrize("exc, expected", [
    (BrokenPipeError(), (141, None)),
    (KeyboardInterrupt(), (130, "interrupted")),
    (TrainCancelled("cancelled before the first step"), (130, "cancelled before the first step")),
    (TrainError("--heads must divide --d-model"), (2, "--heads must divide --d-model")),
    (CllmError("not a cllm model file"), (1, "not a cllm model file")),
    (BadInput("--offset only goes with --file"), (2, "--offset only goes with --file")),
    (CommandError("the Ray cluster ended the training process", 1), (1, "the Ray cluster ended the training process")),
    (MemoryError(), (1, "out of memory: try a smaller --batch-size, --seq-len or model")),
    (OSError(28, "No space left on device", "/m.cllm"),
     (1, "No space left on device: /m.cllm (check free disk space and permissions)")),
])
def test_each_failure_has_its_status_and_message(exc, expected):
    assert outcome(exc) == expected


def test_a_bug_is_not_in_the_table():
    assert outcome(RuntimeError("a bug")) is None


def test_errors_while_checking_input_are_bad_input():
    for exc in (ValueError("--epochs must be >= 1"), CllmError("the workspace is busy"), OSError("unreadable")):
        with pytest.raises(BadInput) as raised, checking_input():
            raise exc
        assert outcome(raised.value) == (2, str(exc))


def test_main_ends_a_failed_command_with_one_line(monkeypatch, capsys):
    def handler(args):
        raise OSError(13, "Permission denied", "/ro/model.cllm")

    monkeypatch.setattr(cli, "_cmd_info", handler)
    assert main(["info", "x.cllm"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "cllm info: error: Permission denied: /ro/model.cllm (check free disk space and permissions)\n"
    assert captured.out == ""


def test_main_lets_a_bug_show_its_traceback(monkeypatch):
    def handler(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_cmd_info", handler)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["info", "x.cllm"])


def test_a_training_command_with_json_also_ends_its_events_with_the_failure(tmp_path, capsys):
    assert main(["pretrain", str(tmp_path), "--out", str(tmp_path), "--json"]) == 2
    captured = capsys.readouterr()
    assert '"event": "error"' in captured.out and "is a folder" in captured.out
    assert captured.err.startswith("cllm pretrain: error: --out ") and captured.err.count("\n") == 1
