"""`cllm train --request` / `cllm pretrain --request`: one JSON object fills the flags' namespace, checked alike."""

import io
import json

import pytest

from cllm.server.cli import build_parser, main
from cllm.server.cli.request import apply_request


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Keep model folders and lock files inside the test's tmp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _request_file(tmp_path, request) -> str:
    path = tmp_path / "request.json"
    path.write_text(request if isinstance(request, str) else json.dumps(request))
    return str(path)


def test_a_request_and_the_same_flags_give_the_same_namespace(tmp_path):
    request = {"path": str(tmp_path), "out": str(tmp_path / "m.cllm"), "no_base": True, "focus": ["a.c", "src/b.c"],
               "options": {"epochs": 2, "time_budget": 30, "layers": 2, "position_encoding": "learned",
                           "fresh": True, "no_gitignore": True, "lr": None}}
    from_request = build_parser().parse_args(["train", "--request", _request_file(tmp_path, request), "--json"])
    apply_request(from_request, "train")
    from_flags = build_parser().parse_args(["train", str(tmp_path), "--out", str(tmp_path / "m.cllm"), "--no-base",
                                            "--epochs", "2", "--time-budget", "30", "--layers", "2",
                                            "--position-encoding", "learned", "--fresh", "--no-gitignore", "--json",
                                            "--focus", "a.c", "--focus", "src/b.c"])
    assert {**vars(from_request), "request": None} == vars(from_flags)
    assert isinstance(from_request.time_budget, float) and from_request.lr is None


def test_a_request_is_read_from_stdin(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"paths": ["/a", "/b"], "options": {"seed": 4}})))
    args = build_parser().parse_args(["pretrain", "--request", "-"])
    apply_request(args, "pretrain")
    assert args.paths == ["/a", "/b"] and args.seed == 4


@pytest.mark.parametrize("request_, words", [
    ({"path": "WS", "options": {"epochs": 0}}, "request option epochs must be a whole number >= 1, got 0"),
    ({"path": "WS", "options": {"epochs": 1.5}}, "request option epochs must be a whole number >= 1, got 1.5"),
    ({"path": "WS", "options": {"threads": True}}, "request option threads must be a whole number >= 0, got true"),
    ({"path": "WS", "options": {"fresh": 1}}, "request option fresh must be true or false, got 1"),
    ({"path": "WS", "options": {"position_encoding": "spiral"}},
     "request option position_encoding must be one of learned, rope, got \"spiral\""),
    ({"path": "WS", "options": {"colour": 1}}, "unknown option 'colour' in the request"),
    ({"path": "WS", "options": [1]}, "request key 'options' must be an object"),
    ({"path": "WS", "epochs": 2}, "unknown key 'epochs' in the request"),
    ({"path": 3}, "request key 'path' must be a non-empty string, got 3"),
    ({"path": "WS", "focus": "a.c"}, "request key 'focus' must be a list of paths, got \"a.c\""),
    ({"path": "WS", "focus": ["../outside.c"]}, "--focus ../outside.c is not a file under"),
    ({"options": {}}, "give PATH, the folder of C code to learn from"),
    ([1, 2], "must be a JSON object, got [1, 2]"),
    ("{not json", "is not JSON"),
])
def test_a_bad_request_is_one_clear_error(tmp_path, capsys, request_, words):
    (tmp_path / "ws").mkdir()
    if isinstance(request_, dict) and request_.get("path") == "WS":
        request_ = {**request_, "path": str(tmp_path / "ws")}
    assert main(["train", "--request", _request_file(tmp_path, request_), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("cllm train: error: ") and words in err and "Traceback" not in err
    assert json.loads(out)["event"] == "error" and words in json.loads(out)["message"]


def test_a_request_takes_no_flags_of_its_own_and_a_missing_file_is_named(tmp_path, capsys):
    request = _request_file(tmp_path, {"path": str(tmp_path)})
    assert main(["train", str(tmp_path), "--request", request, "--epochs", "2"]) == 2
    assert "--request holds the whole request: drop path, --epochs" in capsys.readouterr().err
    assert main(["train", "--request", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read the request" in err and "missing.json" in err
    assert main(["pretrain", "--request", request]) == 2
    assert "unknown key 'path' in the request" in capsys.readouterr().err
