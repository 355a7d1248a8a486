"""The byte-level PPM model of the cache mixture: exact counts, normalised byte and token probabilities."""

import numpy as np
import pytest

from cllm.engine.ppm import DISCOUNT, ORDERS, BytePPM, ByteTable, _byte_prob, _context_keys, _context_stats
from cllm.engine.tokenizer import Tokenizer

TEXT = b"static int add(int a, int b) { return a + b; }\nstatic int sub(int a, int b) { return a - b; }\n"


def _bytes(text: bytes) -> np.ndarray:
    return np.frombuffer(text, np.uint8)


def _byte_probs(workspace: ByteTable, document: ByteTable, history: bytes) -> np.ndarray:
    ctxs = np.zeros(len(ORDERS), np.uint64)
    _context_keys(_bytes(history), len(history), np.array(ORDERS), ctxs)
    stats = np.zeros((len(ORDERS), 2, 2))
    _context_stats(*workspace.arrays, *document.arrays, ctxs, stats)
    return np.array([_byte_prob(workspace.keys, workspace.counts, document.keys, document.counts, ctxs, stats, b,
                                DISCOUNT) for b in range(256)])


def _table(text: bytes, max_slots: int = 1 << 20) -> ByteTable:
    table = ByteTable.for_bytes(len(text), max_slots)
    table.count(_bytes(text), 0, len(text))
    return table


def test_probabilities_after_a_known_string_are_the_ppmd_blend_of_its_counts():
    assert ORDERS[:2] == (0, 2)
    workspace, empty = _table(b"abab"), ByteTable.for_bytes(0)
    p = _byte_probs(workspace, empty, b"ba")
    # order 0: a and b seen twice each (4 bytes, 2 distinct); order 2: after "ba", b once (1 distinct)
    order0 = {b: (2 - DISCOUNT + DISCOUNT * 2 / 256) / 4 for b in b"ab"}
    assert p[ord("b")] == pytest.approx(1 - DISCOUNT + DISCOUNT * order0[ord("b")], rel=1e-12)
    assert p[ord("a")] == pytest.approx(DISCOUNT * order0[ord("a")], rel=1e-12)
    assert p[ord("z")] == pytest.approx(DISCOUNT * DISCOUNT * 2 / 256 / 4, rel=1e-12)
    # the file's own counts come after the workspace's at each order: order 0 of the file has b, a and c once
    # each; after "ba" the file had c, the workspace b
    q = _byte_probs(workspace, _table(b"bac"), b"ba")
    file0 = (1 - DISCOUNT + DISCOUNT * 3 * order0[ord("b")]) / 3
    assert q[ord("b")] == pytest.approx(DISCOUNT * (1 - DISCOUNT + DISCOUNT * file0), rel=1e-12)


@pytest.mark.parametrize("history", [b"", b"s", b"static int a", b"return a", b"never seen before"])
def test_byte_probabilities_sum_to_one(history):
    workspace, document = _table(TEXT), _table(history)
    p = _byte_probs(workspace, document, history)
    assert p.sum() == pytest.approx(1.0, abs=1e-12) and p.min() > 0


def test_a_full_table_stays_consistent_and_normalised():
    small = _table(TEXT * 3, max_slots=64)  # far too small: most contexts are not stored
    assert small.used[0] <= small.limit
    for history in (b"static int a", b"{ return"):
        assert _byte_probs(small, ByteTable.for_bytes(0), history).sum() == pytest.approx(1.0, abs=1e-12)


def test_uncounting_restores_the_table():
    table = _table(TEXT)
    before = table.counts.copy(), table.distinct.copy()
    data = _bytes(TEXT + b"int mul(int a)")
    table.count(data, len(TEXT), len(data))
    assert not np.array_equal(table.counts, before[0])
    table.count(data, len(TEXT), len(data), sign=-1)
    assert np.array_equal(table.counts, before[0]) and np.array_equal(table.distinct, before[1])


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train([TEXT.decode() * 4], vocab_size=300)


def test_token_probabilities_are_their_bytes_times_not_going_on(tokenizer):
    ppm = BytePPM(tokenizer, [TEXT])
    history = _bytes(b"static int add(int a, int b) { ret")
    document = _table(history.tobytes())
    probs = ppm.token_probs(document, history, np.arange(tokenizer.vocab_size))
    assert 0.9 < probs.sum() <= 1.0 + 1e-9  # tokens are disjoint events: the longest token the text starts with
    urn = tokenizer.encode("urn")
    assert len(urn) == 1 and probs.argmax() == urn[0] and probs[urn[0]] > 0.5
    # a token that nothing extends is exactly the product of its bytes' probabilities
    leaves = [t for t in range(tokenizer.vocab_size) if ppm.trie.child_start[ppm.trie.token_node[t] + 1]
              == ppm.trie.child_start[ppm.trie.token_node[t]] and len(tokenizer.token_bytes(t)) == 1]
    leaf = leaves[0]
    expected = _byte_probs(ppm.table, document, history.tobytes())[tokenizer.token_bytes(leaf)[0]]
    assert probs[leaf] == pytest.approx(expected, rel=1e-12)


def test_text_probs_learn_the_document_as_they_go(tokenizer):
    ppm = BytePPM(tokenizer, [b"int x;\n"])
    tokens = tokenizer.encode("double quux(double q);\n" * 3)
    probs = ppm.text_probs(tokens)
    third = len(probs) // 3
    assert probs.shape == (len(tokens),) and probs.max() <= 1.0
    assert np.log(probs[2 * third:]).sum() > np.log(probs[:third]).sum() + 10  # the repeat is cheap
