"""`cllm eval`: how well does a model predict and complete C code it has not trained on, next to baselines?

On the same files in one run: bits per byte (sliding windows as long as the training sequences, over UTF-8 bytes
so that any tokenizer compares fairly), line completion at seeded cursors (exact match, edit similarity; with
`prefix_only` no text after the cursor), the share of multi-line completions that keep the function parsing, and
the baselines (compressors conditioned on the training files, a Kneser-Ney 5-gram). The headline is what the model
ships: the mixture when the checkpoint carries its weights (cross-fitted across the files), the transformer alone
always beside it. A fine-tuned model is also compared with its base (and a scratch twin on request), leaving out
files the base learned from. docs/quality.md shows a report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..train.base import manifest_hashes
from .baselines import COMPRESSORS, compressor_baselines
from ..model.checkpoint import CheckpointError, load_checkpoint, weights_sha256
from ..data.corpus import Document, load_documents, read_documents, scan
from ..errors import CllmError
from ..complete.confidence import DEFAULT_EAGERNESS, EAGERNESS, shown_figures, thresholds_or_default
from ..complete.generate import Completer, Completion, CompletionOptions, Scorer
from .heldout import Progress, bits_and_bytes, document_nats, document_scores
from ..model.loaded import Model, load_model
from ..complete.match_model import MatchIndex
from ..complete.mixture import Mixture, MixtureScorer, fit_mixture, fitted_mixture, stored_mixture, workspace_models
from ..complete.ngram import KneserNey
from .syntax import count_errors, function_body_spans, keeps_syntax
from ..model.tokenizer import Tokenizer

DEFAULT_POSITIONS = 300
HELDOUT_POSITIONS = 60  # the trainer's end-of-run line exact match: a few seconds, seeded, so runs compare
LINE_MAX_TOKENS = 64
MULTILINE_MAX_TOKENS = 128
_NO_DEADLINE_MS = 1e9  # evaluation is about quality: never cut a completion short on time


class EvalError(CllmError):
    """Evaluation cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Position:
    """A cursor position: the completion should produce text[offset:line_end] (the rest of the line)."""

    doc: int
    offset: int
    line_end: int
    kind: str  # "mid": after at least one non-blank character of the line; "start": after the line's indentation


