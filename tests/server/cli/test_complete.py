"""`cllm complete` as a user runs it: the real console script in a subprocess, with the tiny trained model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cllm.engine import CompletionOptions, ServedModel
from cllm.server.cli import main

CLLM = Path(sys.executable).parent / "cllm"
SOURCE = "static int add(int a, int b) {\n    return a + b;\n}\n"


def cllm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLLM), "complete", *args], capture_output=True, text=True, input=stdin, timeout=120)


@pytest.fixture(scope="module")
def model(tiny_model_path):
    served = ServedModel.open(tiny_model_path)
    served.build()
    return served


def test_prompt_prints_the_completion_and_json_has_the_details(tiny_model_path, model):
    expected = model.complete("int main(void) {", "", CompletionOptions(max_tokens=20, max_ms=1e9))
    plain = cllm(str(tiny_model_path), "--prompt", "int main(void) {", "--max-tokens", "20")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == expected.text + "\n"
    as_json = cllm(str(tiny_model_path), "--prompt", "int main(void) {", "--max-tokens", "20", "--json")
    result = json.loads(as_json.stdout)
    assert result["completion"] == expected.text
    assert result["tokens"] == expected.tokens and result["stop_reason"] == expected.stop_reason
    assert result["ms"] >= 0 and result["source"] is expected.source is None  # the transformer alone copies nothing


def test_file_offset_uses_only_the_bytes_before_the_cursor(tiny_model_path, tmp_path, model):
    offset = SOURCE.index("a + b")
    src = tmp_path / "add.c"
    src.write_text(SOURCE)
    (tmp_path / "other").mkdir()
    other = tmp_path / "other" / "add.c"
    other.write_text(SOURCE[:offset] + "SOMETHING ELSE ENTIRELY\n")  # same prefix, different text after it
    runs = [cllm(str(tiny_model_path), "--file", str(f), "--offset", str(offset), "--json") for f in (src, other)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first, second = (json.loads(r.stdout)["completion"] for r in runs)
    assert first == second
    expected = model.complete(SOURCE[:offset], "", CompletionOptions(max_ms=1e9), path="add.c")
    assert first == expected.text


def test_bad_offsets_and_missing_arguments_are_clear_errors(tiny_model_path, tmp_path, capsys):
    """In-process (the same handler as the console script, without paying its start-up five times)."""
    src = tmp_path / "s.c"
    src.write_text("int é;\n")

    def error(*args: str) -> tuple[int, str]:
        code = main(["complete", *args])
        return code, capsys.readouterr().err

    code, err = error(str(tiny_model_path), "--file", str(src), "--offset", "100")
    assert code == 2 and "outside" in err and "(valid: 0..8)" in err
    code, err = error(str(tiny_model_path), "--file", str(src), "--offset", "-1")
    assert code == 2 and "outside" in err
    code, err = error(str(tiny_model_path), "--file", str(src), "--offset", "5")  # between the two bytes of é
    assert code == 2 and "UTF-8 character" in err
    code, err = error(str(tiny_model_path), "--file", str(src))
    assert code == 2 and "--offset" in err
    code, err = error(str(tiny_model_path), "--prompt", "int", "--offset", "3")
    assert code == 2 and "--offset only goes with --file" in err
    code, err = error(str(tmp_path / "none.cllm"), "--prompt", "int")
    assert code == 1 and "does not exist" in err


def test_missing_model_is_a_clear_error_from_the_console_script(tmp_path):
    run = cllm(str(tmp_path / "none.cllm"), "--prompt", "int")
    assert run.returncode == 1 and "does not exist" in run.stderr and "Traceback" not in run.stderr


def test_batch_answers_every_line_and_reports_bad_ones(tiny_model_path, tmp_path, model):
    src = tmp_path / "add.c"
    src.write_text(SOURCE)
    offset = SOURCE.index("a + b")
    lines = [
        json.dumps({"id": 1, "file": str(src), "offset": offset}),
        json.dumps({"id": "two", "file": str(src), "offset": 10_000}),
        "this is not json",
        "",
        json.dumps({"id": 3, "file": str(src), "offset": offset, "suffix": ";\n}\n"}),
        json.dumps({"id": 4, "file": str(tmp_path / "missing.c"), "offset": 0}),
        json.dumps({"id": 5, "offset": 3}),
    ]
    batch = tmp_path / "in.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    run = cllm(str(tiny_model_path), "--batch", str(batch))
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, "two", None, 3, 4, 5]
    options = CompletionOptions(max_ms=1e9)
    assert out[0] == {"id": 1, "completion": model.complete(SOURCE[:offset], "", options, path="add.c").text}
    assert out[3] == {"id": 3, "completion": model.complete(SOURCE[:offset], ";\n}\n", options, path="add.c").text}
    assert "outside" in out[1]["error"] and "JSON" in out[2]["error"]
    assert "cannot read" in out[4]["error"] and '"file"' in out[5]["error"]
    assert "4 of 6 batch lines failed" in run.stderr
