"""Suggestions worth showing: per project, the share of positions that get a suggestion and the exact match among
those shown, at each eagerness, for a model served with the workspace cache (the shipped base by default).

    .venv/bin/python benchmarks/confidence.py PROJECT... [--model M] [--positions N]

Each project's files are split into training and held-out files as `cllm train` splits them; the model completes
one line at seeded cursors of the held-out files (the text after the line as the suffix, as an editor sends it)
mixed with the workspace cache built from the training files, with the mixture weights it ships. Three tables:
the figures at the thresholds the model carries (engine/complete/confidence.py; the defaults when it has none);
the same with thresholds fitted on the other projects only (how the defaults carry to a project they never saw),
and the statistics a confidence could be, compared by the exact match of the third of the suggestions each ranks
highest (docs/decisions.md, "Confidence of a suggestion"); how thresholds fitted on as few positions as a run
holds out carry to the project's other positions, at each margin a fit could ask for (confidence.FIT_Z). Last,
the thresholds fitted on every project.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from cllm.engine.complete.confidence import (EAGERNESS, FIT_Z, TARGET_PRECISION, fit_threshold, fit_thresholds,
                                             line_confidence, shown_figures, thresholds_or_default)
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.mixture import MixtureScorer, stored_mixture, workspace_models
from cllm.engine.config import TrainConfig
from cllm.engine.data.corpus import load_documents, scan, split_documents
from cllm.engine.eval.evaluate import HELDOUT_POSITIONS, LINE_MAX_TOKENS, sample_positions
from cllm.engine.model.loaded import Model, load_model
from cllm.engine.train.shipped import SHIPPED_BASE

STATISTICS = {
    "product": line_confidence,
    "geometric mean": lambda lps: math.exp(sum(lps) / len(lps)),
    "minimum": lambda lps: math.exp(min(lps)),
    "first token": lambda lps: math.exp(lps[0]),
}


def statistic(name: str, logprobs: list[float] | None) -> float:
    """The statistic `name` of a suggestion's log-probabilities; 0 for a suggestion with no text."""
    return 0.0 if not logprobs else STATISTICS[name](logprobs)


def measure(model: Model, root: Path, positions: int) -> tuple[list[list[float] | None], list[bool]]:
    """(the emitted tokens' log-probabilities, exactly right?) of each one-line completion on `root`'s held-out
    files, by `model` mixed with the cache of its training files."""
    train_docs, val_docs = split_documents(load_documents(scan(root).documents), TrainConfig().val_fraction)
    mixture = stored_mixture({"mixture": model.metadata.mixture})
    cache = workspace_models(model.tokenizer, train_docs)
    scorer = MixtureScorer(model.tokenizer, *cache, mixture) if mixture else None
    completer = Completer(model, scorer=scorer)
    last: list[list[float]] = []  # the log-probabilities of the completion that just ran (none: no text)
    completer.statistic = lambda logprobs: last.append(list(logprobs)) or line_confidence(logprobs)
    line = CompletionOptions(max_tokens=LINE_MAX_TOKENS, max_ms=1e9)
    recorded, exact = [], []
    for p in sample_positions(val_docs, positions):
        doc = val_docs[p.doc]
        last.clear()
        text = completer.complete(doc.text[:p.offset], doc.text[p.line_end:], line, path=doc.path).text
        exact.append(text.split("\n", 1)[0].strip() == doc.text[p.offset:p.line_end].strip())
        recorded.append(last[0] if last else None)
    return recorded, exact


