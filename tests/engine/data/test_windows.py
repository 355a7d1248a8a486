"""Windows, shuffling and the fill-in-the-middle transform of engine/data/windows.py."""

import os

import numpy as np
import pytest

from cllm.engine.data.corpus import Document, scan
from cllm.engine.data.windows import (
    IGNORE,
    FimTokens,
    count_targets,
    epoch_plan,
    fill_batch,
    num_windows,
    sequential_plan,
    spread_plan,
    stream_bytes,
    token_file,
    token_stream,
)
from cllm.engine.model.tokenizer import Tokenizer

FIM = FimTokens(prefix=2, suffix=3, middle=4, eot=0)
SEQ = 8


def _stream(n: int) -> np.ndarray:
    return np.arange(100, 100 + n, dtype=np.int32)


def _batch(stream, plan, start, rows):
    inputs = np.zeros((rows, SEQ), np.int32)
    targets = np.zeros((rows, SEQ), np.int32)
    filled = fill_batch(inputs, targets, stream, plan, start, SEQ, FIM)
    return filled, inputs, targets


def test_every_token_after_the_first_is_a_target_once_per_epoch():
    stream = _stream(45)
    n = num_windows(stream.size, SEQ)
    assert n == 6  # 44 targets in windows of 8
    filled, inputs, targets = _batch(stream, sequential_plan(n), 0, n)
    assert filled == n
    real = targets[targets != IGNORE]
    assert np.array_equal(np.sort(real), stream[1:])
    assert count_targets(targets) == 44
    # targets are the inputs shifted by one
    assert np.array_equal(inputs[0, 1:], targets[0, :-1])
    # the short last window is padded: eot inputs, ignored targets
    assert np.all(targets[-1, 4:] == IGNORE) and np.all(inputs[-1, 4:] == FIM.eot)


def test_epoch_plan_is_deterministic_per_seed_and_epoch():
    a = epoch_plan(50, SEQ, seed=3, epoch=1, fim_rate=0.5)
    b = epoch_plan(50, SEQ, seed=3, epoch=1, fim_rate=0.5)
    c = epoch_plan(50, SEQ, seed=3, epoch=2, fim_rate=0.5)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.fim, b.fim) and np.array_equal(a.cuts, b.cuts)
    assert not np.array_equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(50))
    assert 10 < a.fim.sum() < 40
    assert a.cuts.min() >= 0 and a.cuts.max() <= SEQ + 1 - 4 and len(set(a.cuts.tolist())) > SEQ // 2


def test_fim_window_puts_the_suffix_first_then_prefix_and_keeps_length():
    stream = _stream(4 * SEQ + 1)
    plan = epoch_plan(4, SEQ, seed=0, epoch=0, fim_rate=1.0)
    _, inputs, targets = _batch(stream, plan, 0, 4)
    for row in range(4):
        window, cut = int(plan.order[row]), int(plan.cuts[row])
        sequence = np.concatenate([inputs[row], targets[row, -1:]])
        content = stream[window * SEQ:window * SEQ + SEQ + 1 - 4]
        expected = np.concatenate([[FIM.prefix, FIM.suffix], content[cut:], [FIM.middle], content[:cut], [FIM.eot]])
        assert np.array_equal(sequence, expected)
        assert len(sequence) == SEQ + 1


def test_fim_rate_zero_gives_plain_windows_and_partial_batches():
    stream = _stream(3 * SEQ + 1)
    plan = epoch_plan(3, SEQ, seed=1, epoch=0, fim_rate=0.0)
    filled, inputs, targets = _batch(stream, plan, 2, 4)
    assert filled == 1
    begin = int(plan.order[2]) * SEQ
    assert np.array_equal(inputs[0], stream[begin:begin + SEQ])
    assert np.array_equal(targets[0], stream[begin + 1:begin + SEQ + 1])


def test_token_stream_concatenates_documents_and_counts_their_bytes():
    docs = [Document("a.c", "int main(void) { return 0; }\n", 30), Document("b/é.h", "#define X 1\n", 12)]
    tokenizer = Tokenizer.train([d.text for d in docs], 300)
    stream = token_stream(docs, tokenizer)
    first = tokenizer.encode_document("a.c", docs[0].text)
    assert stream.dtype == np.int32
    assert np.array_equal(stream[:len(first)], first)
    assert stream[-1] == tokenizer.eot_id and np.count_nonzero(stream == tokenizer.file_id) == 2
    assert stream_bytes(docs) == len("a.c\n" + docs[0].text) + len(("b/é.h\n" + docs[1].text).encode())
    assert token_stream([], tokenizer).size == 0


@pytest.mark.parametrize("n_tokens, expected", [(0, 0), (1, 0), (2, 1), (9, 1), (10, 2)])
def test_num_windows_edges(n_tokens, expected):
    assert num_windows(n_tokens, SEQ) == expected


def test_token_file_is_the_token_stream_memory_mapped_in_chunks(tmp_path):
    docs = [Document(f"d{i}/f.c", f"int f{i}(int x) {{ return x * {i}; }}\n" * (i + 1), 0) for i in range(6)]
    tokenizer = Tokenizer.train([d.text for d in docs], 300)
    progress = []
    ids = token_file(docs, tokenizer, tmp_path, progress.append, batch_bytes=40)  # several encode_batch calls
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    assert np.array_equal(ids, token_stream(docs, tokenizer))
    assert len(progress) > 1 and sum(progress) == stream_bytes(docs)
    assert os.listdir(tmp_path) == [], "the mapping alone holds the file"
    assert token_file([], tokenizer, tmp_path).size == 0


def test_token_file_batches_of_one_file_each_give_the_one_batch_token_file(tmp_path):
    docs = [Document(f"d{i}/f.c", f"int f{i}(int x) {{ return x * {i}; }}\n" * (i + 1)) for i in range(6)]
    tokenizer = Tokenizer.train([d.text for d in docs], 300)
    tiny, whole = [], []
    ids = token_file(docs, tokenizer, tmp_path, tiny.append, batch_bytes=1)
    assert len(tiny) == len(docs), "a batch never holds more than its bytes allow (one file at least)"
    assert np.array_equal(ids, token_file(docs, tokenizer, tmp_path, whole.append, batch_bytes=10**9))
    assert len(whole) == 1 and sum(tiny) == sum(whole) == stream_bytes(docs)


def test_token_file_leaves_out_a_file_deleted_or_changed_after_the_scan(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name in ("a.c", "b.c", "c.c"):
        (workspace / name).write_text(f"int {name[0]}(void) {{ return 1; }}\n")
    docs = scan(workspace).documents
    tokenizer = Tokenizer.train([d.text for d in docs], 300)
    (workspace / "a.c").unlink()
    (workspace / "c.c").write_text("int changed;\n")
    gone, progress = [], []
    ids = token_file(docs, tokenizer, tmp_path, progress.append, lambda doc, reason: gone.append((doc.path, reason)))
    assert gone == [("a.c", "deleted after the scan"), ("c.c", "changed after the scan")]
    assert np.array_equal(ids, token_stream([docs[1]], tokenizer))
    assert sum(progress) == stream_bytes(docs), "the files left out count as done"


def test_spread_plan_takes_every_window_of_a_short_stream_and_an_even_sample_of_a_long_one():
    assert np.array_equal(spread_plan(5, 8).order, sequential_plan(5).order)
    plan = spread_plan(1000, 5)
    assert plan.order.tolist() == [0, 250, 500, 749, 999] and not plan.fim.any()
