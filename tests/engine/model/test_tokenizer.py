"""Byte-level BPE tokenizer: exact round trips, fixed special ids, vocabulary size, serialisation."""

import numpy as np
import pytest

from cllm.engine.model.checkpoint import load_checkpoint
from cllm.engine.model.tokenizer import MIN_VOCAB_SIZE, SPECIAL_TOKENS, ChunkedEncoder, Tokenizer
from conftest import TINY_C_SOURCES

C_SAMPLE = """#include <stdio.h>
/* Calculate the sum of an array. */
static int sum(const int *values, int n) {
    int total = 0;
    for (int i = 0; i < n; i++) {
        total += values[i];
    }
    return total;
}

int main(void) {
    int values[] = {1, 2, 3};
    printf("%d\\n", sum(values, 3));
    return 0;
}
"""

ROUND_TRIP_TEXTS = [
    "",
    "x",
    C_SAMPLE,
    "héllo wörld, 日本語, emoji 🎉, Ω≈ç√∫",
    "tabs\tand\r\nCRLF\rlines\n\n\n   trailing   ",
    "\x00\x01\x7f NUL and control bytes",
    'char *s = "<|endoftext|>"; /* <|file|><|fim_prefix|><|fim_suffix|><|fim_middle|> */',
    "<|endoftext|>",
    "<|endoftext",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([C_SAMPLE] * 20 + ["int x = 42; // comment\n"] * 10, vocab_size=400)


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip_is_byte_exact(tok, text):
    ids = tok.encode(text)
    assert ids.dtype == np.int32
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_random_unicode_round_trips(tok):
    rng = np.random.default_rng(0)
    codepoints = rng.integers(1, 0x2FFFF, size=3000)
    text = "".join(chr(c) for c in codepoints if not 0xD800 <= c <= 0xDFFF)
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_have_fixed_ids(tok):
    assert (tok.eot_id, tok.file_id, tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id) == (0, 1, 2, 3, 4)
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_bytes(token_id) == token.encode()


def test_literal_special_strings_are_not_special(tok):
    ids = tok.encode("a <|endoftext|> b <|file|> c <|fim_middle|>")
    assert not np.isin(ids, np.arange(len(SPECIAL_TOKENS))).any()


def test_vocab_size_respected_and_learned(tok):
    assert tok.vocab_size <= 400
    assert tok.vocab_size > MIN_VOCAB_SIZE  # merges were learned on top of the 256 bytes + specials
    assert len(tok.encode(C_SAMPLE)) < len(C_SAMPLE.encode()) / 2  # the merges actually compress code
    big = Tokenizer.train([C_SAMPLE], vocab_size=10_000)
    assert big.vocab_size < 10_000  # a tiny corpus stops early; the real size is reported


def test_vocab_size_too_small_is_refused():
    with pytest.raises(ValueError, match="at least 261"):
        Tokenizer.train(["int x;"], vocab_size=100)


def test_token_bytes_rebuild_partial_utf8(tok):
    text = "日本語"
    ids = tok.encode(text)
    assert b"".join(tok.token_bytes(int(i)) for i in ids) == text.encode()
    with pytest.raises(ValueError, match="out of range"):
        tok.token_bytes(tok.vocab_size)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size + 5])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(np.array([5, -1], dtype=np.int32))
    assert tok.decode(np.array([], dtype=np.int32)) == ""


def test_json_round_trip(tok):
    again = Tokenizer.from_json(tok.to_json())
    assert again.vocab_size == tok.vocab_size
    np.testing.assert_array_equal(again.encode(C_SAMPLE), tok.encode(C_SAMPLE))
    assert not np.isin(again.encode("<|file|>"), [tok.file_id]).any()  # literal specials stay ordinary after reload


def test_from_json_refuses_garbage():
    with pytest.raises(ValueError, match="not a valid tokenizer"):
        Tokenizer.from_json("{not json")


def test_document_and_header_ids(tok):
    doc = tok.encode_document("src/main.c", "int x;\n")
    header = tok.header_ids("src/main.c")
    assert doc[0] == tok.file_id and doc[-1] == tok.eot_id
    np.testing.assert_array_equal(doc[: len(header)], header)
    assert tok.decode(doc[1:-1]) == "src/main.c\nint x;\n"


def test_encode_batch_matches_encode(tok):
    texts = [C_SAMPLE, "", "日本", "<|file|>"]
    for ids, text in zip(tok.encode_batch(texts), texts):
        np.testing.assert_array_equal(ids, tok.encode(text))


def test_chunked_encoder_tokenizes_like_the_tokenizer_while_text_grows(tiny_model_path):
    tok = Tokenizer.from_json(load_checkpoint(tiny_model_path).tokenizer_json)
    text = "".join(TINY_C_SOURCES.values()) * 2
    encoder = ChunkedEncoder(tok, chunk_chars=40)
    for end in range(0, len(text), 37):
        assert np.array_equal(encoder.encode(text[:end]), tok.encode(text[:end]))
