"""The demo's last step prints a completion for each demo prompt through the real `complete()`."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "training_data" / "show_completions.py"


def load_script():
    spec = importlib.util.spec_from_file_location("show_completions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_every_demo_prompt(tiny_model_path, capsys):
    script = load_script()
    assert script.main([str(tiny_model_path), "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    for prompt in script.DEMO_PROMPTS:
        assert f"--- {prompt!r}: " in out
        assert f"\n{prompt}" in out
    assert out.count(" tokens in ") == len(script.DEMO_PROMPTS)


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert load_script().main([str(tmp_path / "none.cllm")]) == 1
    assert "does not exist" in capsys.readouterr().err
