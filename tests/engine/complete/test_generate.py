"""Completion with the tiny trained model: KV cache vs full recompute, prefix reuse, prompts, healing, limits,
sampling and cancellation."""

import dataclasses
import threading

import numpy as np
import pytest

from cllm.engine.complete.generate import (MAX_HEALED_TOKENS, Completer, CompletionOptions, Model, Vocabulary, build_prompt,
                                  head_ids, healed_prompt, pick_token, tail_ids)
from cllm.engine.complete.serving import ServedModel
from cllm.engine.model.loaded import load_model
from cllm.engine.model.network import infer, new_cache

MULTI = CompletionOptions(max_tokens=24, multiline=True)


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return load_model(tiny_model_path)


@pytest.fixture(scope="module")
def served(model):
    """The model as the CLI serves it (one completer for every call, as the shared completer was)."""
    served = ServedModel(model)
    served.build()
    return served


class CancelAfter(threading.Event):
    """An Event that becomes set after it has been checked `checks` times (cancellation between tokens)."""

    def __init__(self, checks: int):
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        if self.checks < 0:
            self.set()
        return super().is_set()


def test_kv_cache_decoding_equals_full_recompute_token_by_token(model):
    completer = Completer(model)
    prefix = "int sum(const int *v, int n) {"
    result = completer.complete(prefix, "", MULTI, doc_key="d")
    prompt = build_prompt(model.tokenizer, prefix, "", None, model.context - MULTI.max_tokens).ids
    ids = completer.cached_ids("d")
    assert np.array_equal(ids[:len(prompt)], prompt)
    assert len(ids) - len(prompt) >= 5, result
    for i in range(len(prompt), len(ids)):
        full = infer(model.params, model.config, ids[:i], new_cache(model.config, model.context))
        assert full[ids[i]] >= full.max() - 1e-4, f"token {i - len(prompt)} is not the full recompute's argmax"


def test_typing_one_more_character_reuses_the_cached_prompt(model):
    completer = Completer(model)
    prefix = "static int add(int a, int b) {\n    return a"
    completer.complete(prefix, "", MULTI, doc_key="f")
    run_before, reused_before = completer.tokens_run, completer.tokens_reused
    result = completer.complete(prefix + " ", "", MULTI, doc_key="f")
    prompt_len = len(build_prompt(model.tokenizer, prefix + " ", "", None, model.context - MULTI.max_tokens).ids)
    reused = completer.tokens_reused - reused_before
    assert reused >= prompt_len - 3
    assert completer.tokens_run - run_before <= prompt_len - reused + result.tokens
    assert result.text == Completer(model).complete(prefix + " ", "", MULTI).text


def test_reuse_while_typing_gives_what_a_fresh_completer_gives(model):
    shared = Completer(model)
    source = "int main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n"
    for with_suffix in (False, True):
        for cut in range(10, len(source), 5):
            suffix = source[cut:] if with_suffix else ""
            reused = shared.complete(source[:cut], suffix, MULTI, doc_key="main.c")
            fresh = Completer(model).complete(source[:cut], suffix, MULTI, doc_key="main.c")
            assert (reused.text, reused.stop_reason) == (fresh.text, fresh.stop_reason), cut
    assert shared.tokens_reused > len(source) // 5 * 5


def test_cache_slots_are_bounded_least_recently_used_first(model):
    completer = Completer(model, cache_slots=2)
    for doc in ("a", "b", "a", "c"):
        completer.complete("int x", "", doc_key=doc)
    assert completer.cached_ids("b") is None
    assert completer.cached_ids("a") is not None and completer.cached_ids("c") is not None
    completer.forget("a")
    assert completer.cached_ids("a") is None


def test_cancelled_request_returns_and_leaves_the_cache_consistent(model):
    completer = Completer(model)
    prefix = "int main(void) {"
    cancelled = completer.complete(prefix, "", MULTI, doc_key="m", cancel=CancelAfter(3))
    assert cancelled.stop_reason == "cancelled"
    assert 0 < cancelled.tokens < 5
    again = completer.complete(prefix, "", MULTI, doc_key="m")
    fresh = Completer(model).complete(prefix, "", MULTI, doc_key="m")
    assert (again.text, again.tokens, again.stop_reason) == (fresh.text, fresh.tokens, fresh.stop_reason)
    already = threading.Event()
    already.set()
    assert completer.complete(prefix, "", cancel=already).stop_reason == "cancelled"


