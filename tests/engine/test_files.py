"""engine/files.py: the write policy: a path that names anything but a regular file is never replaced."""

import os

import pytest

from cllm.engine.data.corpus import Document, write_consolidated
from cllm.engine.files import OutputPathError, atomic_write_bytes, check_output_path


def test_a_new_or_regular_file_may_be_written(tmp_path):
    assert check_output_path(tmp_path / "new.cllm") == tmp_path / "new.cllm"
    (tmp_path / "old.cllm").write_bytes(b"old")
    atomic_write_bytes(tmp_path / "old.cllm", b"new")
    assert (tmp_path / "old.cllm").read_bytes() == b"new"


@pytest.mark.parametrize("kind, words", [("folder", "a folder"), ("fifo", "a FIFO"), ("device", "a character device")])
def test_a_folder_fifo_or_device_is_never_replaced(tmp_path, kind, words):
    target = tmp_path / "out.cllm"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = tmp_path / "null"
        target.symlink_to(os.devnull)  # /dev/null, reached by a name in a writable folder
    with pytest.raises(OutputPathError, match=words):
        atomic_write_bytes(target, b"model")
    assert not target.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind either


def test_the_consolidated_corpus_never_overwrites_a_file_cllm_did_not_write(tmp_path):
    docs = [Document("a.c", "int a;\n"), Document("b.c", "int b;\n")]
    mine = tmp_path / "repo_code.txt"
    mine.write_text("my own notes\n")
    assert not write_consolidated(docs, mine)
    assert mine.read_text() == "my own notes\n"
    ours = tmp_path / "ours.txt"
    assert write_consolidated(docs, ours)
    assert write_consolidated(docs[:1], ours)  # cllm's own file is replaced
    assert "int a;" in ours.read_text() and "int b;" not in ours.read_text()
