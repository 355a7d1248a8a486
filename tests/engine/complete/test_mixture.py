"""The workspace cache mixture: a document cache n-gram, EM-fitted mixture weights, decoding from the mixture."""

import numpy as np
import pytest

from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from cllm.engine.data.corpus import Document
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.eval.heldout import document_scores, heldout_mixture
from cllm.engine.complete.serving import ServedModel
from cllm.engine.model.loaded import load_model
from cllm.engine.complete.match_model import NO_MATCH, MatchIndex
from cllm.engine.complete.mixture import (
    COMPONENTS, N_BUCKETS, POOL, UNCERTAINTY_EDGES, UNCERTAINTY_LEVELS, DocumentCache, Mixture, MixtureScorer,
    PooledProbs, cache_distribution, cache_probs, copying_parts, evidence_bucket, fit_mixture, fitted_mixture,
    mixture_metadata, pooled, softmax, stored_mixture, uncertainty_level, workspace_models,
)
from cllm.engine.complete.ngram import KneserNey, interpolate
from conftest import TINY_C_SOURCES, write_tiny_sources

VOCAB = 40


def _document() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.integers(5, 30, 50), np.tile(np.arange(5, 12), 5), rng.integers(5, 30, 20)]).astype(np.int32)


def test_cache_distribution_sums_to_one_and_matches_cache_probs():
    tokens = _document()
    probs, matched = cache_probs(tokens, VOCAB)
    for i in (0, 1, 7, 60, 84, len(tokens) - 1):
        p, order = cache_distribution(tokens[:i], VOCAB)
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and p.min() > 0
        assert p[tokens[i]] == pytest.approx(probs[i], rel=1e-12) and order == matched[i]
    assert matched[0] == 0 and matched[70] == 4
    assert probs[70:85].min() > 0.5  # the repeated pattern is copied from earlier in the document


def test_fit_mixture_rows_sum_to_one_and_favour_the_better_component():
    rng = np.random.default_rng(0)
    n = 2000
    probs = np.stack([rng.uniform(0.5, 0.9, n)] + [rng.uniform(0.0, 0.1, n) for _ in range(COMPONENTS - 1)], axis=1)
    buckets = rng.integers(0, N_BUCKETS, n)
    mixture = fit_mixture(probs, buckets)
    assert mixture.weights.shape == (N_BUCKETS, COMPONENTS)
    np.testing.assert_allclose(mixture.weights.sum(axis=1), 1.0)
    assert mixture.weights[:, 0].min() > 0.8
    assert np.log(mixture.mix(probs, buckets)).sum() > np.log(probs.mean(axis=1)).sum()


def test_fit_mixture_sends_a_sparse_bucket_to_the_weights_of_its_match_level():
    level = 3
    dense, sparse = evidence_bucket(5, 4, level), evidence_bucket(0, 0, level)
    other = evidence_bucket(1, 1, NO_MATCH)
    right = [1e-3, 1e-3, 1e-3, 1.0, 1e-3]  # the match component alone gives the token its mass
    probs = np.array([right] * 400 + [[0.5, 0.01, 0.01, 1e-3, 0.01]] * 1600 + [right])
    buckets = np.array([dense] * 400 + [other] * 1600 + [sparse])
    weights = fit_mixture(probs, buckets).weights
    assert weights[sparse, 3] > 0.8 > 0.3 > weights[other, 3]  # its level trusts the match, the overall mix does not


def test_uncertainty_levels_split_sure_unsure_and_lost_positions():
    sure = softmax(np.r_[20.0, np.zeros(VOCAB - 1)])
    two_way = softmax(np.r_[10.0, 10.0, np.zeros(VOCAB - 2)])  # about ln 2 nats: still sure
    spread = softmax(np.r_[np.full(6, 10.0), np.zeros(VOCAB - 6)])  # about ln 6 = 1.8 nats
    lost = softmax(np.zeros(10_000))  # ln 10000 = 9.2 nats
    assert [uncertainty_level(*d) for d in (sure, two_way, spread, lost)] == [0, 0, 1, UNCERTAINTY_LEVELS - 1]
    assert UNCERTAINTY_EDGES[0] < np.log(6) < UNCERTAINTY_EDGES[1]


