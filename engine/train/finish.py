"""The end of a run: the blend with the base, the completion mixture's fit and the held-out line scoring.

After fine-tuning, the best weights move part of the way back towards the base's while that validates better
(`blend_with_base`, the shares TUNED_SHARES). Then the mixture's weights are fitted on held-out files (a workspace
run; a base from `cllm pretrain` on its own sample of its corpus, `BaseCorpusRecord`) and the line exact match of
the completer the model ships is measured, and the confidence a suggestion needs to be shown at each eagerness is
fitted on the same lines (`score_heldout`). The weight-independent inputs of that scoring are
prepared once (`heldout_inputs`), at a budgeted run's first stop check, so that their time is spent before its
stop decisions; `scoring_probes` lets the budget (engine/train/budget.py) time the rest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import ModelConfig, TrainConfig
from ..events import TrainingMetadata
from ..model.loaded import Model
from ..complete.mixture import MixtureScorer, copying_parts, fitted_mixture, stored_mixture, workspace_models
from ..data import corpus
from ..complete.confidence import fit_thresholds
from ..eval.evaluate import HELDOUT_POSITIONS, line_exact_match, line_scores
from ..eval.heldout import affordable, batch_seconds, heldout_mixture, scoring_batches
from ..events import ManifestEntry
from .budget import time_scoring
from .errors import TrainCancelled
from .prepare import Data
from .start import RunRecord, State

MIXTURE_HELDOUT_BYTES = 200_000  # held-out text the completion mixture's weights are fitted on, at most
MIXTURE_TRAIN_BYTES = 2_000_000  # training text behind the workspace models of that fit, at most
TUNED_SHARES = (0.85, 0.7, 0.55, 0.4)  # see docs/decisions.md, "Blending a fine-tuned model back towards its base"


@dataclass
class BaseCorpusRecord:
    """What a base's model file records of its corpus (`cllm pretrain`): the manifest, and the held-out files and
    their folders' training files its mixture weights are fitted on (loaded when the fit runs)."""

    manifest: list[ManifestEntry]
    mixture_sample: Callable[[], tuple[list, list]]


@dataclass
class _HeldoutInputs:
    """What the end-of-run held-out scoring needs that does not depend on the weights, prepared once: deterministic
    samples of at most MIXTURE_HELDOUT_BYTES held-out and MIXTURE_TRAIN_BYTES training text, the workspace models
    over the latter and the copying models' probabilities on the held-out documents the fit scores (None without
    a workspace folder or held-out files), and with a time budget what the rest of the scoring will cost."""

    val_docs: list
    train_docs: list
    fit_docs: list = field(default_factory=list)  # the held-out documents the mixture is fitted on
    models: tuple | None = None
    copying: list | None = None
    batches: int = 0
    batch_seconds: float = 0.0
    fit_seconds: float = 0.0


