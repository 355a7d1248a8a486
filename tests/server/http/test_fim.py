"""Foreign fill-in-the-middle prompts split back into the text before and after the cursor."""

import pytest

from cllm.server.http.fim import Cursor, split_fim_prompt

BEFORE, AFTER = "// src/a.c\nint add(int a, int b) {\n    return ", ";\n}\n"


@pytest.mark.parametrize("prompt, template", [
    (f"<fim_prefix>{BEFORE}<fim_suffix>{AFTER}<fim_middle>", "starcoder"),
    (f"<|repo_name|>ws\n<|file_sep|>b.c\nint b;\n<|fim_prefix|>{BEFORE}<|fim_suffix|>{AFTER}<|fim_middle|>",
     "codegemma"),
    (f"<PRE> {BEFORE} <SUF>{AFTER} <MID>", "codellama"),
    (f"[SUFFIX]{AFTER}[PREFIX]{BEFORE}", "codestral"),
    (f"<｜fim▁begin｜>{BEFORE}<｜fim▁hole｜>{AFTER}<｜fim▁end｜>", "deepseek"),
])
def test_each_template_gives_the_cursor(prompt, template):
    assert split_fim_prompt(prompt) == Cursor(BEFORE, AFTER, template)


def test_text_after_the_middle_marker_joins_the_text_before_the_cursor():
    assert split_fim_prompt("<fim_prefix>int <fim_suffix>;<fim_middle>ma") == Cursor("int ma", ";", "starcoder")


@pytest.mark.parametrize("prompt", [BEFORE, "<fim_prefix>int x<fim_suffix>;", "<fim_suffix>a<fim_prefix>b<fim_middle>",
                                    "[PREFIX]int x[SUFFIX];", ""])
def test_plain_or_incomplete_prompts_are_plain_text(prompt):
    assert split_fim_prompt(prompt) is None
