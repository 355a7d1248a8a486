"""Language-server pieces that need no client (the base question's guard included).

The protocol itself is tested end to end against `cllm lsp` in tests/e2e/test_lsp_*.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cllm.engine.paths import default_base_path
from cllm.server.lsp import CllmServer, cllm_section
from cllm.server.workspace import Workspace


def test_settings_may_come_wrapped_in_their_section():
    assert cllm_section({"cllm": {"enable": False}}) == {"enable": False}
    assert cllm_section({"enable": False}) == {"enable": False}
    assert cllm_section(None) is None
    assert cllm_section({"cllm": None, "clangd": {"x": 1}}) is None  # another server's section is not ours


@pytest.mark.parametrize("base", ["shipped", "user"])
async def test_train_fine_tunes_a_base_unasked_and_asks_only_when_there_is_none(
        base: str, tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    workspace = Workspace(tmp_path / "src", {"modelDir": str(tmp_path / "models")})
    server = CllmServer()
    try:
        assert workspace.base_missing({})  # no base at all: the one case where the server asks
        if base == "shipped":
            monkeypatch.setenv("CLLM_SHIPPED_BASE", str(tiny_model_path))
        else:
            default_base_path().parent.mkdir(parents=True)
            shutil.copyfile(tiny_model_path, default_base_path())
        assert not workspace.base_missing({})
        assert await server.base_choice(workspace, {}) == "default"  # returns before any window/showMessageRequest
    finally:
        workspace.close()


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