def test_fit_mixture_weighs_the_transformer_by_its_uncertainty():
    """At the same copying evidence, the transformer is right where it is sure and the 5-gram where it is lost: the
    fitted weights follow the transformer's uncertainty level."""
    sure, lost = evidence_bucket(2, 1, NO_MATCH, 0), evidence_bucket(2, 1, NO_MATCH, UNCERTAINTY_LEVELS - 1)
    transformer_right = [0.9, 1e-3, 1e-3, 1e-4, 0.2]
    kn_right = [1e-3, 0.6, 1e-3, 1e-4, 0.2]
    probs = np.array([transformer_right] * 300 + [kn_right] * 300)
    weights = fit_mixture(probs, np.array([sure] * 300 + [lost] * 300)).weights
    assert weights[sure, 0] > 0.8 and weights[lost, 1] > 0.8


def _all_on(component: int) -> list[float]:
    """Mixture weights with every bit of mass on one component (0 transformer, 1 5-gram, 2 cache, 3 match,
    4 pooled)."""
    return [float(c == component) for c in range(COMPONENTS)]


@pytest.mark.parametrize("component", [2, 3])
def test_mixture_completer_follows_a_copying_model_when_weighted_to_it(tiny_model_path, component):
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    stream = tok.encode_document("x.c", "int zzz_counter = 0;\n")
    kn = KneserNey([stream], tok.vocab_size, tok.eot_id)
    copying = fit_mixture(np.tile([1e-9] * COMPONENTS, (50, 1)), np.zeros(50, dtype=np.int64))
    copying.weights[:] = _all_on(component)
    prefix = "int zzz_counter = 0;\nint zzz_counter = 0;\nint y;\nint zzz_"  # retyping the line above is cut
    completer = Completer(model, scorer=MixtureScorer(tok, kn, MatchIndex([stream]), copying))
    assert completer.mixes
    assert completer.complete(prefix, "", CompletionOptions(max_ms=1e9), path="x.c").text == "counter = 0;"


def test_document_cache_extended_token_by_token_equals_a_fresh_one():
    tokens = _document()
    kn = KneserNey([tokens[::2], tokens[1::3]], VOCAB, pad_id=0)
    cache = DocumentCache(tokens[:1], VOCAB)
    for i in range(1, len(tokens)):
        p, order = cache.distribution()
        fresh, fresh_order = cache_distribution(tokens[:i], VOCAB)
        np.testing.assert_allclose(p, fresh, rtol=1e-12)
        assert order == fresh_order
        levels, kn_order = cache.ngram_levels(kn)
        p_kn = interpolate(levels, VOCAB)
        fresh_kn, fresh_kn_order = kn.matched_distribution(tokens[:i])
        np.testing.assert_allclose(p_kn, fresh_kn, rtol=1e-12)
        assert kn_order == fresh_kn_order
        cache.append(int(tokens[i]))
    assert np.array_equal(cache.tokens, tokens)


CACHE_ONLY = "int zzz_counter = 0;\nint zzz_counter = 0;\nint y;\nint zzz_"  # not the line above: that is cut


def test_pooled_is_a_distribution_and_pools_equal_models_into_themselves():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=VOCAB)
    p_kn, p_cache = rng.dirichlet(np.ones(VOCAB)), rng.dirichlet(np.ones(VOCAB))
    p = pooled(softmax(logits)[1], p_kn, p_cache)
    assert p.sum() == pytest.approx(1.0, abs=1e-12) and p.min() > 0
    same, log_same = softmax(logits)
    np.testing.assert_allclose(np.exp(log_same), same, rtol=1e-12)
    assert same.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(pooled(np.log(same), same, same), same, rtol=1e-9)  # the exponents sum to 1
    assert sum(POOL) == pytest.approx(1.0)


def test_pooled_probs_are_the_pooled_component_the_scorer_decodes_from():
    tokens = _document()
    kn = KneserNey([tokens[::2], tokens[1::3]], VOCAB, pad_id=0)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(len(tokens), VOCAB + 3))  # rows may be wider than the vocabulary
    logits *= rng.uniform(0.0, 8.0, size=(len(tokens), 1))  # sharp and flat rows: every uncertainty level
    start = 10
    pool = PooledProbs(kn, tokens, start, VOCAB)
    pool.add(logits[:30])
    pool.add(logits[30:len(tokens) - start])
    for i in (0, 1, 29, 30, 60, len(tokens) - start - 1):
        context = tokens[:start + i]
        expected = pooled(softmax(logits[i, :VOCAB])[1], kn.matched_distribution(context)[0],
                          cache_distribution(context, VOCAB)[0])[tokens[start + i]]
        assert pool.probs[i] == pytest.approx(expected, rel=1e-9)
        assert pool.uncertainty[i] == uncertainty_level(*softmax(logits[i, :VOCAB]))
    assert set(pool.uncertainty.tolist()) == set(range(UNCERTAINTY_LEVELS))


