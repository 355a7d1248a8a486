"""engine/pretrain.py: the base corpus leaves C++ out, the base records its manifest and mixture weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cllm.engine import load_model
from cllm.engine.corpus import Document
from cllm.engine.events import TrainingMetadata
from cllm.engine.pretrain import cplusplus_reason, sample_documents, scan_base_corpus
from cllm.engine.train import TrainError
from conftest import TINY_INCLUDE_SOURCES, write_tiny_include

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
    meta = TrainingMetadata.from_json(model.metadata)
    expected = {str(include.resolve() / rel): hashlib.sha256(TINY_INCLUDE_SOURCES[rel].encode()).hexdigest()
                for rel in ("util.h", "list.h", "sys/types.h", "util.c")}
    assert {entry.path: entry.sha256 for entry in meta.manifest} == expected
    assert meta.mixture is not None and meta.workspace is None
    assert model.config.d_model == 32 and meta.steps > 0
