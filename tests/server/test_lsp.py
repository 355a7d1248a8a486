"""Language-server pieces that need no client.

The protocol itself is tested end to end against `cllm lsp` in tests/e2e/test_lsp_*.py."""

from __future__ import annotations

from cllm.server.lsp import cllm_section


def test_settings_may_come_wrapped_in_their_section():
    assert cllm_section({"cllm": {"enable": False}}) == {"enable": False}
    assert cllm_section({"enable": False}) == {"enable": False}
    assert cllm_section(None) is None
    assert cllm_section({"cllm": None, "clangd": {"x": 1}}) is None  # another server's section is not ours
