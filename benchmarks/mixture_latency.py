"""Completion latency with and without the workspace cache mixture, on a trained model's held-out files.

    python benchmarks/mixture_latency.py MODEL [--positions 60] [--max-tokens 64]

MODEL must record its workspace and held-out files (a model from `cllm train`); the mixture row needs mixture
weights in it as well (`cllm train` stores them). At cursor positions sampled as `cllm eval` samples them, the user
types the last three characters before the cursor one request at a time (so the document's cache is reused, as
in an editor); each request is a single-line completion with the engine's defaults (the language server's).
Prints wall-clock p50/p95/p99 per completion, p50/p95 of the thread's CPU time (the idle-machine cost; the wall
clock includes waiting for a core on a busy machine) and the median wall ms per generated token, for the
transformer alone (int8 greedy head) and for the mixture (ServedModel), plus the time to build the 5-gram.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cllm.engine import Completer, CompletionOptions, ServedModel, load_model
from cllm.engine.data.corpus import read_documents
from cllm.engine.eval.evaluate import sample_positions

TYPED = 3  # characters typed, one request each, before every sampled cursor


def run(completer: Completer | ServedModel, documents, positions,
        options: CompletionOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wall ms per request, thread CPU ms per request, wall ms per generated token) over all requests."""
    ms, cpu_ms, per_token = [], [], []
    for p in positions:
        doc = documents[p.doc]
        suffix = doc.text[p.line_end:]
        for at in range(max(0, p.offset - TYPED + 1), p.offset + 1):
            cpu = time.thread_time()
            result = completer.complete(doc.text[:at], suffix, options, path=doc.path, doc_key=doc.path)
            cpu_ms.append((time.thread_time() - cpu) * 1000.0)
            ms.append(result.ms)
            per_token.append(result.ms / max(result.tokens, 1))
    return np.array(ms), np.array(cpu_ms), np.array(per_token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--positions", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=CompletionOptions().max_tokens)
    args = parser.parse_args()
    model = load_model(args.model)
    workspace = Path(model.metadata.workspace or ".")
    documents, _ = read_documents(workspace, [str(p) for p in model.metadata.val_files])
    if not documents:
        raise SystemExit(f"{args.model}: no held-out files readable under {workspace}")
    began = time.perf_counter()
    mixture = ServedModel(model)
    mixture.build()
    build_s = time.perf_counter() - began
    positions = sample_positions(documents, args.positions, seed=0)
    options = CompletionOptions(max_tokens=args.max_tokens)
    rows = [("transformer", Completer(model))]
    if mixture.mixes:
        rows.append(("mixture", mixture))
    print(f"{len(positions)} positions x {TYPED} keystrokes, max_tokens {args.max_tokens}, "
          f"5-gram built in {build_s:.2f} s" if len(rows) == 2 else "no mixture weights or workspace: transformer only")
    print(f"{'completer':12s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'cpu p50':>8s} {'cpu p95':>8s} "
          f"{'ms/token':>9s}")
    for name, completer in rows:
        run(completer, documents, positions[:2], options)  # warm the caches and kernels
        ms, cpu_ms, per_token = run(completer, documents, positions, options)
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        cpu50, cpu95 = np.percentile(cpu_ms, [50, 95])
        print(f"{name:12s} {p50:8.1f} {p95:8.1f} {p99:8.1f} {cpu50:8.1f} {cpu95:8.1f} {np.median(per_token):9.2f}")


if __name__ == "__main__":
    main()
