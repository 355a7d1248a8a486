"""Print a trained model's completions for the demo prompts (the last step of `make demo`).

Usage: python training_data/show_completions.py MODEL [--max-tokens N] [--single-line] [--path FILE] [PROMPT ...]
Each completion comes from the completer the model ships with (cllm.engine's `ServedModel`), as in the editor
and the HTTP server.
"""

from __future__ import annotations

import argparse
import sys

from cllm.engine import CheckpointError, CompletionOptions, ServedModel

DEMO_PROMPTS = ("int main(void) {", "static int", "#include", "/* Calculate")


def show(served: ServedModel, prompt: str, options: CompletionOptions, path: str | None) -> str:
    """One prompt's block: a header line with its cost, then the prompt followed by the completion."""
    result = served.complete(prompt, options=options, path=path)
    header = f"--- {prompt!r}: {result.tokens} tokens in {result.ms:.0f} ms (stop: {result.stop_reason})"
    return f"{header}\n{prompt}{result.text}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .cllm model file")
    parser.add_argument("prompts", nargs="*", default=list(DEMO_PROMPTS), help="prompts (default: the demo's four)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--single-line", action="store_true", help="stop at the end of the line, as inline ghost text")
    parser.add_argument("--path", help="file name the prompt pretends to come from (default: none)")
    args = parser.parse_args(argv)
    options = CompletionOptions(max_tokens=args.max_tokens, multiline=not args.single_line, max_ms=30_000.0)
    try:
        options.validate()
        served = ServedModel.open(args.model)
    except (CheckpointError, ValueError) as exc:
        print(f"show_completions: {exc}", file=sys.stderr)
        return 1
    served.build()
    for prompt in args.prompts:
        print(show(served, prompt, options, args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
