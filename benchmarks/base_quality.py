"""The shipped base before any training, on C projects it never saw: what a user gets the moment cllm is installed.

    .venv/bin/python benchmarks/base_quality.py PROJECT... [--model BASE] [--positions N]

For each project, its files are split into training and held-out files as `cllm train` splits them; the base
completes the held-out files with the workspace cache built from the training files (the mixture it ships with),
prefix only (no text after the cursor), beside the compressors conditioned on the same training files and the
5-gram. One row per project; the last lines give the goals of the shipped base (issue 27).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cllm.engine import evaluate, load_model
from cllm.engine.config import TrainConfig
from cllm.engine.data.corpus import load_documents, scan, split_documents
from cllm.engine.train.shipped import SHIPPED_BASE

COLUMNS = ("project", "files", "mixture bpb", "transformer bpb", "zpaq bpb", "ppmd bpb", "exact", "edit sim",
           "5-gram exact", "5-gram edit")


def project_row(model, root: Path, positions: int) -> dict:
    """The base's report on `root`'s held-out files, with its training files as the cache and the baselines."""
    documents = load_documents(scan(root).documents)
    train_docs, val_docs = split_documents(documents, TrainConfig().val_fraction)
    report = evaluate(model, val_docs, train_docs, positions=positions, prefix_only=True)
    base = report["baselines"]
    return {"project": root.name, "files": len(val_docs), "mixture bpb": report["bits_per_byte"],
            "transformer bpb": report["transformer"]["bits_per_byte"],
            "zpaq bpb": (base.get("zpaq") or {}).get("bits_per_byte"),
            "ppmd bpb": (base.get("ppmd") or {}).get("bits_per_byte"), "exact": report["exact_match"],
            "edit sim": report["edit_similarity"], "5-gram exact": base["kn5"]["exact_match"],
            "5-gram edit": base["kn5"]["edit_similarity"]}


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path, help="folders of C code the base was not trained on")
    parser.add_argument("--model", type=Path, default=SHIPPED_BASE, help="the base (default: the shipped one)")
    parser.add_argument("--positions", type=int, default=100, help="line-completion positions per project")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    rows = [project_row(model, root, args.positions) for root in args.projects]
    print(" | ".join(COLUMNS))
    print(" | ".join("---" for _ in COLUMNS))
    for row in rows:
        print(" | ".join(_cell(row[column]) for column in COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