def test_fim_prompt_layout_and_truncation(model):
    tok = model.tokenizer
    prefix = "".join(f"int v{i} = {i};\n" for i in range(200))
    suffix = "".join(f"int w{i} = {i};\n" for i in range(200))
    prompt = build_prompt(tok, prefix, suffix, "src/a.c", 48)
    ids = list(prompt.ids)
    assert len(ids) <= 48 and prompt.prefix_end == len(ids)
    assert ids[:2] == [tok.fim_prefix_id, tok.fim_suffix_id]
    middle = ids.index(tok.fim_middle_id)
    header = list(tok.header_ids("src/a.c"))
    assert ids[middle + 1:middle + 1 + len(header)] == header and prompt.prefix_start == middle + 1 + len(header)
    assert tok.decode(ids[2:middle]).startswith("int w0 = 0;\n")  # the start of the suffix is kept
    assert tok.decode(ids[prompt.prefix_start:]).endswith("int v199 = 199;\n")  # and the end of the prefix
    plain = build_prompt(tok, prefix, "  \n", None, 48).ids  # a blank suffix is no suffix
    assert plain[0] == tok.file_id and tok.fim_prefix_id not in plain


def test_only_models_trained_on_suffix_first_fim_get_the_suffix_in_their_prompt(model):
    older = Model(model.config, model.params, model.tokenizer, dataclasses.replace(model.metadata, fim=None))
    assert model.fills_middle and not older.fills_middle
    for m, fim in ((model, True), (older, False)):
        completer = Completer(m)
        completer.complete("int main(void) {\n    int x = ", "\n    return x;\n}\n", doc_key="d")
        assert (m.tokenizer.fim_suffix_id in completer.cached_ids("d")) == fim


def test_truncated_prefix_keeps_its_start_while_typing(model):
    tok = model.tokenizer
    text = "".join(f"x{i} = f({i});\n" for i in range(300))
    ids = tail_ids(tok, text, 40)
    assert 0 < len(ids) <= 40 and tok.decode(ids).endswith("x299 = f(299);\n")
    for extra in ("y", "y1", "y1 ="):
        longer = tail_ids(tok, text + extra, 40)
        assert np.array_equal(longer[:len(ids) - 1], ids[:-1])
    assert len(head_ids(tok, text, 10)) <= 10


def _taken_back(tok, prefix):
    """The healed bytes for `prefix`, checking that prompt and healed bytes together are exactly the prefix."""
    ids, healed = healed_prompt(tok, Vocabulary(tok), prefix, "", None, 40)
    assert ids[0] == tok.file_id and tok.decode_bytes(ids[1:]) + healed == prefix.encode()
    return healed


def test_token_healing_takes_back_the_last_whitespace_character(model):
    tok = model.tokenizer
    assert _taken_back(tok, "int main(void) {\n    ") == b" "
    assert _taken_back(tok, "x;\n") == b"\n"
    agreeing = [tok.token_bytes(int(i)) for i in Vocabulary(tok).agreeing_with(b" ma")]
    assert b" ma" in agreeing and b" " in agreeing
    assert all(b.startswith(b" ma") or b" ma".startswith(b) for b in agreeing)


def test_token_healing_takes_back_a_token_cut_short(model):
    tok = model.tokenizer
    vocabulary = Vocabulary(tok)
    word = max((tok.token_bytes(i) for i in range(5, tok.vocab_size) if tok.token_bytes(i).strip().isalpha()), key=len)
    cuts = [word[:n] for n in range(2, len(word)) if len(tok.encode(word[:n].decode())) <= MAX_HEALED_TOKENS]
    assert len(cuts) >= 2, word
    for cut in cuts:
        assert _taken_back(tok, "x = 1;\n" + cut.decode()) == cut
    whole = _taken_back(tok, "x = 1;\n" + word.decode())
    assert whole == b"" or vocabulary.extends(whole)
    dead_end = next(b for b in (tok.token_bytes(i) for i in range(5, tok.vocab_size)) if not vocabulary.extends(b)
                    and len(tok.encode("x = 1;\n" + b.decode(errors="ignore"))) == len(tok.encode("x = 1;\n")) + 1)
    assert _taken_back(tok, "x = 1;\n" + dead_end.decode()) == b""


