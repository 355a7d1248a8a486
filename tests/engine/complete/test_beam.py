"""The small beam: greedy is its first candidate, the winner never scores below it under the scorer, width 1 is
greedy, and the branches it weighs start where greedy was least sure."""

import numpy as np
import pytest

from cllm.engine.complete.beam import Step, branches, step_of
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.match_model import MatchIndex
from cllm.engine.complete.mixture import COMPONENTS, N_BUCKETS, Mixture, MixtureScorer
from cllm.engine.complete.ngram import KneserNey
from cllm.engine.model.loaded import load_model
from conftest import TINY_C_SOURCES

PREFIXES = ["int sum(const int *v, int n) {\n    int ", "static int max(int a, int b) {\n    if (",
            "#include <stdio.h>\n\nint main(void) {\n    ", "    for (int i = 0; i < n; i++) {\n        total"]


def _mixed(tiny_model_path) -> Completer:
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    streams = [tok.encode_document(path, text) for path, text in TINY_C_SOURCES.items()]
    mixture = Mixture(np.full((N_BUCKETS, COMPONENTS), 1.0 / COMPONENTS))
    return Completer(model, scorer=MixtureScorer(tok, KneserNey(streams, tok.vocab_size, tok.eot_id),
                                                 MatchIndex(streams), mixture))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_beam_never_scores_below_greedy_and_its_first_candidate_is_greedy(tiny_model_path, monkeypatch, prefix):
    monkeypatch.setattr("cllm.engine.complete.beam.BUDGET_MS", 1e9)
    completer = _mixed(tiny_model_path)
    greedy = completer.complete(prefix, "", CompletionOptions(max_ms=1e9), path="a.c").text
    chosen = completer.complete(prefix, "", CompletionOptions(max_ms=1e9, beam=3), path="a.c")
    candidates = completer.last_beam
    first = next(c for c in candidates if not c.forced)
    assert first.completion.text == greedy
    assert len(candidates) == 3, "two branches were decoded besides greedy"
    assert chosen.text == candidates[0].completion.text
    assert candidates[0].score >= first.score or first.completion.stop_reason != "repetition"
    assert all(candidates[0].rank() >= c.rank() for c in candidates)


def test_candidates_replaying_the_cache_equal_those_of_a_fresh_cache(tiny_model_path, monkeypatch):
    """The branches replay the greedy start from the document's cache, which the last request's candidates
    overwrote: the same candidates, scored the same, as in a new completer."""
    monkeypatch.setattr("cllm.engine.complete.beam.BUDGET_MS", 1e9)
    options = CompletionOptions(max_ms=1e9, beam=4)
    completer, fresh = _mixed(tiny_model_path), _mixed(tiny_model_path)
    for prefix in PREFIXES[:2]:
        completer.complete(prefix, "", options, path="a.c", doc_key="d")
    before = completer.tokens_run
    completer.complete(PREFIXES[0], "", options, path="a.c", doc_key="d")
    fresh.complete(PREFIXES[0], "", options, path="a.c", doc_key="d")
    assert [(c.forced, c.completion.text) for c in completer.last_beam] == [
        (c.forced, c.completion.text) for c in fresh.last_beam]
    # a cached prefix and a fresh one sum in different orders: scores agree to float rounding, not bit for bit
    assert [c.score for c in completer.last_beam] == pytest.approx([c.score for c in fresh.last_beam], abs=1e-5)
    assert completer.tokens_run - before <= fresh.tokens_run, "no more tokens run than in a cold cache"
    greedy = next(c for c in fresh.last_beam if not c.forced)
    branched = sum(len(c.completion.text) > 0 for c in fresh.last_beam)
    assert fresh.tokens_run < greedy.completion.tokens * branched + len(fresh.cached_ids("d")), \
        "the greedy start of each branch was replayed from the cache, not run again"


def test_width_one_is_greedy_and_leaves_no_candidates(tiny_model_path):
    completer = _mixed(tiny_model_path)
    text = completer.complete(PREFIXES[1], "", CompletionOptions(max_ms=1e9, beam=1), path="a.c").text
    assert completer.last_beam == [] and text == completer.complete(PREFIXES[1], "", CompletionOptions(max_ms=1e9)).text


def test_branches_start_at_the_least_sure_steps():
    steps = [Step(1, -0.1, 2, -5.0), Step(3, -0.7, 4, -0.8), Step(5, -0.2, 6, -3.0), Step(7, -1.0, 8, -1.5)]
    assert branches(steps, 2) == [(1, 4), (1, 3, 5, 8)]


def test_a_step_from_logits_is_normalised_and_respects_the_allowed_tokens():
    logits = np.array([0.0, 2.0, 1.0, 3.0])
    step = step_of(logits, 1, np.array([1, 2]), normalised=False)
    assert step.other == 2
    assert np.exp(step.logprob) == pytest.approx(np.exp(2.0) / np.exp(logits).sum())


def test_a_beam_wider_than_allowed_is_refused():
    with pytest.raises(ValueError, match="beam must be"):
        CompletionOptions(beam=99).validate()