@dataclass
class Scores:
    """Line-completion results of one predictor."""

    exact: list[bool] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)  # of each completion, when the predictor gives one

    def add(self, predicted: str, truth: str, confidence: float | None = None) -> None:
        predicted, truth = predicted.strip(), truth.strip()
        self.exact.append(predicted == truth)
        self.similarity.append(edit_similarity(predicted, truth))
        if confidence is not None:
            self.confidence.append(confidence)

    def summary(self) -> dict[str, float | None]:
        if not self.exact:
            return {"exact_match": None, "edit_similarity": None}
        return {"exact_match": float(np.mean(self.exact)), "edit_similarity": float(np.mean(self.similarity))}

    def shown(self, thresholds: Mapping[str, float]) -> dict[str, Any]:
        """The shown rate and the exact match among shown suggestions at the normal eagerness, and per eagerness
        (engine/complete/confidence.py); empty without confidences."""
        if len(self.confidence) != len(self.exact) or not self.exact:
            return {}
        figures = shown_figures(self.confidence, self.exact, thresholds)
        return {**{key: figures[DEFAULT_EAGERNESS][key] for key in ("shown_rate", "shown_exact_match")},
                "eagerness": figures}


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of characters) between `a` and `b`."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len(a), len(b)); 1.0 for two empty strings."""
    longer = max(len(a), len(b))
    return 1.0 if longer == 0 else 1.0 - levenshtein(a, b) / longer


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of every line; end is the offset of its newline (or of the end of text)."""
    spans, start = [], 0
    for line in text.split("\n"):
        spans.append((start, start + len(line)))
        start += len(line) + 1
    return spans


def _candidates(text: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """Mid-line candidates (first allowed offset, last allowed offset, line end) and line-start ones (offset, line end).

    Mid-line: after at least one non-blank character, with non-blank text still to come on the line.
    Line start: a non-blank line after a non-blank line, the cursor after the indentation.
    """
    mid, start = [], []
    previous_blank = True
    for line_start, line_end in _lines(text):
        line = text[line_start:line_end]
        body = line.strip()
        if body:
            first = line_start + len(line) - len(line.lstrip())
            last = line_start + len(line.rstrip())
            if last - 1 > first:
                mid.append((first + 1, last - 1, line_end))
            if not previous_blank:
                start.append((first, line_end))
        previous_blank = not body
    return mid, start


def sample_positions(documents: Sequence[Document], count: int, seed: int = 0) -> list[Position]:
    """`count` cursor positions drawn deterministically from `seed`: half mid-line, half at line starts.

    Lines are drawn uniformly over all files (so long lines are not favoured), then the column uniformly within a
    mid-line candidate. When one kind runs short the other fills in. Sorted by file and offset.
    """
    rng = np.random.default_rng(seed)
    mid, start = [], []
    for d, doc in enumerate(documents):
        m, s = _candidates(doc.text)
        mid += [(d, *c) for c in m]
        start += [(d, *c) for c in s]
    n_mid = min(len(mid), max(count - len(start), count // 2))
    n_start = min(len(start), count - n_mid)
    positions = []
    for i in rng.choice(len(mid), size=n_mid, replace=False) if n_mid else []:
        d, lo, hi, end = mid[i]
        positions.append(Position(d, int(rng.integers(lo, hi + 1)), end, "mid"))
    for i in rng.choice(len(start), size=n_start, replace=False) if n_start else []:
        d, offset, end = start[i]
        positions.append(Position(d, offset, end, "start"))
    return sorted(positions, key=lambda p: (p.doc, p.offset))


def _kn_bits(kn: KneserNey, tokenizer: Tokenizer, documents: Sequence[Document]) -> float:
    """Total bits of the documents' text tokens under the n-gram model, given the same path headers as the model."""
    bits = 0.0
    for doc in documents:
        header = tokenizer.header_ids(doc.path)
        tokens = np.concatenate([header, tokenizer.encode(doc.text)])
        bits -= float(kn.logprobs(tokens, start=len(header)).sum()) / math.log(2)
    return bits


def _baselines(tok: Tokenizer, documents: Sequence[Document], train_documents: Sequence[Document],
               n_bytes: int, kn: KneserNey | None) -> dict[str, Any]:
    """Bits per byte of the compressors, each held-out file conditioned on the training bytes (xz, and zpaq and PPMd
    where installed), and of the 5-gram `kn` over the training files (None without training files)."""
    if kn is None:
        return {**{name: {"bits_per_byte": None} for name in COMPRESSORS}, "kn5": {"bits_per_byte": None}}
    train_bytes = b"".join(d.text.encode("utf-8") for d in train_documents)
    compressors = compressor_baselines(train_bytes, [d.text.encode("utf-8") for d in documents])
    compressors["xz"]["train_bytes"] = len(train_bytes)
    return {**compressors, "kn5": {"bits_per_byte": _kn_bits(kn, tok, documents) / n_bytes, "train_tokens": kn.tokens}}


def _fold_mixtures(scored: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]], kn: KneserNey,
                   index: MatchIndex, tokenizer: Tokenizer, documents: Sequence[Document]
                   ) -> tuple[list[Mixture], float, np.ndarray]:
    """Cross-fitted mixtures (engine/complete/mixture.py) from the transformer's document_scores on `documents`:
    file d is in fold d % 2 and gets the weights fitted on the other fold (in-sample with a single file). Returns
    (the mixture for each fold, total mixed bits, mean weights over all tokens when fitted on every file)."""
    every, parts = fitted_mixture(*scored, kn, index, tokenizer, documents)

    def fit(indices: Sequence[int]) -> Mixture:
        return fit_mixture(np.concatenate([parts[i][0] for i in indices]), np.concatenate([parts[i][1] for i in indices]))

    folds = [range(0, len(parts), 2), range(1, len(parts), 2)]
    fitted = [fit(folds[1] or folds[0]), fit(folds[0])]  # fitted[f] scores the files of fold f
    bits = -sum(float(np.log2(fitted[i % 2].mix(*parts[i])).sum()) for i in range(len(parts)))
    buckets = np.concatenate([b for _, b in parts])
    return fitted, bits, every.weights[buckets].mean(axis=0)