@pytest.mark.parametrize("indent", ["    ", "\t\t", "\n  "])
def test_a_healed_indentation_prompt_is_how_training_text_tokenizes(model, indent):
    tok = model.tokenizer
    prefix = "int main(void) {\n" + indent
    ids, healed = healed_prompt(tok, Vocabulary(tok), prefix, "", None, 40)
    trained = tok.encode(prefix + "return 0;")
    assert np.array_equal(trained[:len(ids) - 1], ids[1:])
    assert tok.token_bytes(int(trained[len(ids) - 1])).startswith(healed)


@pytest.mark.parametrize("before, after", [
    ("static int add(int a, int b) {\n    return ", "a"),  # the cursor inside a word
    ("int main(void) {", "\n"),  # the cursor inside the whitespace of an indentation
])
def test_completion_does_not_depend_on_where_the_cursor_splits_a_token(served, before, after):
    whole = served.complete(before, "", CompletionOptions(max_tokens=12))
    assert whole.text.startswith(after)
    split = served.complete(before + after, "", CompletionOptions(max_tokens=12))
    assert after + split.text == whole.text


def test_token_and_time_limits(served):
    result = served.complete("int main(void) {", "", CompletionOptions(max_tokens=2, multiline=True))
    assert result.tokens == 2 and result.stop_reason == "max_tokens"
    assert served.complete("int x", "", CompletionOptions(max_tokens=0)).text == ""
    late = served.complete("int main(void) {", "", CompletionOptions(max_ms=1e-6))
    assert (late.text, late.stop_reason) == ("", "timeout")


def test_a_completion_counts_the_prompt_tokens_the_model_read(model):
    prefix = "int main(void) {\n    int x = "
    ids, _ = healed_prompt(model.tokenizer, Vocabulary(model.tokenizer), prefix, "", None, model.context - 24)
    completer = Completer(model)
    assert completer.complete(prefix, "", MULTI).prompt_tokens == len(ids) > 0
    assert completer.complete(prefix, "", CompletionOptions(max_tokens=0)).prompt_tokens == 0  # nothing was read
    assert not completer.mixes


def test_greedy_is_deterministic_and_sampling_follows_its_seed(served):
    prefix = "static int "
    assert served.complete(prefix).text == served.complete(prefix).text
    hot = CompletionOptions(temperature=1.5, seed=7, max_tokens=12, multiline=True)
    assert served.complete(prefix, "", hot).text == served.complete(prefix, "", hot).text


def test_pick_token_sampling_filters():
    logits = np.array([0.0, 3.0, 1.0, 2.5], np.float32)
    rng = np.random.default_rng(0)
    assert pick_token(logits, CompletionOptions(), None) == 1
    assert pick_token(logits, CompletionOptions(temperature=1.0, top_k=1), rng) == 1
    assert pick_token(logits, CompletionOptions(temperature=1.0, top_p=0.01), rng) == 1
    picks = {pick_token(logits, CompletionOptions(temperature=1.0, top_k=2), rng) for _ in range(200)}
    assert picks == {1, 3}
    assert pick_token(logits, CompletionOptions(), None, allowed=np.array([0, 2])) == 2


@pytest.mark.parametrize("bad", [dict(max_tokens=-1), dict(temperature=-0.5), dict(temperature=2.5), dict(top_p=0.0), dict(max_ms=0),
                                 dict(top_k=-2), dict(stop="abc")])
def test_bad_options_are_refused(served, bad):
    with pytest.raises(ValueError):
        served.complete("int", "", CompletionOptions(**bad))


def test_only_complete_utf8_is_returned(model):
    """A model rigged to repeat the first byte of a two-byte character forever: nothing decodable comes out."""
    from dataclasses import replace

    from cllm.engine.model.params import views

    tok = model.tokenizer
    lead = next(i for i in range(tok.vocab_size) if tok.token_bytes(i) == "é".encode()[:1])
    params = model.params.copy()
    P = views(params, model.config)
    P["ln_f.weight"][:] = 0.0  # the final hidden state becomes ln_f.bias, whatever the input
    P["ln_f.bias"][:] = 1.0
    P["wte"][lead] = 10.0  # so the head always prefers the lone lead byte
    rigged = replace(model, params=params)
    result = Completer(rigged).complete("f(", "", CompletionOptions(max_tokens=5, multiline=True))
    assert (result.text, result.tokens, result.stop_reason) == ("", 5, "max_tokens")