class Finish:
    """The end of one run over `data` with the run's `state` (its current and best weights)."""

    def __init__(self, data: Data, model_cfg: ModelConfig, cfg: TrainConfig, state: State, context: int,
                 base_params: np.ndarray | None, cancel: threading.Event, fim: str | None,
                 base_corpus: BaseCorpusRecord | None = None):
        self.data, self.model_cfg, self.cfg, self.state = data, model_cfg, cfg, state
        self.context = context  # positions the model completes with and the held-out scoring's window
        self.base_params, self.cancel, self.fim, self.base_corpus = base_params, cancel, fim, base_corpus
        self.base_share: float | None = None  # of the base's weights in the stored ones, once blended
        self.mixture: dict | None = None  # cache-model weights (engine/complete/mixture.py), fitted at the end
        self.line_exact_match: float | None = None  # of the shipped completer on held-out lines
        self.thresholds: dict[str, float] | None = None  # confidence to show a suggestion, fitted on those lines
        self.heldout: _HeldoutInputs | None = None  # prepared once (heldout_inputs)

    def blends(self) -> int:
        """Validation passes the blends with the base may take (none without a base)."""
        return len(TUNED_SHARES) if self.base_params is not None else 0

    def blend_with_base(self, record: RunRecord,
                        validation: Callable[[np.ndarray], tuple[float, float] | None]) -> None:
        """Fine-tuning: replace the best weights by their blend with the base's, tuned * s + base * (1 - s), going
        down TUNED_SHARES while each blend validates better than the weights before it (none kept when the first
        does not beat the fine-tuned ones). Stops where it is when `validation` is cancelled meanwhile."""
        if self.base_params is None or record.best_params is None:
            return
        tuned, share = record.best_params.copy(), 1.0
        for candidate in TUNED_SHARES:
            blend = (candidate * tuned + (1.0 - candidate) * self.base_params).astype(np.float32)
            scored = validation(blend)
            if scored is None or scored[0] >= record.best_val:
                break
            record.keep_if_best(*scored, blend)
            share = candidate
        self.base_share = round(1.0 - share, 6)

    def score_heldout(self, reason: str) -> str:
        """Fit the completion mixture's weights, then measure the line exact match of the completer the model ships
        (the mixture, else the transformer alone) at HELDOUT_POSITIONS and fit the confidence thresholds of its
        suggestions there (engine/complete/confidence.py). Returns "cancelled", with nothing
        recorded, when the cancel flag is set meanwhile, else `reason`."""
        def check_cancel(*_) -> None:
            if self.cancel.is_set():
                raise TrainCancelled("cancelled while scoring the held-out files")

        d, weights = self.data, self.state.record.weights(self.state.params)
        try:
            h = self.heldout_inputs()
            if h.models is not None:
                self.mixture = heldout_mixture(weights, self.model_cfg, d.tokenizer, h.fit_docs, h.train_docs,
                                               self.context, h.models, progress=check_cancel, copying=h.copying)
            mixture = stored_mixture({"mixture": self.mixture}) if self.mixture else None
            scorer = None if h.models is None or mixture is None else MixtureScorer(d.tokenizer, *h.models, mixture)
            check_cancel()
            scores = line_scores(self.shipped_model(weights), h.val_docs, scorer)
            if scores is not None:
                self.line_exact_match = scores.summary()["exact_match"]
                self.thresholds = fit_thresholds(scores.confidence, scores.exact)
        except TrainCancelled:
            self.mixture, self.line_exact_match, self.thresholds = None, None, None
            return "cancelled"
        if self.base_corpus is not None:
            held_out, neighbours = self.base_corpus.mixture_sample()
            self.mixture = heldout_mixture(weights, self.model_cfg, d.tokenizer, held_out, neighbours, self.context)
        return reason

    def heldout_inputs(self) -> _HeldoutInputs:
        """The held-out scoring's weight-independent inputs (_HeldoutInputs), prepared at the first call: at the end
        of the run, or at a budgeted run's first stop check."""
        if self.heldout is None:
            d = self.data
            h = _HeldoutInputs(
                val_docs=corpus.load_documents(corpus.sample_documents(d.val_docs, MIXTURE_HELDOUT_BYTES)),
                train_docs=corpus.load_documents(corpus.sample_documents(d.train_docs, MIXTURE_TRAIN_BYTES)))
            if d.root is not None and h.val_docs and h.train_docs:
                h.models = workspace_models(d.tokenizer, h.train_docs)
                h.fit_docs, h.copying = h.val_docs, copying_parts(*h.models, d.tokenizer, h.val_docs)
                if self.cfg.time_budget is not None:
                    self._time_scoring(h)
            self.heldout = h
        return self.heldout

    def _time_scoring(self, h: _HeldoutInputs) -> None:
        """With a time budget, what the mixture's fit will cost (budget.time_scoring): one forward batch timed, the
        held-out documents that many batches afford kept (heldout.affordable: all, or a sample of which only the
        first file may need more on its own), and the weights' fit on them rehearsed on a uniform transformer."""
        d, window = self.data, self.context
        headers = [len(d.tokenizer.header_ids(doc.path)) for doc in h.val_docs]
        lengths = [(len(probs) + n, n) for (probs, _), n in zip(h.copying, headers)]

        def afford(max_batches: int) -> int:
            fit = {doc.path for doc in affordable(h.val_docs, lengths, window, max_batches)}
            kept = [i for i, doc in enumerate(h.val_docs) if doc.path in fit]
            h.fit_docs, h.copying = [h.val_docs[i] for i in kept], [h.copying[i] for i in kept]
            return scoring_batches([lengths[i] for i in kept], window)

        def rehearse_fit() -> None:
            uniform = [np.full(len(probs), math.log(d.tokenizer.vocab_size)) for probs, _ in h.copying]
            sure = [np.zeros(len(probs), dtype=np.int64) for probs, _ in h.copying]
            fitted_mixture(uniform, [np.exp(-nats) for nats in uniform], sure, *h.models, d.tokenizer, h.fit_docs,
                           h.copying)

        cost = time_scoring(self.cfg.time_budget, lambda: batch_seconds(
            self.state.params, self.model_cfg, window, h.models[0], [length for length, _ in lengths]),
            afford, rehearse_fit)
        h.batches, h.batch_seconds, h.fit_seconds = cost.batches, cost.batch_seconds, cost.fit_seconds

    def shipped_model(self, weights: np.ndarray) -> Model:
        """The completion model of `weights`, as the written file will load it."""
        return Model(self.model_cfg, weights, self.data.tokenizer,
                     TrainingMetadata(seq_len=self.cfg.seq_len, context=self.context, fim=self.fim))

    def complete_lines(self, positions: int) -> None:
        """The budget's probe: `positions` held-out line completions with the current weights, the transformer
        alone (the mixture's work per token is not counted)."""
        line_exact_match(self.shipped_model(self.state.params), self.heldout_inputs().val_docs, positions=positions)

