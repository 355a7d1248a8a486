"""The quality bar of issue 7: train on the demo corpus's training files with defaults and a time budget, then
`cllm eval` on its held-out files next to the xz and 5-gram baselines, and print the table.

    .venv/bin/python benchmarks/quality.py                      # 10-minute budget on training_data/brotli
    .venv/bin/python benchmarks/quality.py --budget 120 --positions 100
    .venv/bin/python benchmarks/quality.py --model existing.cllm  # evaluate only
    .venv/bin/python benchmarks/quality.py --set grad_accum=1 --set vocab_size=4000   # one lever at a time
    .venv/bin/python benchmarks/quality.py --base base.cllm --budget 300 --compare-scratch
                        # fine-tune a base (`cllm pretrain`); table: base alone, fine-tuned, scratch of the same budget
    .venv/bin/python benchmarks/quality.py --model ft.cllm --base base.cllm --scratch scratch.cllm
                        # evaluate models trained beforehand (e.g. side by side, one core each) in one table

Settings not fixed by --set are chosen by the engine's time-budget policy (engine/config.py budget_defaults, or
finetune_defaults with --base), as for `cllm train --time-budget`. With --base, held-out files whose sha256 is in
the base's corpus manifest are left out (as `cllm eval` does).

The bar: bits per byte below xz's and far below the 5-gram's; line exact match at least twice the 5-gram's and
edit similarity clearly above it. The last lines say which parts of the bar pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import fields, replace
from pathlib import Path

from cllm.engine import DEFAULT_POSITIONS, evaluate, evaluation_files, format_table, load_model, train
from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.train.start import Fresh, FromBase
from cllm.engine.eval.evaluate import format_comparison, leave_out_base_files

DEMO = Path(__file__).resolve().parent.parent / "training_data" / "brotli"


def _configs(budget: float, overrides: list[str]) -> tuple[ModelConfig, TrainConfig]:
    """Default configs with the time budget and `name=value` overrides of ModelConfig or TrainConfig fields."""
    configs = {"model": ModelConfig(), "train": TrainConfig(time_budget=budget)}
    for item in overrides:
        name, _, value = item.partition("=")
        owner = next((k for k, cfg in configs.items() if name in {f.name for f in fields(cfg)}), None)
        if owner is None:
            raise SystemExit(f"--set {item}: no ModelConfig or TrainConfig field {name!r}")
        number = float(value) if isinstance(getattr(configs[owner], name), float) or "." in value else int(value)
        configs[owner] = replace(configs[owner], **{name: number})
    return configs["model"], configs["train"]


def _train(corpus: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, out: Path, explicit: set[str],
           base: Path | None = None) -> None:
    """Train (fine-tune `base` when given) with the given settings, stopped by the time budget, the engine's budget
    policy choosing what `explicit` does not name (as `cllm train` does); prints the start, each epoch and the end."""
    def on_event(typed) -> None:
        event = typed.to_json()
        if event["event"] in ("start", "epoch", "done"):
            keys = ("event", "files", "train_files", "val_files", "tokens", "epoch", "train_loss", "val_loss",
                    "val_bits_per_byte", "steps", "seconds", "tokens_per_second", "stop_reason", "vocab_size",
                    "settings", "auto")
            print(json.dumps({k: event[k] for k in keys if k in event}), file=sys.stderr, flush=True)

    train(corpus, model_cfg, train_cfg, out, on_event, explicit=explicit, start=FromBase(base) if base else Fresh())


def _verdict(report: dict) -> list[str]:
    """One line per part of the bar and per predictor (the model alone, and mixed with the cache model)."""
    xz, kn = report["baselines"]["xz"], report["baselines"]["kn5"]
    if kn["bits_per_byte"] is None:
        return ["bar not checked: no baselines (training files unreadable)"]
    lines = []
    for name, row in (("model", report["transformer"]), ("model+cache", report.get("mixture"))):
        checks = [
            ("bits per byte below xz", row["bits_per_byte"] < xz["bits_per_byte"]),
            ("bits per byte below the 5-gram", row["bits_per_byte"] < kn["bits_per_byte"]),
            ("exact match >= 2x the 5-gram", row["exact_match"] >= 2 * kn["exact_match"]),
            ("edit similarity above the 5-gram", row["edit_similarity"] > kn["edit_similarity"]),
        ]
        lines += [f"{'PASS' if ok else 'FAIL'}  {name}: {check}" for check, ok in checks]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEMO, help="folder of C code (default: the demo corpus)")
    parser.add_argument("--budget", type=float, default=600.0, help="training time budget in seconds")
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    parser.add_argument("--model", type=Path, help="evaluate this model instead of training one")
    parser.add_argument("--keep", type=Path, help="where to keep the trained model (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a ModelConfig/TrainConfig default (repeatable), e.g. --set warmup_steps=20")
    parser.add_argument("--base", type=Path, help="fine-tune this base model and compare with it alone")
    parser.add_argument("--compare-scratch", action="store_true",
                        help="also train from scratch with the same budget and settings and compare")
    parser.add_argument("--scratch", type=Path,
                        help="compare with this model trained from scratch (trained beforehand)")
    parser.add_argument("--prefix-only", action="store_true", help="line completions without the suffix")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    args = parser.parse_args(argv)
    explicit = {item.partition("=")[0] for item in args.set}
    with tempfile.TemporaryDirectory(prefix="cllm-quality-") as tmp:
        path = args.model
        if path is None:
            if not args.corpus.is_dir():
                print(f"{args.corpus} is missing: run training_data/fetch_demo.py first", file=sys.stderr)
                return 1
            path = args.keep or Path(tmp) / "model.cllm"
            _train(args.corpus, *_configs(args.budget, args.set), path, explicit, args.base)
        model = load_model(path)
        others = {"base": load_model(args.base)} if args.base else {}
        if args.scratch:
            others["scratch"] = load_model(args.scratch)
        elif args.compare_scratch:
            scratch = (args.keep.with_suffix(".scratch.cllm") if args.keep else Path(tmp) / "scratch.cllm")
            _train(args.corpus, *_configs(args.budget, args.set), scratch, explicit)
            others["scratch"] = load_model(scratch)
        documents, train_documents, _ = evaluation_files(model, None)
        documents, left_out = leave_out_base_files(documents, model, others.get("base"))
        if left_out:
            print(f"left out (in the base's corpus): {', '.join(left_out)}", file=sys.stderr)
        def measure(which):
            return evaluate(which, documents, train_documents, positions=args.positions, prefix_only=args.prefix_only)

        report = measure(model)
        report.update({name: measure(other) for name, other in others.items()})
    print(json.dumps(report) if args.json else format_table(report))
    if not args.json:
        print("\n".join(_verdict(report)))
        if others:
            print("\n" + format_comparison({"fine-tuned" if args.base else "model": report,
                                             **{name: report[name] for name in others}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
