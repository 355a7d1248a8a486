"""Line decoding with and without the repetition guard and the small beam: exact match, edit similarity, keystroke p95.

    nice -n 10 .venv/bin/python benchmarks/line_decoding.py PROJECT... [--positions N] [--widths 1,2,3]

For each project, its files are split as `cllm train` splits them; the shipped base completes the held-out files
through the workspace cache mixture built from the training files, prefix only (as benchmarks/base_quality.py),
at seeded cursors, each reached by a keystroke (the cache warm, as when typing). Each variant (guard off/on x beam widths) completes every cursor, then the user types on
(KEYSTROKES requests, one character each, the document's cache reused), which is what the p95 is taken over.
"The guard off" disables repetition.py's tests in the stop rules for the run (the suffix and the multi-line rules
stay).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cllm.engine import load_model
from cllm.engine.complete import beam, stops
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.mixture import MixtureScorer, stored_mixture, workspace_models
from cllm.engine.config import TrainConfig
from cllm.engine.data.corpus import load_documents, scan, split_documents
from cllm.engine.eval.evaluate import LINE_MAX_TOKENS, edit_similarity, sample_positions
from cllm.engine.train.shipped import SHIPPED_BASE

KEYSTROKES = 3


@contextmanager
def guard(on: bool):
    """The stop rules with the repetition guard, or (on=False) without it."""
    saved = stops.repeat_cut, stops.repeat_start, stops.retypes
    if not on:
        stops.repeat_cut = lambda text, unfinished=False: None
        stops.repeat_start = len
        stops.retypes = lambda line, above: False
    try:
        yield
    finally:
        stops.repeat_cut, stops.repeat_start, stops.retypes = saved


def run_variant(completer: Completer, docs, positions, width: int) -> dict:
    """Exact match and edit similarity at `positions`, and the keystroke latencies typing on after each."""
    options = CompletionOptions(max_tokens=LINE_MAX_TOKENS, beam=width, max_ms=1000.0)
    exact, similar, keys = [], [], []
    for n, p in enumerate(positions):
        doc = docs[p.doc]
        truth = doc.text[p.offset:p.line_end].strip()
        completer.complete(doc.text[:p.offset - 1], "", options, path=doc.path, doc_key=n)  # the keystroke before
        got = completer.complete(doc.text[:p.offset], "", options, path=doc.path, doc_key=n).text.split("\n")[0]
        exact.append(got.strip() == truth)
        similar.append(edit_similarity(got.strip(), truth))
        for k in range(1, min(KEYSTROKES, p.line_end - p.offset) + 1):
            began = time.perf_counter()
            completer.complete(doc.text[:p.offset + k], "", options, path=doc.path, doc_key=n)
            keys.append((time.perf_counter() - began) * 1000.0)
    return {"exact": float(np.mean(exact)), "edit": float(np.mean(similar)),
            "p50": float(np.percentile(keys, 50)), "p95": float(np.percentile(keys, 95))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--positions", type=int, default=100)
    parser.add_argument("--widths", default="1,3", help="beam widths to measure (comma-separated)")
    parser.add_argument("--budget-ms", type=float, default=beam.BUDGET_MS,
                        help="time into a request after which the beam starts no candidate (beam.BUDGET_MS)")
    args = parser.parse_args(argv)
    beam.BUDGET_MS = args.budget_ms
    model = load_model(SHIPPED_BASE)
    mixture = stored_mixture({"mixture": model.metadata.mixture})
    widths = [int(w) for w in args.widths.split(",")]
    print("project | guard | beam | exact | edit sim | keystroke p50 ms | keystroke p95 ms")
    print("--- | --- | --- | --- | --- | --- | ---", flush=True)
    for root in args.projects:
        train_docs, val_docs = split_documents(load_documents(scan(root).documents), TrainConfig().val_fraction)
        kn, index = workspace_models(model.tokenizer, train_docs)
        positions = sample_positions(val_docs, args.positions)
        for on in (False, True):
            for width in widths:
                completer = Completer(model, scorer=MixtureScorer(model.tokenizer, kn, index, mixture))
                with guard(on):
                    row = run_variant(completer, val_docs, positions, width)
                print(f"{root.name} | {'on' if on else 'off'} | {width} | {row['exact']:.3f} | {row['edit']:.3f} | "
                      f"{row['p50']:.1f} | {row['p95']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
