"""The workspace index: built in batches it equals the one-shot build, a restart loads it, a saved file is
re-indexed alone, and the memory cap indexes a deterministic sample of the files."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cllm.engine.data.corpus import read_documents
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.serving import load_model
from cllm.engine.complete.match_model import MATCH_MIN, gram_hashes, match_predictions
from cllm.engine.complete.mixture import COMPONENTS, N_BUCKETS, Mixture, MixtureScorer, workspace_models
from cllm.engine.complete.workspace_index import (
    BYTES_PER_SOURCE_BYTE, IndexBuilder, IndexSettings, document_streams, index_fingerprint, sampled,
)
from conftest import write_c_workspace


@pytest.fixture
def setup(tiny_model_path, tmp_path):
    model = load_model(tiny_model_path)
    root = write_c_workspace(tmp_path / "ws", files=8)
    files = sorted(p.name for p in root.glob("*.c"))
    return model, root, files


def _builder(model, root, files, index_path, **settings) -> tuple[IndexBuilder, list]:
    snapshots: list = []
    builder = IndexBuilder(model.tokenizer, root, files, index_path, index_fingerprint(model.params, str(root)),
                           lambda kn, index: snapshots.append((kn, index)), IndexSettings(**settings))
    return builder, snapshots


def _complete(model, kn, index, prefix: str) -> str:
    mixture = Mixture(np.full((N_BUCKETS, COMPONENTS), 1.0 / COMPONENTS))
    completer = Completer(model, scorer=MixtureScorer(model.tokenizer, kn, index, mixture))
    return completer.complete(prefix, "", CompletionOptions(max_tokens=24), path="new.c").text


def test_the_incremental_build_ends_equal_to_the_one_shot_build(setup, tmp_path):
    model, root, files = setup
    docs, _ = read_documents(root, files)
    kn, index = workspace_models(model.tokenizer, docs)
    builder, snapshots = _builder(model, root, files, tmp_path / "index.npz", batch_bytes=1, snapshot_min_tokens=500)
    builder.run()
    assert len(snapshots) > 2  # served while it grew
    last_kn, last_index = snapshots[-1]
    probe = document_streams(model.tokenizer, docs[:2])[1]
    np.testing.assert_array_equal(last_kn.logprobs(probe), kn.logprobs(probe))
    for ours, theirs in zip(match_predictions(probe, last_index), match_predictions(probe, index)):
        np.testing.assert_array_equal(ours, theirs)
    prefix = docs[3].text[:400]
    assert _complete(model, last_kn, last_index, prefix) == _complete(model, kn, index, prefix)


def test_a_restart_loads_the_saved_index_and_reindexes_only_changed_files(setup, tmp_path):
    model, root, files = setup
    first, _ = _builder(model, root, files, tmp_path / "index.npz")
    first.run()
    assert (tmp_path / "index.npz").is_file() and not first.loaded
    again, snapshots = _builder(model, root, files, tmp_path / "index.npz")
    again.run()
    assert again.loaded and again.index.tokens_added == 0 and snapshots  # nothing re-tokenized, yet served
    (root / files[2]).write_text("int changed_here(void) { return 42; }\n")
    third, _ = _builder(model, root, files, tmp_path / "index.npz")
    third.run()
    docs, _ = read_documents(root, [files[2]])
    assert third.loaded and third.index.tokens_added == len(document_streams(model.tokenizer, docs)[0])


def test_another_model_does_not_load_the_saved_index(setup, tmp_path):
    model, root, files = setup
    first, _ = _builder(model, root, files, tmp_path / "index.npz")
    first.run()
    other = IndexBuilder(model.tokenizer, root, files, tmp_path / "index.npz",
                         index_fingerprint(model.params + 1, str(root)), lambda *_: None)
    other.run()
    assert not other.loaded and other.index.tokens_added > 0


def _grams_found(index, stream: np.ndarray) -> bool:
    """True when the index holds a MATCH_MIN-token gram of `stream` ending at its last possible position."""
    hashes = gram_hashes(stream)[0]
    return bool(index.last_ends(0, hashes[len(stream) - 2:len(stream) - 1])[0] >= 0)


def test_saving_a_file_updates_the_index_for_that_file_only(setup, tmp_path):
    model, root, files = setup
    builder, snapshots = _builder(model, root, files, tmp_path / "index.npz")
    builder.run()
    old = document_streams(model.tokenizer, read_documents(root, [files[4]])[0])[0]
    assert _grams_found(snapshots[-1][1], old[:MATCH_MIN + 30])
    text = "static const char *zebra_quokka_names[] = { \"axolotl\", \"pangolin\", \"tapir\" };\n"
    (root / files[4]).write_text(text)
    before = builder.index.tokens_added
    assert builder.update_file(files[4])
    new = document_streams(model.tokenizer, read_documents(root, [files[4]])[0])[0]
    assert builder.index.tokens_added - before == len(new)  # only that file was tokenized and counted
    index = snapshots[-1][1]
    assert _grams_found(index, new[:-1])  # its new text is matched
    predicted, _ = match_predictions(new[:-1], index, start=len(new) - 2)
    assert predicted[-1] == new[-2]
    assert not builder.update_file("not_a_training_file.c")


def test_the_memory_cap_indexes_a_deterministic_sample(setup, tmp_path):
    model, root, files = setup
    total = sum((root / f).stat().st_size for f in files)
    cap_mb = total * BYTES_PER_SOURCE_BYTE * 0.5 / 2**20
    builder, _ = _builder(model, root, files, tmp_path / "a.npz", max_mb=cap_mb)
    builder.run()
    indexed = set(builder.index.files)
    assert builder.fraction == pytest.approx(0.5)
    assert indexed == {f for f in files if sampled(f, builder.fraction)}
    assert 0 < len(indexed) < len(files)
    again, _ = _builder(model, root, files, tmp_path / "b.npz", max_mb=cap_mb)
    again.run()
    assert set(again.index.files) == indexed
    assert Path(tmp_path / "b.npz").is_file()


def test_a_lower_cap_rebuilds_the_saved_index_and_a_higher_one_extends_it(setup, tmp_path):
    model, root, files = setup
    total = sum((root / f).stat().st_size for f in files)
    half_mb = total * BYTES_PER_SOURCE_BYTE * 0.5 / 2**20
    _builder(model, root, files, tmp_path / "index.npz")[0].run()
    lower, _ = _builder(model, root, files, tmp_path / "index.npz", max_mb=half_mb)
    lower.run()
    assert not lower.loaded and set(lower.index.files) == {f for f in files if sampled(f, lower.fraction)}
    higher, _ = _builder(model, root, files, tmp_path / "index.npz")
    higher.run()
    assert higher.loaded and set(higher.index.files) == set(files)
    rest, _ = read_documents(root, [f for f in files if f not in lower.index.files])
    assert higher.index.tokens_added == sum(len(s) for s in document_streams(model.tokenizer, rest)) > 0


def test_a_build_on_its_own_thread_runs_at_a_lower_cpu_priority(setup, tmp_path):
    model, root, files = setup
    priority = []
    builder = IndexBuilder(model.tokenizer, root, files, tmp_path / "index.npz",
                           index_fingerprint(model.params, str(root)),
                           lambda kn, index: priority.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
                           IndexSettings(niceness=5))
    builder.start().join()
    assert builder.progress["state"] == "ready" and priority
    assert set(priority) == {min(os.getpriority(os.PRIO_PROCESS, 0) + 5, 19)}  # the caller's thread is untouched


def test_positions_and_counts_take_four_bytes_and_survive_a_reload(setup, tmp_path):
    model, root, files = setup
    builder, _ = _builder(model, root, files, tmp_path / "index.npz")
    builder.run()
    again, _ = _builder(model, root, files, tmp_path / "index.npz")
    again.run()
    assert again.loaded
    for index in (builder.index, again.index):
        assert {parts[0].count.dtype for parts in index._counts} == {np.dtype(np.int32)}
        assert {ends.dtype for [(_, ends)] in index._occurrences} == {np.dtype(np.int32)}


AWS_KEY = "AKIA" + "ABCDEFGHIJKLMNOP"  # the shape of an AWS access key, written in two halves so that no scanner trips on this file


def test_a_saved_file_that_now_holds_a_secret_leaves_the_index(setup, tmp_path):
    model, root, files = setup
    builder, snapshots = _builder(model, root, files, tmp_path / "index.npz")
    builder.run()
    assert files[1] in builder.index.files
    (root / files[1]).write_text(f"const char *key = \"{AWS_KEY}\";\n")
    assert builder.update_file(files[1])
    assert files[1] not in builder.index.files
    key_ids = model.tokenizer.encode(AWS_KEY)
    assert not _holds(builder.index.tokens, key_ids)


def test_a_training_file_replaced_by_a_symlink_to_outside_is_not_indexed(setup, tmp_path):
    model, root, files = setup
    outside = tmp_path / "outside.c"
    outside.write_text("int outside_the_workspace_secret_function(void) { return 1; }\n")
    (root / files[0]).unlink()
    (root / files[0]).symlink_to(outside)
    builder, _ = _builder(model, root, [*files, "../outside.c"], tmp_path / "index.npz")
    builder.run()
    assert files[0] not in builder.index.files and "../outside.c" not in builder.index.files
    assert files[1] in builder.index.files


def _holds(tokens: np.ndarray, ids: list[int]) -> bool:
    n = len(ids)
    return any(list(tokens[i:i + n]) == list(ids) for i in range(len(tokens) - n + 1))
