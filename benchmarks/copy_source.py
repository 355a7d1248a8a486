"""What naming a copy's source costs: the newline tables, the tracking per decoded token, the line of a copy.

    python benchmarks/copy_source.py [--kb 400 1600] [--repeats 200]

The shipped base (engine/train/shipped/base.cllm) completes the second copy of a function whose first copy ends a
generated file of about --kb kilobytes (the worst case: the line is counted over the whole file's tokens), mixed
with a workspace index over that file (half the weight on the match model). Prints a table: the size, the source
found (it must name the file's last function), the milliseconds of `copied_from` (once per suggestion with a
source), and, once, the newline tables (once per scorer) and `expect` + `picked` (per decoded token).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.mixture import Mixture, MixtureScorer, workspace_models
from cllm.engine.complete.sources import CopyTracker
from cllm.engine.data.corpus import Document
from cllm.engine.model.loaded import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import COPY_SOURCE, SECOND_COPY, copy_mixture_weights  # noqa: E402

BASE = Path(__file__).resolve().parents[1] / "engine" / "train" / "shipped" / "base.cllm"


def _file(kb: int) -> str:
    """About `kb` KB of small functions, then the function completed (its `if` on the file's last lines)."""
    one = "static int f_{0}(int a) {{\n    return a * {0} + 3;\n}}\n\n"
    count = kb * 1000 // len(one.format(5000))
    return "".join(one.format(i) for i in range(count)) + COPY_SOURCE["src/a.c"]


def _seconds_per_call(call, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, nargs="+", default=[400, 1600])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    model = load_model(BASE)
    tok = model.tokenizer
    tables = _seconds_per_call(lambda: CopyTracker(tok), 3)
    print(f"newline tables, vocabulary {tok.vocab_size}: {tables * 1e3:.1f} ms (once per scorer)")
    print(f"{'file KB':>8} {'tokens':>9} {'source':>16} {'copied_from ms':>15}")
    for kb in args.kb:
        text = _file(kb)
        kn, index = workspace_models(tok, [Document("src/big.c", text, len(text))])
        scorer = MixtureScorer(tok, kn, index, Mixture(copy_mixture_weights()))
        options = CompletionOptions(max_ms=1e9, multiline=True, max_tokens=16)
        result = Completer(model, scorer=scorer).complete(SECOND_COPY, "", options, path="src/b.c")
        want = f"src/big.c:{text.count(chr(10)) - 4}"  # the `if`, the fifth line from the end
        assert result.source == want, (result.source, want)
        cost = _seconds_per_call(lambda: scorer.copied_from(result.tokens), args.repeats)
        print(f"{len(text) // 1000:>8} {len(index.tokens):>9} {result.source:>16} {cost * 1e3:>15.2f}")
    tracker = CopyTracker(tok)
    per_token = _seconds_per_call(lambda: (tracker.expect(5, 7, index), tracker.picked(5)), 100_000)
    print(f"expect + picked: {per_token * 1e9:.0f} ns per decoded token")


if __name__ == "__main__":
    main()