Predictor = Callable[[int, str, str], str | Completion]  # a Completion carries its confidence


def _line_completions(predictors: dict[str, Predictor], documents: Sequence[Document],
                      positions: Sequence[Position], progress: Progress | None,
                      prefix_only: bool = False) -> dict[str, Scores]:
    """Each predictor's one-line completion at `positions`, scored against the real rest of each line.

    A predictor gets (document index, text before the cursor, text after the end of the line, or "" when
    `prefix_only`) and returns the line's completion."""
    scores = {name: Scores() for name in predictors}
    for i, p in enumerate(positions):
        doc = documents[p.doc]
        prefix, truth = doc.text[:p.offset], doc.text[p.offset:p.line_end]
        suffix = "" if prefix_only else doc.text[p.line_end:]
        for name, predict in predictors.items():
            predicted = predict(p.doc, prefix, suffix)
            text, confidence = ((predicted, None) if isinstance(predicted, str)
                                else (predicted.text, predicted.confidence))
            scores[name].add(text.split("\n", 1)[0], truth, confidence)
        if progress:
            progress("line completion", i + 1, len(positions))
    return scores


def line_scores(model: Model, documents: Sequence[Document], scorer: Scorer | None = None, *,
                positions: int = HELDOUT_POSITIONS, seed: int = 0) -> Scores | None:
    """The one-line completions at `positions` seeded cursors of `documents` by `model`'s completer with `scorer`
    (None: the transformer alone), scored with their confidences; None without positions."""
    sampled = sample_positions(documents, positions, seed)
    if not sampled:
        return None
    completer = Completer(model, scorer=scorer)
    line = CompletionOptions(max_tokens=LINE_MAX_TOKENS, multiline=False, max_ms=_NO_DEADLINE_MS)

    def predict(d: int, prefix: str, suffix: str) -> Completion:
        return completer.complete(prefix, suffix, line, path=documents[d].path)

    return _line_completions({"model": predict}, documents, sampled, None)["model"]


def line_exact_match(model: Model, documents: Sequence[Document], scorer: Scorer | None = None, *,
                     positions: int = HELDOUT_POSITIONS, seed: int = 0) -> float | None:
    """Share of one-line completions exactly right (whitespace trimmed) of line_scores; None without positions."""
    scores = line_scores(model, documents, scorer, positions=positions, seed=seed)
    return None if scores is None else scores.summary()["exact_match"]


