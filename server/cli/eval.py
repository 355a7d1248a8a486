"""`cllm eval MODEL`: a model's bits per byte and line completions on its held-out files (or --on PATH), next to
the xz and 5-gram baselines and the base it was fine-tuned from; files the base learned from are left out."""

from __future__ import annotations

import argparse
import sys

from .flags import COUNT, engine_default


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm eval` subcommand's arguments."""
    p = sub.add_parser("eval", help="measure a model (bits per byte, line completion) against baselines")
    p.add_argument("model", help="a .cllm model file")
    p.add_argument("--on", metavar="PATH", help="evaluate on every C file under PATH (default: held-out files)")
    engine_default(p.add_argument("--positions", type=COUNT, help="line-completion positions to sample"),
                    _positions_default)
    p.add_argument("--compare-scratch", action="store_true",
                   help="also train a model from scratch with the same time budget and compare it")
    p.add_argument("--prefix-only", action="store_true",
                   help="line completions see only the text before the cursor (no suffix), as clients without "
                   "fill-in-the-middle ask")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _positions_default() -> int:
    from cllm.engine.eval.evaluate import DEFAULT_POSITIONS

    return DEFAULT_POSITIONS


def run(args: argparse.Namespace) -> int:
    """Evaluate a model on its held-out files (or --on PATH) next to the xz and 5-gram baselines, and next to the
    base it was fine-tuned from (and with --compare-scratch a scratch model of the same budget); files the base
    learned from are left out."""
    import json
    import tempfile

    from cllm.engine import DEFAULT_POSITIONS, evaluate, evaluation_files, format_table, load_model
    from cllm.engine.eval.evaluate import format_comparison, recorded_base
    from cllm.engine.train.pretrain import train_scratch_twin

    positions = DEFAULT_POSITIONS if args.positions is None else args.positions
    model = load_model(args.model)
    documents, train_documents, notes = evaluation_files(model, args.on)
    if notes.get("missing_files"):
        print(f"cllm eval: {notes['missing_files']} held-out files no longer exist; evaluating the rest", file=sys.stderr)
    base, why_not = recorded_base(model)
    if why_not:
        print(f"cllm eval: {why_not}", file=sys.stderr)
    documents, left_out = _without_base_files(documents, model, base)

    def measure(which) -> dict:
        return evaluate(which, documents, train_documents, positions=positions, prefix_only=args.prefix_only,
                        progress=_progress if sys.stderr.isatty() else None)

    report = measure(model)
    report["left_out"] = left_out
    others = {"base": base} if base is not None else {}
    with tempfile.TemporaryDirectory(prefix="cllm-scratch-") as tmp:
        if args.compare_scratch:
            print("cllm eval: training the scratch model (same time budget)...", file=sys.stderr)
            others["scratch"] = train_scratch_twin(model, f"{tmp}/scratch.cllm")
        report.update({name: measure(other) for name, other in others.items()})
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        if others:
            print("\n" + format_comparison({"this model": report, **{name: report[name] for name in others}}))
    return 0


def _progress(stage: str, done: int, total: int) -> None:
    """A live counter on a terminal (not used when stderr goes to a log)."""
    print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def _without_base_files(documents, model, base) -> tuple[list, list[str]]:
    """`documents` without those in the base model's corpus, and the names left out (said on stderr);
    EvalError when nothing is left to score."""
    from cllm.engine import EvalError
    from cllm.engine.eval.evaluate import leave_out_base_files

    documents, left_out = leave_out_base_files(documents, model, base)
    if not documents:
        raise EvalError(f"all {len(left_out)} files are in the base model's corpus: nothing left to score")
    if left_out:
        print(f"cllm eval: warning: {len(left_out)} of the files are in the base model's corpus and are left out "
              f"of the scores: {', '.join(left_out[:5])}{' ...' if len(left_out) > 5 else ''}", file=sys.stderr)
    return documents, left_out
