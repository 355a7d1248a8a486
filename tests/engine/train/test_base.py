"""engine/train/base.py: loading a base, replaying the files of its manifest that are unchanged, manifest digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cllm.engine.train.base import load_base, manifest_hashes, read_replay, replay_documents
from cllm.engine.model.checkpoint import CheckpointError, load_checkpoint, weights_sha256
from cllm.engine.data.corpus import Document
from cllm.engine.events import ManifestEntry, TrainingMetadata


def _manifest(files: dict[Path, str]) -> TrainingMetadata:
    return TrainingMetadata(manifest=[ManifestEntry(path=str(path), sha256=hashlib.sha256(text.encode()).hexdigest())
                                      for path, text in files.items()])


def test_replay_takes_unchanged_files_of_the_manifest_and_leaves_out_excluded_ones(tmp_path: Path):
    files = {tmp_path / f"f{i}.h": f"int f{i};\n" for i in range(6)}
    for path, text in files.items():
        path.write_text(text)
    meta = _manifest(files)
    (tmp_path / "f0.h").write_text("int changed;\n")
    (tmp_path / "f1.h").unlink()
    excluded = hashlib.sha256(b"int f2;\n").hexdigest()
    replayed = replay_documents(meta, 10_000, seed=0, exclude={excluded})
    assert sorted(doc.text for doc in replayed) == ["int f3;\n", "int f4;\n", "int f5;\n"]
    assert {doc.path for doc in replayed} == {str(tmp_path / f"f{i}.h").lstrip("/") for i in (3, 4, 5)}
    assert len(replay_documents(meta, 1, seed=0)) == 1  # stops once the bytes asked for are reached
    assert read_replay([doc.path for doc in replayed] + ["no/such/file.h"]) == replayed


def test_manifest_hashes_are_the_documents_digests(tmp_path: Path):
    doc = Document("a.h", "int a;\n", 7)
    assert manifest_hashes(_manifest({tmp_path / "a.h": doc.text})) == {doc.sha256}
    assert manifest_hashes(TrainingMetadata()) == set()


def test_load_base_records_which_base_and_refuses_other_files(tiny_base_path: Path, tmp_path: Path):
    base = load_base(tiny_base_path)
    assert base.record.path == str(tiny_base_path.resolve())
    assert base.record.weights_sha256 == weights_sha256(load_checkpoint(tiny_base_path))
    assert base.metadata.manifest and base.tokenizer.vocab_size <= base.config.vocab_size
    (tmp_path / "x.cllm").write_bytes(b"not a model")
    with pytest.raises(CheckpointError):
        load_base(tmp_path / "x.cllm")