def top_third_precision(scores: list[float], exact: list[bool]) -> float:
    """Exact match of the third of the positions with the highest scores."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:max(1, len(scores) // 3)]
    return float(np.asarray(exact)[order].mean())


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    print()


def eagerness_rows(runs: dict[str, tuple[list[float], list[bool]]], thresholds_for) -> list[tuple[str, ...]]:
    """One row per project: exact match of all, then shown rate and shown exact match at each eagerness."""
    rows = []
    for name, (confidence, exact) in runs.items():
        figures = shown_figures(confidence, exact, thresholds_for(name))
        rows.append((name, str(len(exact)), _cell(float(np.mean(exact))),
                     *(cell for e in EAGERNESS for cell in (_cell(figures[e]["shown_rate"]),
                                                           _cell(figures[e]["shown_exact_match"])))))
    return rows


def margin_rows(runs: dict[str, tuple[list[float], list[bool]]], margins: tuple[float, ...],
                draws: int = 200) -> list[tuple[str, ...]]:
    """Per margin z: the normal threshold fitted on HELDOUT_POSITIONS random positions of a project (as a run
    fits it) and measured on the others, averaged over `draws`: shown rate, exact match among those shown (0 for a
    draw that shows nothing), and the share of draws that fall short of the target, each project in turn."""
    target, rows = TARGET_PRECISION["normal"], []
    for z in margins:
        cells = []
        for confidence, exact in runs.values():
            c, e, rng = np.asarray(confidence), np.asarray(exact), np.random.default_rng(0)
            shown_rates, precisions, short = [], [], 0
            for _ in range(draws):
                order = rng.permutation(len(c))
                fit, rest = order[:HELDOUT_POSITIONS], order[HELDOUT_POSITIONS:]
                shown = c[rest] >= fit_threshold(c[fit], e[fit], target, z)
                precision = float(e[rest][shown].mean()) if shown.any() else 0.0
                shown_rates.append(float(shown.mean()))
                precisions.append(precision)
                short += precision < target
            cells.append(f"{np.mean(shown_rates):.0%} / {np.mean(precisions):.0%} / {short / draws:.0%}")
        rows.append((f"{z:g}" + (" (kept)" if z == FIT_Z else ""), *cells))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="+", type=Path, help="folders of C code (read only)")
    parser.add_argument("--model", type=Path, default=SHIPPED_BASE, help="model file (default: the shipped base)")
    parser.add_argument("--positions", type=int, default=150, help="cursor positions per project")
    args = parser.parse_args()
    model = load_model(args.model)
    measured = {root.name: measure(model, root, args.positions) for root in args.projects}
    runs = {name: ([statistic("product", lps) for lps in logprobs], exact)
            for name, (logprobs, exact) in measured.items()}
    header = ("project", "positions", "exact", *(f"{e} {what}" for e in EAGERNESS for what in ("shown", "precision")))
    carried = thresholds_or_default(model.metadata.thresholds)
    print(f"at the model's thresholds {carried}:")
    print_table(header, eagerness_rows(runs, lambda name: carried))

    def others(name: str) -> dict[str, float]:
        rest = [n for n in runs if n != name] or [name]
        return fit_thresholds([c for n in rest for c in runs[n][0]], [x for n in rest for x in runs[n][1]])

    print("at thresholds fitted on the other projects:")
    print_table(header, eagerness_rows(runs, others))
    print("exact match of the third of the suggestions each statistic ranks highest:")
    print_table(("statistic", *runs, "all"), [
        (stat, *(_cell(top_third_precision([statistic(stat, lps) for lps in measured[n][0]], measured[n][1]))
                 for n in runs),
         _cell(top_third_precision([statistic(stat, lps) for n in runs for lps in measured[n][0]],
                                   [x for n in runs for x in measured[n][1]])))
        for stat in STATISTICS])
    print(f"normal fitted on {HELDOUT_POSITIONS} positions, measured on the rest (shown / exact / draws short of "
          f"{TARGET_PRECISION['normal']:.0%}):")
    print_table(("margin z", *runs), margin_rows(runs, (0.0, 0.5, 1.0, 1.5)))
    every = fit_thresholds([x for conf, _ in runs.values() for x in conf], [x for _, e in runs.values() for x in e])
    print(f"thresholds fitted on every project: {every}")


if __name__ == "__main__":
    main()