class Fp32Completer(Completer):
    """The completer with every logit computed in fp32 (the int8 greedy head switched off)."""

    fast_greedy = False


@pytest.mark.parametrize("prefix, suffix", [("int main(void) {\n    int ", ""), ("static int ", ""),
                                            ("for (int i = 0; i < n; i++) {\n", "\n}\n"), ("#include <st", "")])
def test_greedy_completions_through_the_int8_head_equal_the_fp32_path(model, prefix, suffix):
    options = CompletionOptions(max_tokens=40, multiline=True, max_ms=1e9)
    fast = Completer(model).complete(prefix, suffix, options)
    exact = Fp32Completer(model).complete(prefix, suffix, options)
    assert (fast.text, fast.tokens, fast.stop_reason) == (exact.text, exact.tokens, exact.stop_reason)


def test_greedy_decoding_token_by_token_equals_the_fp32_path(model):
    cfg, ids = model.config, model.tokenizer.encode("int main(void) {\n")
    plain, fast = new_cache(cfg, model.context), new_cache(cfg, model.context)
    a = infer(model.params, cfg, ids, plain)
    b = infer(model.params, cfg, ids, fast, greedy=model.greedy_head)
    for _ in range(model.context - len(ids) - 1):
        assert int(np.argmax(b)) == int(np.argmax(a))
        token = np.array([np.argmax(a)], np.int32)
        a, b = infer(model.params, cfg, token, plain), infer(model.params, cfg, token, fast, greedy=model.greedy_head)


def test_int8_head_only_for_unrestricted_greedy_picks(model):
    completer = Completer(model)
    assert model.greedy_head is not None and model.greedy_head is model.greedy_head   # built once
    assert model.greedy_head.rows == model.tokenizer.vocab_size
    assert completer._head_for(CompletionOptions(), b"") is model.greedy_head
    assert completer._head_for(CompletionOptions(), b"ma") is None            # token healing restricts the pick
    assert completer._head_for(CompletionOptions(temperature=0.8), b"") is None   # sampling needs every logit
    assert Fp32Completer(model)._head_for(CompletionOptions(), b"") is None


@pytest.mark.parametrize("prefix, suffix, options", [
    ("int sum(const int *v, int n) {\n", "", MULTI),
    ("static int add(int a, int b) {\n    return ", "\n}\n", CompletionOptions(max_tokens=24)),
    ("int main(void) {\n", "    return 0;\n}\n", MULTI),
    ("static int max(int a, int b) {\n", "", CompletionOptions(max_tokens=24, multiline=True, stop=(";", "\n}"))),
    ("int ", "", CompletionOptions(max_tokens=24, multiline=True, temperature=0.8, seed=3)),
])
def test_streamed_pieces_add_up_to_the_completion(model, prefix, suffix, options):
    pieces: list[str] = []
    streamed = Completer(model).complete(prefix, suffix, options, on_text=pieces.append)
    plain = Completer(model).complete(prefix, suffix, options)
    assert "".join(pieces) == streamed.text == plain.text
    assert all(pieces), "no empty pieces"
    if len(plain.text) > 8:
        assert len(pieces) > 1, "long text arrives in several pieces"


class _RecordingScorer:
    """A Scorer that scores as the transformer does and records the prefix each request begins with."""

    def __init__(self):
        self.prefixes = []

    def begin_document(self, prefix, healed, path):
        self.prefixes.append(prefix)

    def append(self, token):
        pass

    def scores(self, logits):
        return logits


def test_a_multi_megabyte_prompt_reads_only_the_text_near_the_cursor(model, monkeypatch):
    from cllm.engine.complete.generate import MAX_PREFIX_CHARS, MAX_SUFFIX_CHARS, PREFIX_ALIGN

    seen = []
    encode = model.tokenizer.encode
    monkeypatch.setattr(model.tokenizer, "encode", lambda text, *a, **kw: seen.append(len(text)) or encode(text, *a, **kw))
    line = "int x = 1; " * 500_000  # 5.5 MB on one line
    scorer = _RecordingScorer()
    Completer(model, scorer=scorer).complete(line, line, CompletionOptions(max_tokens=2))
    assert line.endswith(scorer.prefixes[0]) and len(scorer.prefixes[0]) <= MAX_PREFIX_CHARS + PREFIX_ALIGN
    assert seen and max(seen) <= MAX_PREFIX_CHARS + PREFIX_ALIGN + MAX_SUFFIX_CHARS