def test_the_scorer_mixes_a_distribution_with_the_pooled_component(tiny_model_path):
    tok = load_model(tiny_model_path).tokenizer
    stream = tok.encode_document("x.c", CACHE_ONLY)
    uniform = Mixture(np.full((N_BUCKETS, COMPONENTS), 1 / COMPONENTS))
    scorer = MixtureScorer(tok, KneserNey([stream], tok.vocab_size, tok.eot_id), MatchIndex([stream]), uniform)
    scorer.begin_document(CACHE_ONLY, b"", "x.c")
    logits = np.random.default_rng(3).normal(size=tok.vocab_size).astype(np.float32)
    p = np.exp(scorer.scores(logits))
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    scorer.mixture = Mixture(np.tile([0.25, 0.25, 0.25, 0.25, 0.0], (N_BUCKETS, 1)))
    assert not np.allclose(np.exp(scorer.scores(logits)), p)  # the pooled component changes the distribution


def test_the_scorer_picks_the_weights_of_the_transformers_uncertainty(tiny_model_path):
    tok = load_model(tiny_model_path).tokenizer
    stream = tok.encode_document("x.c", CACHE_ONLY)
    weights = np.tile(_all_on(2), (N_BUCKETS, 1))  # unsure or lost: all weight on the document cache
    weights[::UNCERTAINTY_LEVELS] = _all_on(0)  # sure: all weight on the transformer
    scorer = MixtureScorer(tok, KneserNey([stream], tok.vocab_size, tok.eot_id), MatchIndex([stream]), Mixture(weights))
    scorer.begin_document(CACHE_ONLY, b"", "x.c")
    sharp = np.zeros(tok.vocab_size, np.float32)
    sharp[7] = 30.0
    flat = np.zeros(tok.vocab_size, np.float32)
    np.testing.assert_allclose(np.exp(scorer.scores(sharp)), softmax(sharp)[0], atol=1e-12)
    cache = scorer._document.distribution()[0]
    np.testing.assert_allclose(np.exp(scorer.scores(flat)), cache, rtol=1e-9)


def test_the_scorers_pooled_term_is_the_pooled_component_the_fit_reads(tiny_model_path):
    """Weights fitted on PooledProbs mean the same while decoding only if MixtureScorer.scores computes the same
    pooled probability in the same context: with all weight on the pooled component, at every position of a file."""
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    docs = [Document(rel, text, len(text)) for rel, text in sorted(TINY_C_SOURCES.items())]
    kn, index = workspace_models(tok, docs[1:])
    header, text = tok.header_ids(docs[0].path), tok.encode(docs[0].text)
    tokens = np.concatenate([header, text])
    logits = np.random.default_rng(5).normal(size=(len(text), tok.vocab_size)).astype(np.float32)
    pool = PooledProbs(kn, tokens, len(header), tok.vocab_size)
    pool.add(logits)
    only_pooled = Mixture(np.tile(np.eye(COMPONENTS)[COMPONENTS - 1], (N_BUCKETS, 1)))
    scorer = MixtureScorer(tok, kn, index, only_pooled)
    # the positions whose text prefix encodes to the file's own first tokens (else the scorer sees another context)
    same = [i for i in range(len(text)) if np.array_equal(tok.encode(tok.decode(text[:i])), text[:i])]
    assert len(same) > 0.8 * len(text)
    served = []
    for i in same:
        scorer.begin_document(tok.decode(text[:i]), b"", docs[0].path)
        served.append(np.exp(scorer.scores(logits[i])[text[i]]))
    np.testing.assert_allclose(served, pool.probs[same], rtol=1e-9)


def test_weights_stored_before_the_pooled_component_serve_with_none_on_it():
    rng = np.random.default_rng(4)
    old = rng.dirichlet(np.ones(COMPONENTS - 1), N_BUCKETS)
    entry = {key: value for key, value in mixture_metadata(Mixture(np.zeros((N_BUCKETS, COMPONENTS)))).items()
             if key not in ("pool", "weights")}
    mixture = stored_mixture({"mixture": {**entry, "weights": old.tolist()}})
    assert mixture.weights.shape == (N_BUCKETS, COMPONENTS)
    np.testing.assert_allclose(mixture.weights[:, :COMPONENTS - 1], old)
    assert not mixture.weights[:, COMPONENTS - 1].any()
    current = mixture_metadata(Mixture(rng.dirichlet(np.ones(COMPONENTS), N_BUCKETS)))
    assert stored_mixture({"mixture": current}) is not None
    assert stored_mixture({"mixture": {**current, "pool": [1.0, 0.0, 0.0]}}) is None  # fitted for another pool
    assert stored_mixture({"mixture": {**current, "weights": old.tolist()}}) is None  # four weights need no "pool"