def _syntax_share(model: Model, documents: Sequence[Document], positions: Sequence[Position], count: int,
                  progress: Progress | None) -> tuple[float | None, int]:
    """(share of multi-line completions adding no parse error, positions checked) over up to `count` positions
    that lie inside a function body; the completion replaces the rest of the line."""
    options = CompletionOptions(max_tokens=MULTILINE_MAX_TOKENS, multiline=True, max_ms=_NO_DEADLINE_MS)
    spans: dict[int, list[tuple[int, int]]] = {}
    chosen = []
    for p in positions:
        text = documents[p.doc].text
        if p.doc not in spans:
            spans[p.doc] = function_body_spans(text.encode("utf-8"))
        at = len(text[:p.offset].encode("utf-8"))
        if any(lo < at < hi for lo, hi in spans[p.doc]):
            chosen.append(p)
    chosen = chosen[::max(1, len(chosen) // count)][:count] if count else []
    errors: dict[int, int] = {}
    completer = Completer(model)  # the transformer alone, whatever the model ships with
    ok = []
    for i, p in enumerate(chosen):
        doc = documents[p.doc]
        if p.doc not in errors:
            errors[p.doc] = count_errors(doc.text.encode("utf-8"))
        prefix, suffix = doc.text[:p.offset], doc.text[p.line_end:]
        completion = completer.complete(prefix, suffix, options, path=doc.path).text
        ok.append(keeps_syntax(doc.text, p.offset, p.line_end, completion, errors[p.doc]))
        if progress:
            progress("syntax", i + 1, len(chosen))
    return (float(np.mean(ok)) if ok else None), len(ok)


def evaluation_files(model: Model, on: str | Path | None) -> tuple[list[Document], list[Document], dict[str, Any]]:
    """(documents to evaluate, training documents for the baselines, notes) for a model and an optional --on path.

    Without `on`: the held-out files the checkpoint recorded, read from its workspace. With `on`: every C file under
    it. The baselines always learn from the model's recorded training files when they can still be read.
    """
    workspace = model.metadata.workspace
    root = Path(workspace) if workspace else None
    train_docs: list[Document] = []
    if root is not None and root.is_dir():
        train_docs, _ = read_documents(root, [str(path) for path in model.metadata.train_files])
    notes: dict[str, Any] = {"train_files": len(train_docs)}
    if on is not None:
        path = Path(on)
        if not path.is_dir():
            raise EvalError(f"--on {on}: not a folder")
        docs = load_documents(scan(path).documents)
        if not docs:
            raise EvalError(f"--on {on}: no C files (.c, .h) found")
        notes["source"] = str(path.resolve())
        return list(docs), train_docs, notes
    held_out = [str(path) for path in model.metadata.val_files]
    if not held_out:
        raise EvalError("the model records no held-out files (trained with no validation split?); "
                        "evaluate on a folder instead: cllm eval MODEL --on PATH")
    if root is None or not root.is_dir():
        raise EvalError(f"the workspace the model was trained on ({workspace or 'not recorded'}) is gone, so its "
                        "held-out files cannot be read; evaluate on a folder instead: cllm eval MODEL --on PATH")
    docs, missing = read_documents(root, held_out)
    if not docs:
        raise EvalError(f"none of the {len(held_out)} held-out files recorded in the model exist under {root} any more; "
                        "evaluate on a folder instead: cllm eval MODEL --on PATH")
    notes.update(source=f"held-out files of {root}", missing_files=len(missing))
    return docs, train_docs, notes


def _add_workspace_predictors(predictors: dict[str, Predictor], model: Model, documents: Sequence[Document],
                              scored: Any, workspace: tuple, line: CompletionOptions) -> dict[str, Any]:
    """Add the 5-gram's and the cross-fitted mixture's line predictors; the mixture's total bits (divided by the
    bytes by the caller) and mean weights."""
    tok, (kn, index) = model.tokenizer, workspace

    def header_and(d: int, prefix: str) -> np.ndarray:
        return np.concatenate([tok.header_ids(documents[d].path), tok.encode(prefix)])

    stops = (tok.eot_id, tok.file_id, tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id)
    predictors["kn5"] = lambda d, prefix, suffix: kn.greedy_line(
        header_and(d, prefix), tok.decode_bytes, LINE_MAX_TOKENS, stops)
    fitted, mixed_bits, weights = _fold_mixtures(scored, kn, index, tok, documents)
    completers = [Completer(model, scorer=MixtureScorer(tok, kn, index, m)) for m in fitted]
    predictors["mixture"] = lambda d, prefix, suffix: completers[d % 2].complete(
        prefix, suffix, line, path=documents[d].path)
    return {"bits_per_byte": mixed_bits,
            "mean_weights": dict(zip(("transformer", "kn5", "cache", "match", "pooled"), weights.round(3).tolist()))}


def evaluate(model: Model, documents: Sequence[Document], train_documents: Sequence[Document], *,
             positions: int = DEFAULT_POSITIONS, syntax_positions: int | None = None, seed: int = 0,
             progress: Progress | None = None, prefix_only: bool = False) -> dict[str, Any]:
    """All measures for `model` on `documents`, with baselines trained on `train_documents`; a JSON-ready dict
    (bits_per_byte, exact_match, edit_similarity, syntax_ok, baselines, transformer, mixture, ...; baselines and
    mixture None without training documents). `prefix_only`: line completions see no suffix."""
    if not documents:
        raise EvalError("no files to evaluate")
    if not any(doc.text for doc in documents):
        raise EvalError("the files to evaluate are all empty")
    began = time.monotonic()
    tok = model.tokenizer
    window = model.context
    workspace = workspace_models(tok, train_documents) if train_documents else None
    if workspace is None:
        nats, scored = document_nats(model.params, model.config, tok, documents, window, progress), None
    else:
        scored = document_scores(model.params, model.config, tok, documents, window, workspace[0], progress)
        nats = scored[0]
    bits, n_bytes = bits_and_bytes(nats, documents)
    baselines = _baselines(tok, documents, train_documents, n_bytes, workspace[0] if workspace else None)
    line = CompletionOptions(max_tokens=LINE_MAX_TOKENS, multiline=False, max_ms=_NO_DEADLINE_MS)
    plain = Completer(model)  # the transformer alone, whatever the model ships with
    predictors: dict[str, Predictor] = {
        "model": lambda d, prefix, suffix: plain.complete(prefix, suffix, line, path=documents[d].path)}
    mixture = None
    if workspace is not None:
        mixture = _add_workspace_predictors(predictors, model, documents, scored, workspace, line)
        mixture["bits_per_byte"] /= n_bytes
    sampled = sample_positions(documents, positions, seed)
    scores = _line_completions(predictors, documents, sampled, progress, prefix_only)
    thresholds = thresholds_or_default(model.metadata.thresholds)
    if workspace is not None:
        baselines["kn5"].update(scores["kn5"].summary())
        baselines["kn5"]["exact_shared_with_model"] = sum(a and b for a, b in zip(scores["model"].exact, scores["kn5"].exact))
        mixture.update(scores["mixture"].summary(), **scores["mixture"].shown(thresholds))
    n_syntax = max(1, positions // 5) if syntax_positions is None else syntax_positions
    syntax_ok, syntax_checked = _syntax_share(model, documents, sampled, n_syntax, progress)
    transformer = {"bits_per_byte": bits / n_bytes, **scores["model"].summary(), **scores["model"].shown(thresholds)}
    ships_mixture = mixture is not None and stored_mixture({"mixture": model.metadata.mixture}) is not None
    headline = mixture if ships_mixture else transformer
    return {
        "bits_per_byte": headline["bits_per_byte"],
        "exact_match": headline["exact_match"],
        "shown_rate": headline.get("shown_rate"), "shown_exact_match": headline.get("shown_exact_match"),
        "eagerness": headline.get("eagerness"),
        "edit_similarity": headline["edit_similarity"],
        "completer": "transformer+cache" if ships_mixture else "transformer",
        "transformer": transformer,
        "syntax_ok": syntax_ok,
        "baselines": baselines,
        "mixture": mixture,
        "files": len(documents),
        "bytes": n_bytes,
        "positions": len(sampled), "prefix_only": prefix_only,
        "syntax_positions": syntax_checked,
        "window": window,
        "seconds": round(time.monotonic() - began, 1),
    }


def recorded_base(model: Model) -> tuple[Model | None, str | None]:
    """(the base `model` was fine-tuned from, None) when its file is still there with the same weights, else
    (None, why not) for a fine-tuned model, (None, None) for one trained from scratch."""
    record = model.metadata.base
    if record is None:
        return None, None
    try:
        if weights_sha256(load_checkpoint(record.path)) != record.weights_sha256:
            return None, f"the base model {record.path} has changed since fine-tuning; not compared"
        return load_model(record.path), None
    except CheckpointError as exc:
        return None, f"the base model cannot be compared: {exc}"


def leave_out_base_files(documents: Sequence[Document], *models: Model | None) -> tuple[list[Document], list[str]]:
    """(documents none of the `models`' corpus manifests list, the paths of those left out): a base has seen them,
    so they would flatter it and the models fine-tuned from it."""
    seen = set().union(*(manifest_hashes(m.metadata) for m in models if m is not None))
    kept = [doc for doc in documents if doc.sha256 not in seen]
    return kept, [doc.path for doc in documents if doc.sha256 in seen]


def format_comparison(reports: dict[str, dict[str, Any]]) -> str:
    """Models evaluated on the same files side by side (name -> evaluate() report), then the first report's
    compressors and 5-gram (they depend only on the tokenizer)."""
    header = ("", "bits/byte", "+cache bits/byte", "exact", "+cache exact", "+cache edit sim")
    rows = []
    for name, r in reports.items():
        t, m = r["transformer"], r.get("mixture") or {}
        rows.append((name, _fmt(t["bits_per_byte"], ".3f"), _fmt(m.get("bits_per_byte"), ".3f"),
                     _fmt(t["exact_match"], ".1%"), _fmt(m.get("exact_match"), ".1%"),
                     _fmt(m.get("edit_similarity"), ".3f")))
    first = next(iter(reports.values()))["baselines"]
    rows += [(name, _fmt(first[name]["bits_per_byte"], ".3f"), "-", "-", "-", "-") for name in COMPRESSORS]
    kn = first["kn5"]
    rows.append(("5-gram KN", _fmt(kn["bits_per_byte"], ".3f"), "-", _fmt(kn.get("exact_match"), ".1%"), "-",
                 _fmt(kn.get("edit_similarity"), ".3f")))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
                     for r in [header, *rows])


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _shown_rows(eagerness: str, model: dict[str, Any], mix: dict[str, Any], compressors: int) -> list[tuple]:
    """The table's rows of one eagerness: the share of positions shown a suggestion, the exact match of those."""
    def cell(part: dict[str, Any], key: str) -> str:
        return _fmt(((part.get("eagerness") or {}).get(eagerness) or {}).get(key), ".1%")

    dashes = ("-",) * (compressors + 1)
    return [(f"shown at {eagerness} eagerness", cell(model, "shown_rate"), cell(mix, "shown_rate"), *dashes),
            ("  exact match of those shown", cell(model, "shown_exact_match"), cell(mix, "shown_exact_match"),
             *dashes)]


def format_table(report: dict[str, Any]) -> str:
    """The report as a text table: the model, the model mixed with the cache model, and the baselines."""
    baselines = report["baselines"]
    kn, compressors = baselines["kn5"], [baselines[name] for name in COMPRESSORS]
    model, mix = report["transformer"], report.get("mixture") or {}
    dashes = ("-",) * len(compressors)
    rows = [
        ("bits per byte (lower is better)", _fmt(model["bits_per_byte"], ".3f"), _fmt(mix.get("bits_per_byte"), ".3f"),
         *(_fmt(c["bits_per_byte"], ".3f") for c in compressors), _fmt(kn["bits_per_byte"], ".3f")),
        ("line exact match", _fmt(model["exact_match"], ".1%"), _fmt(mix.get("exact_match"), ".1%"), *dashes,
         _fmt(kn.get("exact_match"), ".1%")),
        ("line edit similarity", _fmt(model["edit_similarity"], ".3f"), _fmt(mix.get("edit_similarity"), ".3f"),
         *dashes, _fmt(kn.get("edit_similarity"), ".3f")),
        ("multi-line syntax ok", _fmt(report["syntax_ok"], ".1%"), "-", *dashes, "-"),
        *(row for eagerness in EAGERNESS for row in _shown_rows(eagerness, model, mix, len(compressors))),
    ]
    header = ("", "model", "model+cache", *COMPRESSORS, "5-gram KN")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
             for r in [header, *rows]]
    context = " (prefix only)" if report.get("prefix_only") else ""
    lines.append(f"{report['files']} files, {report['bytes']:,} bytes, {report['positions']} completion positions"
                 f"{context} ({report['syntax_positions']} multi-line), window {report['window']} tokens, "
                 f"{report['seconds']} s")
    lines.append(f"completions from this model use: {report['completer']}")
    if baselines["xz"]["bits_per_byte"] is None:
        lines.append("baselines not computed: the model's training files could not be read")
    lines += [f"{name}: {baselines[name]['note']}" for name in COMPRESSORS if baselines[name].get("note")]
    return "\n".join(lines)
