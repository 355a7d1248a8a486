"""Language-server pieces that need no client.

The protocol itself is tested end to end against `cllm lsp` in tests/e2e/test_lsp_*.py."""

from __future__ import annotations

from cllm.server.lsp import cllm_section


def test_settings_may_come_wrapped_in_their_section():
    assert cllm_section({"cllm": {"enable": False}}) == {"enable": False}
    assert cllm_section({"enable": False}) == {"enable": False}
    assert cllm_section(None) is None
    assert cllm_section({"cllm": None, "clangd": {"x": 1}}) is None  # another server's section is not ours


def test_a_lone_file_in_the_home_folder_tmp_or_the_root_opens_no_workspace(tmp_path, monkeypatch):
    import tempfile
    from pathlib import Path

    from cllm.server.lsp import lone_file_workspace

    home, temp = tmp_path / "home", tmp_path / "tmp"
    (home / "project").mkdir(parents=True)
    temp.mkdir()
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(temp))
    assert lone_file_workspace(home / "notes.c") is None
    assert lone_file_workspace(tmp_path / "x.c") is None  # a folder above the home folder
    assert lone_file_workspace(temp / "scratch.c") is None
    assert lone_file_workspace(Path("/x.c")) is None
    assert lone_file_workspace(home / "project" / "main.c") == (home / "project").resolve()
    assert lone_file_workspace(home / "gone" / "main.c") is None
    assert lone_file_workspace(Path("/" + "d" * 300) / "x.c") is None  # a name past the system's limit