def test_weights_stored_before_the_uncertainty_levels_serve_at_every_level():
    rng = np.random.default_rng(6)
    old = rng.dirichlet(np.ones(COMPONENTS), N_BUCKETS // UNCERTAINTY_LEVELS)
    entry = {key: value for key, value in mixture_metadata(Mixture(np.zeros((N_BUCKETS, COMPONENTS)))).items()
             if key != "uncertainty_edges"}
    mixture = stored_mixture({"mixture": {**entry, "weights": old.tolist()}})
    for copying, uncertainty in [(0, 0), (7, 1), (len(old) - 1, UNCERTAINTY_LEVELS - 1)]:
        np.testing.assert_allclose(mixture.weights[copying * UNCERTAINTY_LEVELS + uncertainty], old[copying])
    current = mixture_metadata(Mixture(rng.dirichlet(np.ones(COMPONENTS), N_BUCKETS)))
    assert stored_mixture({"mixture": {**current, "uncertainty_edges": [2.0]}}) is None  # fitted for other levels
    assert stored_mixture({"mixture": {**current, "weights": old.tolist()}}) is None  # old rows need no edges


@pytest.fixture
def mixture_model(tiny_model_path, tmp_path):
    """The tiny model trained "on" a workspace holding its sources, with mixture weights fitted on one held-out
    file and stored in its metadata as the trainer does; returns (model path, workspace)."""
    workspace = tmp_path / "ws"
    write_tiny_sources(workspace)
    model = load_model(tiny_model_path)
    paths = sorted(TINY_C_SOURCES)
    docs = [Document(rel, TINY_C_SOURCES[rel], len(TINY_C_SOURCES[rel])) for rel in paths]
    entry = heldout_mixture(model.params, model.config, model.tokenizer, docs[:1], docs[1:], model.context)
    ckpt = load_checkpoint(tiny_model_path)
    ckpt.metadata.update(workspace=str(workspace), train_files=paths[1:], val_files=paths[:1], mixture=entry)
    save_checkpoint(tmp_path / "mixed.cllm", ckpt)
    return tmp_path / "mixed.cllm", workspace


def test_mixture_weights_round_trip_through_the_checkpoint(mixture_model):
    path, _ = mixture_model
    entry = load_checkpoint(path).metadata["mixture"]
    mixture = stored_mixture({"mixture": entry})
    assert mixture.weights.shape == (N_BUCKETS, COMPONENTS)
    np.testing.assert_allclose(mixture.weights.sum(axis=1), 1.0)
    assert mixture_metadata(mixture) == entry
    assert stored_mixture({}) is None
    assert stored_mixture({"mixture": {**entry, "weights": [[1.0, 0.0]]}}) is None
    assert stored_mixture({"mixture": {**entry, "match_orders": entry["match_orders"][:1]}}) is None  # another layout


def _built(model) -> ServedModel:
    """The model served as the CLI serves it: its workspace index built before the first completion."""
    served = ServedModel(model)
    served.build()
    return served


def test_real_completions_use_the_stored_mixture(mixture_model):
    path, _ = mixture_model
    ckpt = load_checkpoint(path)
    ckpt.metadata["mixture"]["weights"] = [_all_on(2)] * N_BUCKETS  # all weight on the document cache
    save_checkpoint(path, ckpt)
    served = _built(load_model(path))
    assert served.mixes
    options = CompletionOptions(max_ms=1e9)
    assert served.complete(CACHE_ONLY, "", options, path="x.c").text == "counter = 0;"
    assert served.complete(CACHE_ONLY, "", options, path="x.c").text != Completer(served.model).complete(
        CACHE_ONLY, "", options, path="x.c").text


def test_completions_fall_back_to_the_transformer_without_weights_or_workspace(mixture_model, tiny_model_path):
    path, workspace = mixture_model
    assert not _built(load_model(tiny_model_path)).mixes  # no weights stored
    for rel in TINY_C_SOURCES:
        (workspace / rel).unlink()
    served = _built(load_model(path))
    assert not served.mixes
    assert served.complete("int main(void) {", "").text == Completer(served.model).complete("int main(void) {", "").text


def test_generated_tokens_are_context_but_never_copied():
    written = np.arange(1, 9, dtype=np.int32)
    completion = [9, 10, 11, 12, 13, 14, 15, 16, 9, 10, 11, 12, 13, 14]  # repeats itself
    index = MatchIndex([])
    caches = {}
    for generated in (False, True):
        cache = DocumentCache(written, VOCAB)
        for token in completion:
            cache.append(token, generated=generated)
        caches[generated] = cache
    assert caches[False].match(index)[0] == 15  # real text that repeats itself is copied on
    assert caches[True].match(index) == (-1, NO_MATCH)  # a completion does not feed on itself
    assert caches[True].distribution()[0][15] < caches[False].distribution()[0][15]
    assert caches[True].tokens.tolist() == caches[False].tokens.tolist()


@pytest.mark.parametrize("written", [0, 1])
def test_a_completion_of_an_almost_empty_document_copies_nothing(written):
    cache = DocumentCache(np.arange(1, written + 1, dtype=np.int32), VOCAB)
    for token in [5, 6, 5, 6, 5, 6, 5, 6, 5, 6]:
        cache.append(token, generated=True)
    assert cache.match(MatchIndex([])) == (-1, NO_MATCH)
    p, _ = cache.distribution()
    assert np.isclose(p.sum(), 1.0) and p[5] == p[7]  # nothing generated was learnt


def test_a_rewound_and_extended_cache_equals_a_fresh_one():
    tokens = _document()
    index = MatchIndex([tokens[::2]])
    kn = KneserNey([tokens[::2], tokens[1::3]], VOCAB, pad_id=0)
    cache = DocumentCache(tokens[:60], VOCAB)
    for token in tokens[60:70]:
        cache.append(int(token), generated=True)  # the last completion's output goes with the rewind
    cache.rewind(50)
    for token in tokens[50:80]:
        cache.append(int(token))
    fresh = DocumentCache(tokens[:80], VOCAB)
    np.testing.assert_array_equal(cache.tokens, fresh.tokens)
    np.testing.assert_allclose(cache.distribution()[0], fresh.distribution()[0], rtol=1e-12)
    np.testing.assert_allclose(interpolate(cache.ngram_levels(kn)[0], VOCAB), interpolate(fresh.ngram_levels(kn)[0], VOCAB))
    assert cache.match(index) == fresh.match(index)


def test_typing_reuses_the_document_cache_with_the_same_completions(mixture_model):
    model = load_model(mixture_model[0])
    text = TINY_C_SOURCES[sorted(TINY_C_SOURCES)[0]]
    typed = [text[:n] for n in (60, 61, 62, 58, 90)] + ["int other(void) {\n  return "]  # type, delete, jump
    reused = _built(model)
    assert reused.mixes
    options = CompletionOptions(max_ms=1e9)
    for prefix in typed:
        fresh = _built(load_model(mixture_model[0]))
        assert reused.complete(prefix, "", options, path="a.c").text == fresh.complete(prefix, "", options, path="a.c").text


def test_a_fit_on_precomputed_copying_probabilities_equals_the_fit_that_computes_them(tiny_model_path):
    """The trainer computes the copying models' probabilities before the last step (they do not depend on the
    weights) and hands them to the fit at the end: the weights must be the same, bitwise."""
    model = load_model(tiny_model_path)
    docs = [Document(rel, text, len(text)) for rel, text in sorted(TINY_C_SOURCES.items())]
    kn, index = workspace_models(model.tokenizer, docs[1:])
    scored = document_scores(model.params, model.config, model.tokenizer, docs[:1], model.context, kn)
    computed, parts = fitted_mixture(*scored, kn, index, model.tokenizer, docs[:1])
    given, _ = fitted_mixture(*scored, kn, index, model.tokenizer, docs[:1],
                              copying_parts(kn, index, model.tokenizer, docs[:1]))
    assert np.array_equal(computed.weights, given.weights)
    assert parts[0][0].shape[1] == COMPONENTS
    (probs, buckets), = copying_parts(kn, index, model.tokenizer, docs[:1])
    probs[:, 2] = 1.0  # the match model "predicts" every token: the fit must read the probabilities it is given
    altered, _ = fitted_mixture(*scored, kn, index, model.tokenizer, docs[:1], [(probs, buckets)])
    used = np.unique(buckets + scored[2][0])
    assert (altered.weights[used, 3] > computed.weights[used, 3]).all()
