"""The shipped base on C projects it never saw: before any training, after a fine-tune of it, and beside a run
from scratch of the same budget: what a user gets the moment cllm is installed, and after "Train on Workspace".

    .venv/bin/python benchmarks/base_quality.py PROJECT... [--model BASE] [--positions N]
    .venv/bin/python benchmarks/base_quality.py PROJECT... --budget 600 [--keep DIR]   # + fine-tune and scratch

For each project, its files are split into training and held-out files as `cllm train` splits them; each model
completes the held-out files with the workspace cache built from the training files (the mixture it ships with),
prefix only (no text after the cursor), beside the compressors conditioned on the same training files and the
5-gram. A fine-tuned model is scored at the window it was fine-tuned with and at the base's (rotary positions
carry the base's longer context over), so the table says which one a fine-tune should keep.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cllm.engine import evaluate, load_model, train
from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.data.corpus import load_documents, scan, split_documents
from cllm.engine.model.loaded import Model
from cllm.engine.train.shipped import SHIPPED_BASE
from cllm.engine.train.start import Fresh, FromBase

COLUMNS = ("project", "model", "context", "trained tokens", "files", "mixture bpb", "transformer bpb", "zpaq bpb",
           "ppmd bpb", "exact", "edit sim", "5-gram exact", "5-gram edit")


def at_context(model: Model, context: int) -> Model:
    """`model` completing and scoring with `context` positions instead of the window it was trained with."""
    return Model(model.config, model.params, model.tokenizer, replace(model.metadata, seq_len=context), model.path)


def score(name: str, model: Model, root: Path, positions: int) -> dict:
    """`model`'s report on `root`'s held-out files, with its training files as the cache and the baselines."""
    documents = load_documents(scan(root).documents)
    train_docs, val_docs = split_documents(documents, TrainConfig().val_fraction)
    report = evaluate(model, val_docs, train_docs, positions=positions, prefix_only=True)
    base = report["baselines"]
    return {"project": root.name, "model": name, "context": model.context,
            "trained tokens": model.metadata.tokens if name != "base" else None, "files": len(val_docs),
            "mixture bpb": report["bits_per_byte"], "transformer bpb": report["transformer"]["bits_per_byte"],
            "zpaq bpb": (base.get("zpaq") or {}).get("bits_per_byte"),
            "ppmd bpb": (base.get("ppmd") or {}).get("bits_per_byte"), "exact": report["exact_match"],
            "edit sim": report["edit_similarity"], "5-gram exact": base["kn5"]["exact_match"],
            "5-gram edit": base["kn5"]["edit_similarity"]}


def trained(root: Path, out: Path, budget: float, threads: int, start) -> Model:
    """A `cllm train`-like run on `root` with default settings and `budget` seconds, from `start`."""
    def on_event(typed) -> None:
        event = typed.to_json()
        if event["event"] in ("start", "done"):
            print(json.dumps({key: event.get(key) for key in ("event", "train_files", "tokens", "steps",
                                                              "val_bits_per_byte", "stop_reason")}),
                  file=sys.stderr, flush=True)

    train(root, ModelConfig(), TrainConfig(time_budget=budget, threads=threads), out, on_event,
          explicit={"time_budget", "threads"}, start=start)
    return load_model(out)


def project_rows(base: Model, root: Path, args: argparse.Namespace, folder: Path) -> Iterator[dict]:
    """The base's row on `root`, then (with --budget) the fine-tune's, at both windows, and the scratch run's."""
    yield score("base", base, root, args.positions)
    if args.budget:
        tuned = trained(root, folder / f"{root.name}.tuned.cllm", args.budget, args.threads, FromBase(base.path))
        yield score("fine-tuned", tuned, root, args.positions)
        if tuned.context < base.context:
            yield score("fine-tuned", at_context(tuned, base.context), root, args.positions)
        scratch = trained(root, folder / f"{root.name}.scratch.cllm", args.budget, args.threads, Fresh())
        yield score("scratch", scratch, root, args.positions)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path, help="folders of C code the base was not trained on")
    parser.add_argument("--model", type=Path, default=SHIPPED_BASE, help="the base (default: the shipped one)")
    parser.add_argument("--positions", type=int, default=100, help="line-completion positions per project")
    parser.add_argument("--budget", type=float, default=0.0,
                        help="seconds of training for a fine-tune of the base and a scratch run (0: the base alone)")
    parser.add_argument("--threads", type=int, default=0, help="training threads (0 = one per core)")
    parser.add_argument("--keep", type=Path, help="folder to keep the trained models in (default: a temporary one)")
    args = parser.parse_args(argv)
    base = load_model(args.model)
    with tempfile.TemporaryDirectory(prefix="cllm-base-quality-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(" | ".join(COLUMNS))
        print(" | ".join("---" for _ in COLUMNS), flush=True)
        for root in args.projects:
            for row in project_rows(base, root, args, folder):
                print(" | ".join(_cell(row[column]) for column in COLUMNS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
