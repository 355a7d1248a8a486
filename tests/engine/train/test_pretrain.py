"""engine/train/pretrain.py: the base corpus leaves C++ out, the base records its manifest and mixture weights, a base
can be extended."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cllm.engine.model import checkpoint as ckpt_io
from cllm.engine import load_model
from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.data.corpus import Document
from cllm.engine.events import TrainingMetadata
from cllm.engine.train.pretrain import cplusplus_reason, pretrain, sample_documents, scan_base_corpus
from cllm.engine.train.loop import TrainError, train
from cllm.engine.train.start import Continue
from conftest import TINY_BASE_MODEL, TINY_BASE_TRAINING, TINY_INCLUDE_SOURCES, write_tiny_include

C_HEADER = ("#ifdef __cplusplus\nextern \"C\" {\ntemplate <class T> struct wrap { T t; };\nnamespace x { }\n#endif\n"
            "int f(int a);\n#ifdef __cplusplus\n}\n#endif\n")


@pytest.mark.parametrize("text, reason", [
    (C_HEADER, None),
    ("#if defined(__cplusplus)\nclass A { int a; };\n#else\nstruct A { int a; };\n#endif\n", None),
    ("/* namespace demo { class Foo { }; } */\nint g(void);\n", None),
    ("#define UNUSED [[gnu::unused]]\nint h(void);\n", None),
    ("namespace demo {\nint f();\n}\n", "C++ code (namespace)"),
    ("template <typename T> T id(T t) { return t; }\n", "C++ code (template)"),
    ("class Widget {\n  int size;\n};\n", "C++ code (class)"),
    ("struct S {\npublic:\n  int a;\n};\n", "C++ code (access specifier)"),
    ("int n = std::max(1, 2);\n", "C++ code (scope operator)"),
    ("#ifndef __cplusplus\nint c_only;\n#else\nclass B {};\n#endif\n", "C++ code (class)"),
])
def test_cplusplus_is_told_from_c_outside_cplusplus_blocks(text, reason):
    assert cplusplus_reason("lib/x.h", text) == reason


def test_cplusplus_folders_are_left_out_whatever_their_content():
    assert cplusplus_reason("c++/12/bits/stdio.h", "int a;\n") == "C++ folder"


def test_the_scan_keeps_c_and_names_files_by_their_absolute_path(tmp_path: Path):
    include = write_tiny_include(tmp_path / "include")
    (include / "copy").mkdir()
    (include / "copy" / "util.h").write_text(TINY_INCLUDE_SOURCES["util.h"])
    found = scan_base_corpus([include, include / "copy"])
    names = {doc.path for doc in found.documents}
    prefix = include.resolve().as_posix().lstrip("/")
    assert names == {f"{prefix}/{rel}" for rel in ("util.h", "list.h", "sys/types.h", "util.c")}
    skipped = dict(found.skipped)
    assert skipped["/" + prefix + "/vector.h"] == "C++ code (namespace)"
    assert skipped["/" + prefix + "/c++/12/algorithm.h"] == "C++ folder"
    assert "duplicate" in skipped["/" + prefix + "/copy/util.h"]


def test_a_missing_folder_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(TrainError, match="is not a folder"):
        scan_base_corpus([tmp_path / "missing"])


def test_sampling_is_stable_and_bounded():
    docs = [Document(f"f{i}.h", "x" * 100, 100) for i in range(50)]
    sample = sample_documents(docs, 1_000)
    assert 1_000 <= sum(d.size for d in sample) < 1_100
    assert sample == sample_documents(list(reversed(docs)), 1_000)
    assert sample_documents(docs, 10_000) == docs


def test_pretrain_writes_a_base_with_its_manifest_and_mixture(tiny_base_path: Path):
    include = tiny_base_path.parent / "include"
    model = load_model(tiny_base_path)
    meta = model.metadata  # load_model parsed it
    expected = {str(include.resolve() / rel): hashlib.sha256(TINY_INCLUDE_SOURCES[rel].encode()).hexdigest()
                for rel in ("util.h", "list.h", "sys/types.h", "util.c")}
    assert {entry.path: entry.sha256 for entry in meta.manifest} == expected
    assert meta.mixture is not None and meta.workspace is None
    assert model.config.d_model == 32 and meta.steps > 0



def test_a_continued_base_keeps_its_weights_and_lists_every_run_s_files(tiny_base_path: Path, tmp_path: Path):
    include = write_tiny_include(tmp_path / "include")
    (include / "queue.h").write_text("struct queue { int head, tail; };\nint queue_push(struct queue *q, int v);\n")
    out = tmp_path / "more.cllm"
    before = ckpt_io.load_checkpoint(tiny_base_path)
    pretrain(scan_base_corpus([include]), ModelConfig(vocab_size=999), TrainConfig(max_steps=1, **TINY_BASE_TRAINING),
             out, start=Continue(tiny_base_path))
    after = ckpt_io.load_checkpoint(out)
    meta = TrainingMetadata.from_json(after.metadata)
    earlier = TrainingMetadata.from_json(before.metadata).manifest
    assert meta.manifest[:len(earlier)] == earlier
    assert {entry.path for entry in meta.manifest} - {entry.path for entry in earlier} == {
        str(include.resolve() / rel) for rel in ("util.h", "list.h", "sys/types.h", "util.c", "queue.h")}
    assert after.model_config == before.model_config and after.tokenizer_json == before.tokenizer_json
    assert meta.generation == 2
    assert 0 < abs(after.params - before.params).max() < 0.1  # one optimizer step from the base, not a fresh start


def test_only_a_base_can_be_continued(tmp_path: Path):
    include = write_tiny_include(tmp_path / "include")
    workspace_model = tmp_path / "ws.cllm"
    train(include, ModelConfig(**TINY_BASE_MODEL), TrainConfig(max_steps=1, **TINY_BASE_TRAINING), workspace_model)
    with pytest.raises(TrainError, match="not a base model"):
        pretrain(scan_base_corpus([include]), ModelConfig(), TrainConfig(max_steps=1, **TINY_BASE_TRAINING),
                 tmp_path / "b.cllm", start=Continue(workspace_model))
