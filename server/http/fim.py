"""Fill-in-the-middle prompts written for other models: find the cursor in them.

Clients made for other code models (Continue's autocomplete through its OpenAI provider, the llama.cpp
`/completion` route) write the text after the cursor into the prompt itself, between marker words of their model's
FIM template. cllm has its own FIM tokens and takes the text after the cursor as a separate `suffix`, so a prompt
carrying such markers is split back into the text before and after the cursor; read as code, the markers would
only confuse the model. The templates (as Continue's AutocompleteTemplate.ts writes them):

    <fim_prefix>BEFORE<fim_suffix>AFTER<fim_middle>            StarCoder, StableCode (Continue's default)
    <|fim_prefix|>BEFORE<|fim_suffix|>AFTER<|fim_middle|>      CodeGemma, Qwen coder
    <PRE> BEFORE <SUF>AFTER <MID>                              Code Llama
    [SUFFIX]AFTER[PREFIX]BEFORE                                Codestral
    <｜fim▁begin｜>BEFORE<｜fim▁hole｜>AFTER<｜fim▁end｜>          DeepSeek Coder

Text before the prefix marker (other files' snippets, Qwen's `<|repo_name|>`/`<|file_sep|>` context) is left out;
text after the middle marker is the start of the completion, so it joins the text before the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    """One family's markers, in the order they appear in the prompt (`suffix_first` for [SUFFIX]...[PREFIX])."""

    name: str
    prefix: str
    suffix: str
    middle: str = ""
    suffix_first: bool = False


TEMPLATES = (
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTemplate("codellama", "<PRE> ", " <SUF>", " <MID>"),
    FimTemplate("codestral", "[PREFIX]", "[SUFFIX]", suffix_first=True),
    FimTemplate("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
)


@dataclass(frozen=True)
class Cursor:
    """The text before and after the cursor found in a FIM prompt, and the template that held it."""

    before: str
    after: str
    template: str


def split_fim_prompt(prompt: str) -> Cursor | None:
    """The cursor of a prompt written in one of TEMPLATES, or None when the prompt has no complete set of
    markers (it is then plain text before the cursor)."""
    for template in TEMPLATES:
        cursor = _split(prompt, template)
        if cursor is not None:
            return cursor
    return None


def _split(prompt: str, t: FimTemplate) -> Cursor | None:
    if t.suffix_first:
        start = prompt.find(t.suffix)
        middle = prompt.find(t.prefix, start + len(t.suffix)) if start >= 0 else -1
        if middle < 0:
            return None
        return Cursor(prompt[middle + len(t.prefix):], prompt[start + len(t.suffix):middle], t.name)
    start = prompt.find(t.prefix)
    cut = prompt.find(t.suffix, start + len(t.prefix)) if start >= 0 else -1
    end = prompt.find(t.middle, cut + len(t.suffix)) if cut >= 0 else -1
    if end < 0:
        return None
    before = prompt[start + len(t.prefix):cut] + prompt[end + len(t.middle):]
    return Cursor(before, prompt[cut + len(t.suffix):end], t.name)
